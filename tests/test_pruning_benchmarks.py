"""Issue 22's two pruning benchmarks at a tiny setting: the tables' structure and the invariants
that any run must satisfy — every criterion prunes the same ceil(C·ratio) filters of each
uncoupled conv, and every mask method (COLT included, by its exact rounds) hits the target sparsity
within one weight per layer, dense at exactly 0. The expected counts come from the architecture
(resnet1d's widths), not from the code under test."""
import math

import pytest
import torch
from torch import nn

pytestmark = pytest.mark.usefixtures("mnist1d_generated", "restore_torch_threads")


# resnet1d: stages of 16, 32, 64 channels, three blocks each; the uncoupled convs are the first
# conv of every block (the second is tied to the shortcut by the residual addition)
BLOCK_WIDTHS = [16] * 3 + [32] * 3 + [64] * 3


def test_filter_criteria_at_equal_budgets(tmp_path, load_benchmark):
    bench = load_benchmark("filter_criteria_budget")
    from repgraph.workflows import criteria_names

    argv = ["--seeds", "1", "--epochs", "1", "--finetune-epochs", "1", "--ratio", "0.5", "--n-train", "32",
            "--n-test", "32", "--max-samples", "32", "--out", str(tmp_path)]
    result = bench.main(argv)
    cells, table = result["cells"], result["table"]
    assert list(table["criterion"]).count("random") == 1
    assert sorted(table["criterion"]) == sorted(criteria_names())  # every registered criterion, once
    assert {"filters pruned per conv", "params removed (%)", "FLOPs removed (%)", "acc. pruned (%)",
            "acc. fine-tuned (%)", "fine-tuned − random (pp)"} <= set(table.columns)
    ran = cells[cells["error"].isna()] if "error" in cells else cells
    failed = cells[cells["error"].notna()] if "error" in cells else cells.iloc[:0]
    assert {"l1", "random", "hrank", "central_filter"} <= set(ran["criterion"])
    for widths_before, widths_after in zip(ran["widths_before"], ran["widths_after"]):
        assert list(widths_before.values()) == BLOCK_WIDTHS
        assert list(widths_after.values()) == [c - math.ceil(c * 0.5) for c in BLOCK_WIDTHS]
    assert ran["params_after"].nunique() == 1 and ran["flops_after"].nunique() == 1
    assert ((ran["accuracy_finetuned"] >= 0) & (ran["accuracy_finetuned"] <= 1)).all()
    for criterion, error in zip(failed["criterion"], failed["error"]):  # a refusal is reported, with its reason
        row = table[table["criterion"] == criterion].iloc[0]
        assert error and row["filters pruned per conv"].startswith("not run") and row["seeds"] == 0
    text = (tmp_path / "table_ratio0.5.md").read_text()
    assert text == result["markdown"] and text.count("\n|") == len(table) + 2  # header, rule, one line per row
    assert len(list((tmp_path / "cells").glob("seed0_ratio0.5_*.json"))) == len(criteria_names())

    again = bench.main(argv)  # every cell from the cache: the same numbers
    assert again["cells"]["accuracy_finetuned"].tolist() == pytest.approx(cells["accuracy_finetuned"].tolist(),
                                                                          nan_ok=True)


def _pruned_layer_sizes():
    """Weights of resnet1d's Conv/Linear layers between the first conv and the classifier."""
    from repgraph.models import get_model

    layers = [m for m in get_model("resnet1d", num_classes=10, in_channels=1).modules()
              if isinstance(m, (nn.Conv1d, nn.Linear))][1:-1]
    return [m.weight.numel() for m in layers]


def test_mask_methods_at_equal_sparsity(tmp_path, load_benchmark):
    bench = load_benchmark("mask_methods_sparsity")
    result = bench.main(["--seeds", "1", "--epochs", "1", "--rewind-epoch", "0", "--sparsities", "0.5", "0.9",
                         "--imp-rounds", "2", "--colt-rate", "0.5", "--rgp-swaps", "5", "--n-train", "64",
                         "--n-test", "64", "--out", str(tmp_path)])
    cells, table = result["cells"], result["table"]
    sizes = _pruned_layer_sizes()
    total, n_layers = sum(sizes), len(sizes)
    dense = cells[cells["method"] == "dense"].iloc[0]
    assert dense["sparsity"] == 0.0 and dense["zeros"] == 0 and dense["weights"] == total
    methods = ["random", "magnitude", "spline", "rgp", "imp", "colt"]
    assert table["method"].tolist() == ["dense"] + methods * 2
    assert table["target sparsity (%)"].tolist() == ["0"] + ["50"] * 6 + ["90"] * 6
    assert "error" not in cells  # every method ran at every sparsity, RGP at 90 % included
    ok = cells[cells["method"] != "dense"]
    for row in ok.itertuples():
        assert row.weights == total and row.layers == n_layers
        assert row.sparsity == pytest.approx(row.zeros / total)
        # COLT too: its exact rule prunes each round's count (the authors' overlap would overshoot)
        assert abs(row.zeros - row.target * total) <= n_layers, (row.method, row.target)
    rgp = cells[cells["method"] == "rgp"].set_index("target")
    assert rgp.loc[0.5, "zeros"] == total // 2  # whole kernels, exactly half of every layer
    # (1 − 0.9)·16 channels is not whole: RGP keeps the nearest whole number of connections per
    # layer (almost-regular graphs), so it is within half a kernel of 90 % per layer (checked above)
    assert len(ok) == 2 * len(methods)
    text = (tmp_path / "table.md").read_text()
    assert text.count("\n|") == len(table) + 2

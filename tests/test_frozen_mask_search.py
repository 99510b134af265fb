"""Issue 22's frozen-weight mask search benchmark at a tiny setting: every mask meets its target
sparsity within one weight per layer, the jackpot keeps the dense weights bit for bit, the table
has a row per (target, method), a rerun trains nothing; and the BatchNorm recalibration against
numpy's per-channel mean and unbiased variance. The layer sizes come from resnet1d's architecture
written out by hand, not from the code under test."""
import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

pytestmark = pytest.mark.usefixtures("mnist1d_generated", "restore_torch_threads")


def _masked_layer_sizes(width):
    """Weights of resnet1d(width=w)'s convs between the stem and the classifier, kernel 3 (1 for
    the shortcuts), in module order: stage 1 six w→w convs; stage 2 w→2w, 2w→2w, the 1×1 shortcut
    w→2w, then four 2w→2w; stage 3 likewise with 2w→4w."""
    w = width
    stage1 = [3 * w * w] * 6
    stage2 = [3 * 2 * w * w, 3 * 4 * w * w, 2 * w * w] + [3 * 4 * w * w] * 4
    stage3 = [3 * 8 * w * w, 3 * 16 * w * w, 8 * w * w] + [3 * 16 * w * w] * 4
    return stage1 + stage2 + stage3


def test_frozen_mask_search_smoke(tmp_path, monkeypatch, load_benchmark):
    bench = load_benchmark("frozen_mask_search")
    argv = ["--seeds", "1", "--width", "4", "--reference-width", "2", "--epochs", "1", "--search-epochs", "1",
            "--n-train", "256", "--n-test", "128", "--sparsities", "0.5", "--out", str(tmp_path)]
    result = bench.main(argv)
    cells, table = result["cells"], result["table"]
    sizes = _masked_layer_sizes(4)
    total, n_layers = sum(sizes), len(sizes)
    assert result["trained"] == 2  # the width-4 network and the width-2 reference

    masked = cells[cells["target"] > 0]
    methods = ["jackpot", "jackpot (random init)", "magnitude", "magnitude+bn", "random+bn"]
    assert masked["method"].tolist() == methods
    for row in masked.itertuples():
        assert row.weights == total and row.layers == n_layers
        assert abs(row.zeros - 0.5 * total) <= n_layers, row.method
        assert row.sparsity == pytest.approx(row.zeros / total)
        assert row.weights_frozen, row.method
        assert 0.0 <= row.accuracy <= 1.0
    by_method = masked.set_index("method")
    # the global magnitude mask prunes ceil(p·N) weights in all, the same for the searches it starts
    assert by_method.loc["magnitude", "zeros"] == by_method.loc["jackpot", "zeros"] == total // 2
    assert by_method.loc["magnitude+bn", "kept_shared_with_magnitude"] == 1.0
    assert by_method.loc["magnitude+bn", "jaccard_with_magnitude"] == 1.0

    assert table[["target sparsity (%)", "method"]].values.tolist() == (
        [["0", "dense, width 4"], ["0", "dense, width 2"]] + [["50", m] for m in methods])
    text = (tmp_path / "table.md").read_text()
    assert text == result["markdown"] and text.count("\n|") == len(table) + 2
    assert (tmp_path / "cells.csv").is_file()
    assert len(list(tmp_path.glob("resnet1d_width*_seed0_*.pt"))) == 2

    def refuse(*args, **kwargs):
        raise AssertionError("a rerun must read every network and cell from the cache")

    monkeypatch.setattr(bench, "train", refuse)
    monkeypatch.setattr(bench, "lottery_jackpot", refuse)
    again = bench.main(argv)
    assert again["trained"] == 0
    assert again["cells"]["accuracy"].tolist() == cells["accuracy"].tolist()


def test_recalibrated_batchnorm_is_the_data_statistics(load_benchmark):
    bench = load_benchmark("frozen_mask_search")
    rng = np.random.default_rng(3)
    x = rng.normal(loc=[[2.0], [-1.0]], scale=[[0.5], [3.0]], size=(6, 2, 5))  # (N, C, L)
    data = TensorDataset(torch.tensor(x, dtype=torch.float32), torch.zeros(6, dtype=torch.long))
    model = nn.Sequential(nn.BatchNorm1d(2)).eval()
    with torch.no_grad():
        model[0].running_mean.fill_(7.0)
        model[0].running_var.fill_(9.0)
        model[0].weight.copy_(torch.tensor([1.5, -0.5]))

    one_batch = bench.recalibrate_batchnorm(model, data, batch_size=6)[0]
    # BatchNorm1d on (N, C, L): per channel over the N·L values; the running variance is unbiased
    np.testing.assert_allclose(one_batch.running_mean.numpy(), x.mean(axis=(0, 2)), rtol=1e-6)
    np.testing.assert_allclose(one_batch.running_var.numpy(), x.var(axis=(0, 2), ddof=1), rtol=1e-5)
    assert int(one_batch.num_batches_tracked) == 1
    assert one_batch.momentum == 0.1 and not one_batch.training
    assert torch.equal(one_batch.weight, model[0].weight)  # parameters untouched
    assert model[0].running_mean.tolist() == [7.0, 7.0]  # the model itself is not modified

    two_batches = bench.recalibrate_batchnorm(model, data, batch_size=3)[0]
    # a cumulative average over the batches 0-2 and 3-5: of their means, of their unbiased variances
    halves = [x[:3], x[3:]]
    np.testing.assert_allclose(two_batches.running_mean.numpy(),
                               np.mean([h.mean(axis=(0, 2)) for h in halves], axis=0), rtol=1e-6)
    np.testing.assert_allclose(two_batches.running_var.numpy(),
                               np.mean([h.var(axis=(0, 2), ddof=1) for h in halves], axis=0), rtol=1e-5)

"""The command line on a user's own saved model and data (issue 23, A3)."""
from collections import OrderedDict

import pandas as pd
import pytest
import torch
from torch import nn

from repgraph.cli import main
from repgraph.hooks import list_layers


def _group(c_in, c_out, stride=1):
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU())


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(OrderedDict(
        features=nn.Sequential(_group(1, 4), _group(4, 4), _group(4, 8, 2)),
        head=nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3)))).eval()
    X, y = torch.randn(30, 1, 8, 8), torch.arange(30) % 3
    torch.save(model, tmp_path / "model.pt")
    torch.save({"X": X, "y": y}, tmp_path / "data.pt")
    return model, X, tmp_path


def test_layers_of_a_saved_model_are_those_of_list_layers(saved, capsys):
    model, X, tmp = saved
    assert main(["layers", "--model", str(tmp / "model.pt"), "--trust-pickle", "--data", str(tmp / "data.pt")]) == 0
    printed = capsys.readouterr().out.splitlines()[1:]
    assert [line.split()[0] for line in printed] == list_layers(model, X[:1])["name"].tolist()


def test_a_pickled_model_needs_trust_and_a_torchscript_file_is_refused_with_the_reason(saved, capsys):
    model, _, tmp = saved
    assert main(["layers", "--model", str(tmp / "model.pt"), "--data", str(tmp / "data.pt")]) == 2
    assert "--trust-pickle" in capsys.readouterr().err
    torch.jit.save(torch.jit.script(model), tmp / "script.pt")
    assert main(["layers", "--model", str(tmp / "script.pt"), "--data", str(tmp / "data.pt")]) == 2
    assert "takes no forward hooks" in capsys.readouterr().err
    assert main(["layers", "--model", str(tmp / "model.pt"), "--trust-pickle"]) == 2
    assert "needs --data" in capsys.readouterr().err
    torch.save({"inputs": torch.zeros(2)}, tmp / "bad.pt")
    assert main(["layers", "--model", str(tmp / "model.pt"), "--trust-pickle", "--data", str(tmp / "bad.pt")]) == 2
    assert "a dict with a tensor 'X'" in capsys.readouterr().err


def test_prune_removes_the_plateau_groups_and_refuses_to_overwrite(saved, capsys):
    model, X, tmp = saved
    out = tmp / "run"
    argv = ["prune", "--model", str(tmp / "model.pt"), "--trust-pickle", "--data", str(tmp / "data.pt"),
            "--tol", "10", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    row = pd.read_csv(out / "prune.csv").iloc[0]
    assert row["removed"] == "features.1"  # the only shape-keeping group (4 -> 4, stride 1)
    pruned = torch.load(out / "pruned.pt", weights_only=False)
    by_hand = nn.Sequential(model.features[0], model.features[2], model.head).eval()
    torch.testing.assert_close(pruned(X), by_hand(X))
    before = (out / "prune.csv").read_bytes()
    assert main(argv) == 2 and "already holds files" in capsys.readouterr().err
    assert (out / "prune.csv").read_bytes() == before
    assert main(argv + ["--overwrite"]) == 0


def test_runs_without_out_get_fresh_folders(saved, tmp_path, monkeypatch):
    _, _, tmp = saved
    monkeypatch.chdir(tmp_path)
    argv = ["demo", "--model", str(tmp / "model.pt"), "--trust-pickle", "--data", str(tmp / "data.pt"), "--no-progress"]
    assert main(argv) == 0 and main(argv) == 0
    runs = sorted((tmp_path / "results" / "demo").iterdir())
    assert len(runs) == 2 and all((r / "modularity.csv").is_file() for r in runs)


def test_data_without_a_model_of_ones_own_is_refused(tmp_path, capsys):
    assert main(["prune", "--data", "digits", "--out", str(tmp_path), "--no-progress"]) == 2
    assert "--data goes with --model" in capsys.readouterr().err

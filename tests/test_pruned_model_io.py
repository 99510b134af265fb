"""A pruned custom CNN saved with save_pruned and read back with load_pruned is the pruned model:
the oracle is the pruned model in memory (its outputs and parameter count), and the proof that
the fresh-instance route fails is load_state_dict into a new instance of the original class."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import repgraph as rg
from repgraph.models import resnet20, small_cnn, vgg11

ROOT = Path(__file__).resolve().parents[1]
X = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def _built(factory):
    torch.manual_seed(0)
    return factory().eval()


def _by_filters(model):
    convs = rg.uncoupled_convs(model, X[:1])
    return rg.prune_filters(model, {c: s for c, s in rg.l1_scores(model).items() if c in convs}, ratio=0.5,
                            example_input=X[:1])


PRUNED = {  # (factory, pruning, what a fresh instance's load_state_dict says)
    "small_cnn/prune_filters": (small_cnn, _by_filters, "size mismatch"),
    "vgg11/prune_filters": (vgg11, _by_filters, "size mismatch"),
    "resnet20/prune_filters": (resnet20, _by_filters, "size mismatch"),
    "resnet20/remove_layers": (resnet20, lambda m: rg.remove_layers(m, ["layer1.1", "layer3.2"]), "Missing key"),
}


def _params(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("case", list(PRUNED))
def test_a_pruned_cnn_reloads_as_itself(case, tmp_path):
    factory, prune, failure = PRUNED[case]
    model = _built(factory)
    pruned = prune(model)
    assert _params(pruned) < _params(model)
    # the snag: the original class cannot take the pruned weights
    with pytest.raises(RuntimeError, match=failure):
        _built(factory).load_state_dict(pruned.state_dict())
    again = rg.load_pruned(rg.save_pruned(pruned, tmp_path / "pruned.pt"))
    assert again is not pruned and type(again) is type(pruned)
    assert _params(again) == _params(pruned)
    assert again.state_dict().keys() == pruned.state_dict().keys()
    assert str(again) == str(pruned)  # the same module tree, widths and all
    assert again.training == pruned.training
    with torch.no_grad():
        assert torch.equal(again(X), pruned(X))
    # the loaded copy is a working model: it trains and prunes again
    loss = again.train()(X).sum()
    loss.backward()
    assert all(p.grad is not None for p in again.parameters())


def test_a_fresh_process_loads_it(tmp_path):
    pruned = _by_filters(_built(resnet20))
    rg.save_pruned(pruned, tmp_path / "pruned.pt")
    torch.save(X, tmp_path / "x.pt")
    with torch.no_grad():
        expected = pruned(X).numpy()
    code = ("import sys, numpy as np, torch, repgraph as rg\n"
            "m = rg.load_pruned(sys.argv[1])\n"
            "x = torch.load(sys.argv[2], weights_only=True)\n"
            "with torch.no_grad():\n    np.save(sys.argv[3], m(x).numpy())\n")
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "pruned.pt"), str(tmp_path / "x.pt"),
                    str(tmp_path / "out.npy")], check=True, cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": ""})
    assert np.array_equal(np.load(tmp_path / "out.npy"), expected)


def test_the_file_is_plain_data_that_weights_only_reads(tmp_path):
    path = rg.save_pruned(_by_filters(_built(small_cnn)), tmp_path / "pruned.pt")
    saved = torch.load(path, weights_only=True)  # no unpickling of classes or code
    assert saved["format"] == "repgraph.pruned/1"
    assert {e["class"] for e in saved["modules"]} >= {"torch.nn.modules.conv:Conv2d",
                                                      "repgraph.models.small_cnn:SmallCNN"}


class _Evil:
    def __reduce__(self):
        return (print, ("ran code from the file",))


def test_a_file_with_code_is_refused_not_run(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    torch.save({"format": "repgraph.pruned/1", "modules": [_Evil()]}, path)
    with pytest.raises(ValueError, match="weights_only=True refused it"):
        rg.load_pruned(path)
    assert "ran code" not in capsys.readouterr().out
    torch.save({"state": 1}, tmp_path / "plain.pt")
    with pytest.raises(ValueError, match="not a file save_pruned wrote"):
        rg.load_pruned(tmp_path / "plain.pt")
    torch.save({"format": "repgraph.pruned/1", "modules": [
        {"name": "", "class": "builtins:dict", "attributes": {}, "parameters": {}, "requires_grad": {},
         "buffers": {}, "non_persistent": [], "children": {}}]}, tmp_path / "not_a_module.pt")
    with pytest.raises(ValueError, match="builtins:dict, which is not an nn.Module class"):
        rg.load_pruned(tmp_path / "not_a_module.pt")


def test_what_cannot_be_stored_is_refused_naming_module_and_attribute(tmp_path):
    class Local(nn.Module):
        def forward(self, x):
            return x

    with pytest.raises(ValueError, match="defined in a function"):
        rg.save_pruned(nn.Sequential(Local()), tmp_path / "a.pt")
    model = nn.Sequential(nn.Linear(2, 2))
    model[0].activation = torch.relu
    with pytest.raises(ValueError, match=r"'0' \(Linear\) holds attribute 'activation'.*torch.save\(model\)"):
        rg.save_pruned(model, tmp_path / "b.pt")

import json
import tracemalloc

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from repgraph import ActivationRecorder, Activations, capture_activations, list_layers
from repgraph.hooks import select_layers
from repgraph.models import get_model, resnet20, vgg11


class BnInplaceRelu(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 6)
        self.bn = nn.BatchNorm1d(6)
        self.relu = nn.ReLU(inplace=True)
        self.head = nn.Linear(6, 2)

    def forward(self, x):
        return self.head(self.relu(self.bn(self.lin(x))))


class TwiceCalled(nn.Module):
    def __init__(self):
        super().__init__()
        self.shared = nn.Linear(3, 3)
        self.unused = nn.Linear(3, 3)

    def forward(self, x):
        return self.shared(torch.relu(self.shared(x)))


def _n_hooks(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_clone_keeps_values_an_inplace_relu_overwrites():
    torch.manual_seed(0)
    model = BnInplaceRelu().eval()
    x = torch.randn(32, 4)
    expected = model.bn(model.lin(x)).detach().clone()
    with ActivationRecorder(model, ["bn"]) as rec:
        model(x)
    captured = rec.outputs["bn"][0]
    assert (captured < 0).any()  # the in-place ReLU zeroed these in the live tensor
    torch.testing.assert_close(captured, expected)


def test_captures_are_detached():
    model = BnInplaceRelu().train()
    with ActivationRecorder(model, ["lin"]) as rec:
        model(torch.randn(8, 4)).sum().backward()
    t = rec.outputs["lin"][0]
    assert not t.requires_grad and t.grad_fn is None


def test_hooks_removed_on_exit_and_on_exception():
    model = BnInplaceRelu()
    before = _n_hooks(model)
    with ActivationRecorder(model, ["lin", "bn"]):
        assert _n_hooks(model) > before
    assert _n_hooks(model) == before
    with pytest.raises(RuntimeError):
        with ActivationRecorder(model, ["lin"]):
            model(torch.randn(3, 5))  # wrong width: the forward raises
    assert _n_hooks(model) == before


def test_module_called_twice_is_recorded_per_call_with_a_warning():
    model = TwiceCalled()
    x = torch.randn(4, 3)
    with pytest.warns(UserWarning, match="called more than once"):
        with ActivationRecorder(model, ["shared"]) as rec:
            model(x)
            model(x)
    assert set(rec.outputs) == {"shared", "shared:1"}
    assert len(rec.outputs["shared"]) == 2 and len(rec.outputs["shared:1"]) == 2
    torch.testing.assert_close(rec.outputs["shared"][0], model.shared(x).detach())
    rec.clear()
    assert rec.outputs == {}


def test_capture_restores_modes_and_requires_grad():
    model = BnInplaceRelu().train()
    model.bn.eval()
    model.lin.weight.requires_grad_(False)
    capture_activations(model, torch.randn(10, 4), layers=["bn"], progress=False)
    assert model.training and model.head.training and not model.bn.training
    assert not model.lin.weight.requires_grad and model.head.weight.requires_grad


def test_capture_uses_eval_mode_and_no_grad():
    torch.manual_seed(0)
    model = BnInplaceRelu().train()
    x = torch.randn(20, 4)
    acts = capture_activations(model, x, layers=["bn"], progress=False, batch_size=7)
    model.eval()
    np.testing.assert_allclose(acts["bn"], model.bn(model.lin(x)).detach().numpy(), atol=1e-6)


def test_capture_inputs_and_labels():
    torch.manual_seed(0)
    model = resnet20(in_channels=1).eval()
    X = torch.randn(30, 1, 8, 8)
    y = torch.arange(30) % 3
    via_tuple = capture_activations(model, (X, y), layers="modularity", progress=False, batch_size=8)
    via_loader = capture_activations(model, DataLoader(TensorDataset(X, y), batch_size=11), layers="modularity",
                                     progress=False)
    via_dataset = capture_activations(model, TensorDataset(X, y), layers="modularity", progress=False)
    assert via_tuple.layers == ["conv1"] + [f"layer{s}.{b}" for s in (1, 2, 3) for b in range(3)]
    for other in (via_loader, via_dataset):
        assert other.layers == via_tuple.layers
        np.testing.assert_array_equal(other.labels, y.numpy())
        for name in via_tuple:
            np.testing.assert_allclose(other[name], via_tuple[name], atol=1e-5)
    assert via_tuple["layer3.2"].shape == (30, 64 * 2 * 2)
    assert capture_activations(model, X, layers=["conv1"], progress=False).labels is None
    raw = capture_activations(model, (X, y), layers=["layer2.0"], reduce=None, progress=False)
    assert raw["layer2.0"].shape == (30, 32, 4, 4)
    pooled = capture_activations(model, (X, y), layers=["layer2.0"], reduce="mean", progress=False)
    np.testing.assert_allclose(pooled["layer2.0"], raw["layer2.0"].mean(axis=(2, 3)), atol=1e-6)
    few = capture_activations(model, (X, y), layers=["conv1"], max_samples=13, progress=False, batch_size=5)
    assert few.n_samples == 13 and few.labels.tolist() == y[:13].tolist()


def test_layer_selection_presets_patterns_and_predicates():
    r = resnet20()
    assert select_layers(r, "blocks") == [f"layer{s}.{b}" for s in (1, 2, 3) for b in range(3)]
    assert len(select_layers(r, "convs")) == 19 + 2  # 19 3x3 convs + 2 projection shortcuts (option B)
    assert len(select_layers(r, "relus")) == 1 + 18
    v = vgg11()
    assert select_layers(v, "modularity") == [n for n, m in v.named_modules() if isinstance(m, nn.Conv2d)]
    assert len(select_layers(v, "modularity")) == 8
    assert select_layers(r, "layer1.*.conv1") == ["layer1.0.conv1", "layer1.1.conv1", "layer1.2.conv1"]
    assert select_layers(r, lambda n, m: isinstance(m, nn.Linear)) == ["fc"]
    assert select_layers(r, ["fc", "conv1"]) == ["conv1", "fc"]  # registration order


def test_unknown_layer_lists_close_matches():
    with pytest.raises(ValueError, match=r"Unknown layer 'layer1.3'.*Close matches: .*layer1\."):
        select_layers(resnet20(), ["layer1.3"])
    with pytest.raises(TypeError, match="preset"):
        select_layers(resnet20(), 3)


def test_layer_that_never_fires_is_an_error():
    with pytest.raises(ValueError, match=r"\['unused'\] never fired"):
        capture_activations(TwiceCalled(), torch.randn(4, 3), layers=["unused"], progress=False)


def test_list_layers():
    table = list_layers(TwiceCalled(), torch.randn(2, 3))
    assert list(table.columns) == ["name", "type", "output_shape", "params", "calls"]
    rows = table.set_index("name")
    assert rows.loc["shared", "calls"] == 2 and rows.loc["unused", "calls"] == 0
    assert rows.loc["shared", "params"] == 12 and rows.loc["shared", "output_shape"] == (2, 3)
    r = list_layers(resnet20(), torch.zeros(1, 3, 32, 32)).set_index("name")
    assert r.loc["layer3.2", "output_shape"] == (1, 64, 8, 8)


def test_activations_from_dict_save_and_load(tmp_path):
    arrays = {"a": np.arange(12.0).reshape(4, 3), "b": torch.ones(4, 2, 2)}
    acts = Activations(arrays, labels=[0, 1, 0, 1])
    assert acts.layers == ["a", "b"] and acts.n_samples == 4
    acts.save(tmp_path / "s")
    for mmap in (True, False):
        back = Activations.load(tmp_path / "s", mmap=mmap)
        assert back.layers == ["a", "b"]
        np.testing.assert_array_equal(back["a"], arrays["a"])
        np.testing.assert_array_equal(back["b"], np.ones((4, 2, 2)))
        np.testing.assert_array_equal(back.labels, [0, 1, 0, 1])
    assert isinstance(Activations.load(tmp_path / "s")["a"], np.memmap)
    with pytest.raises(ValueError, match="same samples"):
        Activations({"a": np.ones((4, 2)), "b": np.ones((5, 2))})
    with pytest.raises(ValueError, match="one label per sample"):
        Activations({"a": np.ones((4, 2))}, labels=[0, 1])
    with pytest.raises(ValueError, match="at least one layer"):
        Activations({})
    with pytest.raises(KeyError, match="Close matches: a"):
        acts["A"]


class FailsOnCall(nn.Module):
    """Raises on the forward call number ``fail_at`` (to simulate an interrupted capture)."""

    def __init__(self, fail_at=None):
        super().__init__()
        self.lin = nn.Linear(5, 8)
        self.calls = 0
        self.fail_at = fail_at

    def forward(self, x):
        self.calls += 1
        if self.calls == self.fail_at:
            raise KeyboardInterrupt("simulated interruption")
        return self.lin(x)


def test_store_interrupted_then_complete_then_reused(tmp_path):
    torch.manual_seed(0)
    X, y = torch.randn(40, 5), torch.arange(40) % 4
    store = tmp_path / "store"
    model = FailsOnCall(fail_at=3)
    with pytest.raises(KeyboardInterrupt):
        capture_activations(model, (X, y), layers=["lin"], store=store, batch_size=10, progress=False)
    manifest = json.loads((store / "manifest.json").read_text())
    assert manifest["complete"] is False
    with pytest.raises(ValueError, match="no complete"):
        Activations.load(store)
    model.fail_at, model.calls = None, 0
    acts = capture_activations(model, (X, y), layers=["lin"], store=store, batch_size=10, progress=False)
    assert model.calls == 4
    np.testing.assert_allclose(acts["lin"], model.lin(X).detach().numpy(), atol=1e-6)
    np.testing.assert_array_equal(acts.labels, y.numpy())
    model.calls = 0
    again = capture_activations(model, (X, y), layers=["lin"], store=store, batch_size=10, progress=False)
    assert model.calls == 0  # reused, not recomputed
    np.testing.assert_array_equal(again["lin"], acts["lin"])


def test_store_of_another_model_or_dataset_is_refused(tmp_path):
    torch.manual_seed(0)
    X = torch.randn(20, 5)
    store = tmp_path / "store"
    capture_activations(FailsOnCall(), X, layers=["lin"], store=store, progress=False)
    with pytest.raises(ValueError, match="another capture .*model"):
        capture_activations(FailsOnCall(), X, layers=["lin"], store=store, progress=False)
    with pytest.raises(ValueError, match="another capture .*data"):
        model = FailsOnCall()
        capture_activations(model, X, layers=["lin"], store=tmp_path / "s2", progress=False)
        capture_activations(model, X + 1, layers=["lin"], store=tmp_path / "s2", progress=False)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not a repgraph activation store"):
        capture_activations(FailsOnCall(), X, layers=["lin"], store=foreign, progress=False)


class Wide(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4096)

    def forward(self, x):
        return self.lin(x)


def test_store_keeps_peak_memory_near_one_batch(tmp_path):
    # numpy and bytes allocations are traced by tracemalloc; torch's own buffers are not, so the
    # measured peak is the extra memory the capture itself keeps on the Python side.
    model = Wide()
    X = torch.randn(2048, 4)
    batch_bytes = 128 * 4096 * 4  # 2 MiB per batch, 32 MiB in all
    tracemalloc.start()
    capture_activations(model, X, layers=["lin"], store=tmp_path / "s", batch_size=128, progress=False)
    _, peak_store = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    tracemalloc.start()
    capture_activations(model, X, layers=["lin"], batch_size=128, progress=False)
    _, peak_memory = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak_store < 3 * batch_bytes
    assert peak_memory > 16 * batch_bytes  # the in-memory capture holds everything: the check can fail


def test_capture_bad_input():
    model = FailsOnCall()
    with pytest.raises(ValueError, match="one label per input"):
        capture_activations(model, (torch.randn(4, 5), torch.arange(3)), layers=["lin"], progress=False)
    with pytest.raises(ValueError, match="empty"):
        capture_activations(model, torch.randn(0, 5), layers=["lin"], progress=False)
    with pytest.raises(ValueError, match="reduce"):
        capture_activations(model, torch.randn(4, 5), layers=["lin"], reduce="max", progress=False)
    with pytest.raises(TypeError, match="data must be"):
        capture_activations(model, 5, layers=["lin"], progress=False)
    with pytest.raises(ValueError, match="Unknown model"):
        get_model("resnet21")

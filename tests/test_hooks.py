import os
import re

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


class Wide(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4096)

    def forward(self, x):
        return self.lin(x)


def _peak_rss_growth(conn, n, store=None):
    """In a forked child: how far the peak resident memory rises above the current one during a
    capture of ``n`` samples of ``Wide`` in batches of 128 (2 MiB), in memory or into ``store``
    (torch's buffers included, unlike tracemalloc)."""
    import re as re_

    def status(key):
        return int(re_.search(key + r":\s+(\d+) kB", open("/proc/self/status").read()).group(1)) * 1024
    torch.set_num_threads(1)
    model, X = Wide(), torch.randn(n, 4)
    capture_activations(model, X[:256], layers=["lin"], batch_size=128, progress=False)  # warm up torch
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # reset the peak (VmHWM) to the current resident size
    before = status("VmRSS")
    acts = capture_activations(model, X, layers=["lin"], batch_size=128, store=store, progress=False)
    conn.send((status("VmHWM") - before, acts["lin"].nbytes))


def _in_child(n, store=None):
    import multiprocessing
    # a fresh interpreter: a forked child shares the parent's resident heap, so what it allocates may
    # land on pages already counted in its RSS, and the growth then reads near 0 (seen under pytest)
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_peak_rss_growth, args=(child, n, store))
    proc.start()
    growth, result_bytes = parent.recv()
    proc.join()
    return growth, result_bytes


needs_peak_reset = pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"),
                                      reason="needs Linux /proc peak-RSS reset")


@needs_peak_reset
def test_in_memory_capture_peaks_near_the_result():
    growth, result_bytes = _in_child(8192)
    assert result_bytes == 8192 * 4096 * 4  # 128 MiB
    # written in place into one array: the peak is the result plus a few batches (the old list of
    # per-batch copies + concatenate needed twice the result); at least the result: the check can fail
    assert 1.0 * result_bytes <= growth < 1.25 * result_bytes, growth / result_bytes


@needs_peak_reset
def test_store_keeps_peak_memory_near_one_batch(tmp_path):
    growth, result_bytes = _in_child(8192, tmp_path / "s")
    assert result_bytes == 64 * 2 * 2**20  # 64 batches of 2 MiB, streamed to disk
    assert growth < 8 * 2 * 2**20, growth / 2**20  # a few batches, not the 128 MiB result


class Lin(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.lin = nn.Linear(5, 3)

    def forward(self, x):
        return self.lin(x)


def _lin_of(model, X):
    with torch.no_grad():
        return model.lin(torch.as_tensor(np.asarray(X, dtype=np.float32))).numpy()


def test_capture_bad_input():
    model = Lin()
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


@pytest.mark.parametrize("bad", [None, 0, -3, 2.5, True, "8"])
def test_batch_size_must_be_a_positive_integer(bad):
    with pytest.raises(ValueError, match=f"batch_size must be a positive integer.*got {re.escape(repr(bad))}"):
        capture_activations(Lin(), torch.randn(4, 5), layers=["lin"], batch_size=bad, progress=False)


def test_activations_bfloat16_and_zero_samples():
    t = torch.tensor([[1.5, -2.0], [3.0, 0.25]], dtype=torch.bfloat16)  # exactly representable values
    acts = Activations({"a": t})
    assert acts["a"].dtype == np.float32
    np.testing.assert_array_equal(acts["a"], [[1.5, -2.0], [3.0, 0.25]])
    with pytest.raises(ValueError, match=r"\['a'\] hold 0 samples"):
        Activations({"a": np.ones((0, 3))})
    with pytest.raises(ValueError, match=r"\['a'\] hold 0 samples"):
        Activations({"a": torch.ones(0, 3, dtype=torch.bfloat16)})


class Sum(nn.Module):
    def forward(self, x):
        return x.sum()


def test_scalar_output_meta_model_and_devices():
    model = nn.Sequential(Lin(), Sum())
    with pytest.raises(ValueError, match=r"Layer '1' produced a scalar \(shape \(\)\)"):
        capture_activations(model, torch.randn(4, 5), layers=["1"], progress=False)
    with torch.device("meta"):
        meta = nn.Sequential(nn.Linear(5, 3))
    with pytest.raises(ValueError, match="meta device.*materialise"):
        capture_activations(meta, torch.randn(4, 5), layers=["0"], progress=False)
    with pytest.raises(ValueError, match="device='meta' but the model's weights are on cpu"):
        capture_activations(Lin(), torch.randn(4, 5), layers=["lin"], device="meta", progress=False)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without a GPU")
def test_cuda_without_gpu_is_a_clear_error():
    with pytest.raises(ValueError, match="no CUDA device is available"):
        capture_activations(Lin(), torch.randn(4, 5), layers=["lin"], device="cuda", progress=False)


# --- reducers ------------------------------------------------------------------------------------

def test_named_reducers_by_hand():
    from repgraph.hooks.reducers import first_token, flatten, last_token, spatial_mean, token_mean
    maps = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).reshape(2, 3, 2, 2)
    assert flatten(maps).shape == (2, 12) and flatten(torch.ones(5)).shape == (5, 1)
    # sample 0, channel 1 holds 4, 5, 6, 7: mean 5.5
    assert spatial_mean(maps)[0, 1].item() == 5.5 and spatial_mean(maps).shape == (2, 3)
    h = torch.randn(3, 4, 2)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1], [0, 0, 1, 1]])  # right-, un- and left-padded
    for n, (lo, hi) in enumerate([(0, 3), (0, 4), (2, 4)]):
        torch.testing.assert_close(token_mean(h, mask)[n], h[n, lo:hi].mean(0))
        torch.testing.assert_close(first_token(h, mask)[n], h[n, lo])
        torch.testing.assert_close(last_token(h, mask)[n], h[n, hi - 1])
    torch.testing.assert_close(token_mean(h), h.mean(1))
    torch.testing.assert_close(last_token(h), h[:, -1])
    torch.testing.assert_close(first_token(h), h[:, 0])
    with pytest.raises(ValueError, match="needs a token axis"):
        token_mean(torch.ones(3, 4))
    with pytest.raises(ValueError, match="attention mask has shape"):
        last_token(h, mask[:, :3])
    with pytest.raises(ValueError, match=r"sample\(s\) \[1\].*no token"):
        token_mean(h, torch.tensor([[1, 0, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1]]))


class Tokens(nn.Module):
    """(N, T) token ids -> (N, T, D) embeddings; takes an attention mask like a transformer."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.emb = nn.Embedding(20, 6)

    def forward(self, input_ids, attention_mask=None):
        return self.emb(input_ids)


def test_mean_on_token_outputs_is_ambiguous_and_names_the_choices():
    ids = torch.randint(0, 20, (5, 7))
    with pytest.raises(ValueError, match="ambiguous.*'spatial_mean'.*'token_mean'"):
        capture_activations(Tokens(), ids, layers=["emb"], reduce="mean", progress=False)
    model = resnet20(in_channels=1)
    x = torch.randn(6, 1, 8, 8)
    pooled = capture_activations(model, x, layers=["layer1.0"], reduce="mean", progress=False)["layer1.0"]
    raw = capture_activations(model, x, layers=["layer1.0"], reduce=None, progress=False)["layer1.0"]
    np.testing.assert_allclose(pooled, raw.mean(axis=(2, 3)), atol=1e-6)  # unambiguous for (N, C, H, W)


def test_dict_batches_go_to_the_model_as_keywords_with_the_mask_for_token_reducers():
    model = Tokens()
    ids = torch.randint(0, 20, (9, 5), generator=torch.Generator().manual_seed(1))
    lengths = torch.tensor([5, 3, 1, 4, 5, 2, 5, 5, 3])
    mask = (torch.arange(5)[None] < lengths[:, None]).long()
    labels = np.array(["a", "b", "c"] * 3)
    data = {"input_ids": ids, "attention_mask": mask, "label": labels}
    got = {}
    for reduce in ("token_mean", "last_token", "first_token"):
        acts = capture_activations(model, data, layers=["emb"], reduce=reduce, batch_size=4, progress=False)
        got[reduce] = acts["emb"]
        assert acts.labels.tolist() == labels.tolist()  # label_key="auto" found "label"
    with torch.no_grad():
        emb = model.emb(ids)
    for n in range(9):
        k = int(lengths[n])
        np.testing.assert_allclose(got["token_mean"][n], emb[n, :k].mean(0).numpy(), atol=1e-6)
        np.testing.assert_allclose(got["last_token"][n], emb[n, k - 1].numpy(), atol=1e-6)
        np.testing.assert_allclose(got["first_token"][n], emb[n, 0].numpy(), atol=1e-6)
    seen = []

    def masked_max(t, attention_mask):  # a callable reducer gets the mask when it takes the keyword
        seen.append(attention_mask.shape)
        return t.masked_fill(~attention_mask.bool()[..., None], -1e9).amax(1)
    acts = capture_activations(model, data, layers=["emb"], reduce=masked_max, batch_size=4, progress=False)
    assert seen == [(4, 5), (4, 5), (1, 5)]
    np.testing.assert_allclose(acts["emb"][1], emb[1, :3].amax(0).numpy(), atol=1e-6)


def test_reducer_must_keep_the_sample_axis():
    with pytest.raises(ValueError, match=r"Layer 'lin': reduce=.*<lambda> turned .* keep the sample axis"):
        capture_activations(Lin(), torch.randn(4, 5), layers=["lin"], reduce=lambda t: t.sum(0), progress=False)


# --- structured outputs, batch axis, inputs ------------------------------------------------------

class Structured(nn.Module):
    """``pair`` returns a tuple (non-tensor first), ``named`` a dict; the model returns a tensor."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.a, self.b = nn.Linear(5, 3), nn.Linear(5, 2)

    def forward(self, x):
        return self.named(x)["main"] + self.pair(x)[1].sum(1, keepdim=True)

    def pair(self, x):
        return "info", self.b(x), self.a(x)

    def named(self, x):
        return {"main": self.a(x), "aux": self.b(x), "none": None}


class Wrap(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


class StructuredNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.core = Structured()
        self.pair, self.named = Wrap(self.core.pair), Wrap(self.core.named)

    def forward(self, x):
        return self.named(x)["main"] + self.pair(x)[1].sum(1, keepdim=True)


def test_tuple_and_dict_outputs_first_tensor_or_output_choice():
    model = StructuredNet()
    x = torch.randn(6, 5)
    with torch.no_grad():
        a, b = model.core.a(x).numpy(), model.core.b(x).numpy()
    acts = capture_activations(model, x, layers=["pair", "named"], progress=False)
    np.testing.assert_allclose(acts["pair"], b, atol=1e-6)   # the first tensor of ("info", b, a)
    np.testing.assert_allclose(acts["named"], a, atol=1e-6)  # the first tensor value of the dict
    acts = capture_activations(model, x, layers=["pair", "named"], output={"pair": 2, "named": "aux"},
                               progress=False)
    np.testing.assert_allclose(acts["pair"], a, atol=1e-6)
    np.testing.assert_allclose(acts["named"], b, atol=1e-6)
    np.testing.assert_allclose(capture_activations(model, x, layers="named", output=1, progress=False)["named"],
                               b, atol=1e-6)
    with pytest.raises(ValueError, match=r"Layer 'named' returned dict with keys \['main', 'aux'\]; output='hid'"):
        capture_activations(model, x, layers="named", output="hid", progress=False)
    with pytest.raises(TypeError, match=r"Layer 'pair' returned \(str, tensor\(6, 2\), tensor\(6, 3\)\).*output="):
        capture_activations(model, x, layers="pair", output=0, progress=False)
    with pytest.raises(ValueError, match="output= names 'nope'"):
        capture_activations(model, x, layers="pair", output={"nope": 1}, progress=False)


class SeqFirst(nn.Module):
    """Takes (N, T, D), runs ``mix`` on (T, N, D) like a batch_first=False layer."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.mix = nn.Linear(4, 4)

    def forward(self, x):
        return self.mix(x.transpose(0, 1)).transpose(0, 1)


def test_batch_axis_is_checked_and_can_be_set_per_layer():
    x = torch.randn(10, 7, 4)
    with pytest.raises(ValueError, match=r"Layer 'mix' output has shape \(7, 10, 4\).*10 samples.*batch_axis="):
        capture_activations(SeqFirst(), x, layers=["mix"], progress=False)
    model = SeqFirst()
    with torch.no_grad():
        expected = model.mix(x).numpy()  # (N, T, D): the layer's values with samples first
    for axis in (1, {"mix": 1}, {"m*": 1}):
        acts = capture_activations(model, x, layers=["mix"], batch_axis=axis, reduce=None, progress=False,
                                   batch_size=4)
        np.testing.assert_allclose(acts["mix"], expected, atol=1e-6)
    with pytest.raises(ValueError, match="batch_axis=5 but its output has shape"):
        capture_activations(model, x, layers=["mix"], batch_axis=5, progress=False)


def test_inputs_are_recorded_before_an_inplace_op_changes_them():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(inplace=True), nn.Linear(6, 2))
    x = torch.randn(12, 4)
    with torch.no_grad():
        pre = model[0](x).numpy()
    acts = capture_activations(model, x, layers=["1", "2"], inputs=True, progress=False, batch_size=5)
    assert acts.layers == ["1:input", "1", "2:input", "2"]
    assert (acts["1:input"] < 0).any()  # the in-place ReLU zeroed these in the live tensor
    np.testing.assert_allclose(acts["1:input"], pre, atol=1e-6)
    np.testing.assert_allclose(acts["1"], np.maximum(pre, 0), atol=1e-6)
    np.testing.assert_allclose(acts["2:input"], acts["1"], atol=1e-6)
    plain = capture_activations(model, x, layers=["1", "2"], progress=False)
    assert plain.layers == ["1", "2"]


class HiddenStates(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.lin = nn.Linear(3, 3)

    def forward(self, *, hidden_states):
        return self.lin(hidden_states)


class KeywordBlocks(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList([HiddenStates(), HiddenStates()])

    def forward(self, x):
        for block in self.blocks:
            x = block(hidden_states=x)
        return x


def test_inputs_from_the_hidden_states_keyword_and_repeated_calls():
    model = KeywordBlocks()
    x = torch.randn(5, 3)
    acts = capture_activations(model, x, layers="blocks", inputs=True, progress=False)
    assert acts.layers == ["blocks.0:input", "blocks.0", "blocks.1:input", "blocks.1"]
    np.testing.assert_allclose(acts["blocks.0:input"], x.numpy())
    np.testing.assert_allclose(acts["blocks.1:input"], acts["blocks.0"])
    with pytest.warns(UserWarning, match="called more than once"):
        with ActivationRecorder(TwiceCalled(), ["shared"], inputs=True) as rec:
            rec.model(x)
    assert list(rec.outputs) == ["shared:input", "shared", "shared:1:input", "shared:1"]
    torch.testing.assert_close(rec.outputs["shared:input"][0], x)


# --- data forms ----------------------------------------------------------------------------------

def test_lists_float64_arrays_and_string_labels():
    model = Lin()
    X = np.random.default_rng(0).normal(size=(11, 5))  # float64
    y = np.array(["cat", "dog", "emu"] * 3 + ["cat", "dog"])
    expected = _lin_of(model, X)
    for data in ([X, y], (X, y), [torch.from_numpy(X), list(y)], (X, list(y))):
        acts = capture_activations(model, data, layers=["lin"], batch_size=4, progress=False)
        np.testing.assert_allclose(acts["lin"], expected, atol=1e-5)
        assert acts.labels.tolist() == y.tolist()
    loader = DataLoader(list(zip(torch.from_numpy(X).float(), y.tolist())), batch_size=3)
    acts = capture_activations(model, loader, layers=["lin"], progress=False)
    assert acts.labels.tolist() == y.tolist()
    with pytest.raises(ValueError, match="Some batches carry labels and others do not"):
        capture_activations(model, [(torch.ones(2, 5), torch.zeros(2)), torch.ones(2, 5)], layers=["lin"],
                            progress=False)


def test_label_key_and_per_token_labels():
    model = Tokens()
    ids = torch.randint(0, 20, (6, 4))
    with pytest.raises(ValueError, match=r"Batch key 'labels'.*labels of shape \(6, 4\).*label_key=None"):
        capture_activations(model, {"input_ids": ids, "labels": ids}, layers=["emb"], reduce="token_mean",
                            progress=False)
    with pytest.raises(ValueError, match=r"label_key='y' but the batch has keys"):
        capture_activations(model, {"input_ids": ids}, layers=["emb"], reduce="token_mean", label_key="y",
                            progress=False)
    acts = capture_activations(model, {"input_ids": ids, "y": torch.arange(6)}, layers=["emb"],
                               reduce="token_mean", label_key="y", progress=False)
    assert acts.labels.tolist() == list(range(6))
    assert capture_activations(model, {"input_ids": ids}, layers=["emb"], reduce="token_mean", label_key=None,
                               progress=False).labels is None


def test_unknown_sample_count_grows_and_matches():
    model = Lin()
    X = torch.randn(37, 5)

    def batches():  # a generator: no len, the arrays grow
        for i in range(0, 37, 4):
            yield X[i:i + 4], torch.arange(i, min(i + 4, 37))
    acts = capture_activations(model, batches(), layers=["lin"], progress=False)
    np.testing.assert_allclose(acts["lin"], _lin_of(model, X), atol=1e-6)
    assert acts.labels.tolist() == list(range(37))
    assert acts["lin"].shape == (37, 3) and acts["lin"].dtype == np.float32 and acts["lin"].flags.c_contiguous
    few = capture_activations(model, batches(), layers=["lin"], max_samples=10, progress=False)
    np.testing.assert_allclose(few["lin"], _lin_of(model, X[:10]), atol=1e-6)


def test_list_layers_with_dict_inputs_and_outputs():
    table = list_layers(Tokens(), {"input_ids": torch.zeros(2, 3, dtype=torch.long)}).set_index("name")
    assert table.loc["emb", "output_shape"] == (2, 3, 6)
    rows = list_layers(StructuredNet(), torch.zeros(2, 5)).set_index("name")
    assert rows.loc["named", "output_shape"] == "{'main': (2, 3), 'aux': (2, 2)}"


# --- the pipelined (CUDA) transfer, run on the CPU, and on a GPU when there is one ----------------

def _pipelined(monkeypatch):
    import functools
    from repgraph.hooks import forward
    from repgraph.hooks.transfer import HostTransfer
    monkeypatch.setattr(forward, "HostTransfer", functools.partial(HostTransfer, pipelined=True))


@pytest.mark.parametrize("to_store", [False, True], ids=["memory", "store"])
def test_pipelined_transfer_gives_the_same_values(tmp_path, monkeypatch, to_store):
    torch.manual_seed(0)
    model = resnet20(in_channels=1).eval()
    X, y = torch.randn(23, 1, 8, 8), torch.arange(23) % 3
    run = dict(layers="modularity", inputs=True, batch_size=5, progress=False)
    direct = capture_activations(model, (X, y), **run)
    _pipelined(monkeypatch)  # two alternating host buffers per layer, each batch written one batch later
    piped = capture_activations(model, (X, y), store=tmp_path / "s" if to_store else None, **run)
    assert piped.layers == direct.layers
    for name in direct:
        np.testing.assert_array_equal(piped[name], direct[name])
    np.testing.assert_array_equal(piped.labels, y.numpy())


class Fails(nn.Module):
    def __init__(self, fail_at=None):
        super().__init__()
        torch.manual_seed(0)
        self.lin = nn.Linear(5, 3)
        self.calls, self.fail_at = 0, fail_at

    def forward(self, x):
        self.calls += 1
        if self.calls == self.fail_at:
            raise KeyboardInterrupt("simulated interruption")
        return self.lin(x)


def test_pipelined_commits_lag_one_batch_and_resume(tmp_path, monkeypatch):
    import json
    from repgraph.storage.store import partial_path
    _pipelined(monkeypatch)
    X = torch.randn(40, 5)
    model = Fails(fail_at=4)
    with pytest.raises(KeyboardInterrupt):
        capture_activations(model, X, layers=["lin"], store=tmp_path / "s", batch_size=10, progress=False)
    # batches 1-3 ran; batch 3 was still waiting in its host buffer, so 2 batches are committed
    assert json.loads((partial_path(tmp_path / "s") / "manifest.json").read_text())["committed"] == 20
    done = model.calls  # the same model resumes (past call fail_at: it raises no more)
    acts = capture_activations(model, X, layers=["lin"], store=tmp_path / "s", batch_size=10, progress=False)
    assert model.calls - done == 2
    np.testing.assert_allclose(acts["lin"], _lin_of(model, X), atol=1e-6)


@pytest.mark.gpu
@pytest.mark.parametrize("to_store", [False, True], ids=["memory", "store"])
def test_cuda_capture_equals_cpu(tmp_path, to_store):
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.manual_seed(0)
    model = resnet20(in_channels=1).eval()
    X, y = torch.randn(50, 1, 8, 8), torch.arange(50) % 3
    run = dict(layers="modularity", inputs=True, batch_size=16, progress=False)
    cpu = capture_activations(model, (X, y), **run)
    gpu = capture_activations(model.cuda(), (X, y), store=tmp_path / "s" if to_store else None, **run)
    assert gpu.layers == cpu.layers
    for name in cpu:
        np.testing.assert_allclose(gpu[name], cpu[name], atol=1e-4, rtol=1e-4)
    half = capture_activations(model.to(torch.bfloat16), (X, y), layers=["layer3.2"], reduce="spatial_mean",
                               progress=False)
    assert half["layer3.2"].dtype == np.float32
    np.testing.assert_allclose(half["layer3.2"], cpu["layer3.2"].reshape(50, 64, -1).mean(2), atol=0.1, rtol=0.1)


@pytest.mark.gpu
def test_cuda_token_reducers_with_a_host_mask():
    model = Tokens()
    ids = torch.randint(0, 20, (9, 5))
    mask = (torch.arange(5)[None] < torch.tensor([5, 3, 1, 4, 5, 2, 5, 5, 3])[:, None]).long()
    data = {"input_ids": ids, "attention_mask": mask}
    cpu = capture_activations(model, data, layers=["emb"], reduce="last_token", progress=False)
    gpu = capture_activations(model.cuda(), data, layers=["emb"], reduce="last_token", progress=False)
    np.testing.assert_allclose(gpu["emb"], cpu["emb"], atol=1e-6)

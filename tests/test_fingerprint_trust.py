"""A store is reused only for the same capture, whatever the reducer's code depth or the process,
and every path or manifest value that cannot work is refused naming the argument.

Expected activations come from running the model's layer by hand (``model.lin(X)``), never from
the store under test.
"""
import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from repgraph import Activations, capture_activations
from repgraph.hooks.fingerprint import callable_token


class Lin(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.lin = nn.Linear(5, 3)

    def forward(self, x):
        return self.lin(x)


X = torch.arange(40.0).reshape(8, 5) / 10


def _expected(scale=1.0):
    with torch.no_grad():
        return Lin().lin(X).numpy() * scale


def _capture(store, **kw):
    return capture_activations(Lin(), X, layers=["lin"], store=store, progress=False, batch_size=4, **kw)


# --- the reducer's identity: user code followed to any depth ---------------------------------

SCALE = 1.0


def _times_scale(t):  # four calls below the reducer: read SCALE here
    return t * SCALE


def _level3(t):
    return _times_scale(t)


def _level2(t):
    return _level3(t)


def _deep_reducer(t):
    return _level2(t).flatten(1)


def test_a_constant_four_calls_below_the_reducer_is_part_of_its_identity(tmp_path, monkeypatch):
    first = _capture(tmp_path / "s", reduce=_deep_reducer)
    np.testing.assert_allclose(first["lin"], _expected(1.0), atol=1e-6)
    monkeypatch.setattr(sys.modules[__name__], "SCALE", 2.0)
    with pytest.raises(ValueError, match="differ in: reduce"):  # before: the x1 store came back
        _capture(tmp_path / "s", reduce=_deep_reducer)
    np.testing.assert_allclose(_capture(tmp_path / "t", reduce=_deep_reducer)["lin"], _expected(2.0), atol=1e-6)


def _scaler_class(body):
    @dataclasses.dataclass(frozen=True, slots=True)
    class Scaler:
        k: float

        if body == "times":
            def __call__(self, t):
                return (t * self.k).flatten(1)
        else:
            def __call__(self, t):
                return (t + self.k).flatten(1)
    return Scaler


def test_a_slotted_callable_is_identified_by_its_code_and_its_slots():
    times, plus = _scaler_class("times"), _scaler_class("plus")
    assert repr(times(2.0)) == repr(plus(2.0))  # same name, same repr: only the code differs
    assert callable_token(times(2.0)) != callable_token(plus(2.0))
    assert callable_token(times(2.0)) != callable_token(times(3.0))
    assert callable_token(times(2.0)) == callable_token(times(2.0))


def test_a_slotted_callable_changed_is_refused_not_stale(tmp_path):
    _capture(tmp_path / "s", reduce=_scaler_class("times")(2.0))
    with pytest.raises(ValueError, match="differ in: reduce"):
        _capture(tmp_path / "s", reduce=_scaler_class("plus")(2.0))


_TOKEN_SCRIPT = """
import hashlib
from repgraph.hooks.fingerprint import callable_token
def reducer(t):
    return t.flatten(1) * (2 if "mean" in {"mean", "max", "min", "sum", "std"} else 1)
print(hashlib.sha256(callable_token(reducer).encode()).hexdigest())
"""


def test_a_reducer_has_the_same_identity_in_every_process():
    """A set literal compiles to a frozenset whose order follows the randomised string hashes."""
    tokens = set()
    for seed in ("1", "2", "3"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        run = subprocess.run([sys.executable, "-c", _TOKEN_SCRIPT], env=env, capture_output=True, text=True,
                             check=True)
        tokens.add(run.stdout.strip())
    assert len(tokens) == 1


# --- options and meta the JSON manifest holds --------------------------------------------------

def test_numpy_integer_options_are_stored_and_reused(tmp_path):
    first = _capture(tmp_path / "s", max_samples=np.int64(6))  # before: json TypeError on int64
    np.testing.assert_allclose(first["lin"], _expected()[:6], atol=1e-6)
    again = _capture(tmp_path / "s", max_samples=6)
    np.testing.assert_array_equal(again["lin"], first["lin"])
    assert json.loads((tmp_path / "s" / "manifest.json").read_text())["fingerprint"]["max_samples"] == 6


def test_meta_json_cannot_hold_is_named_and_numpy_numbers_kept(tmp_path):
    acts = Activations({"a": np.ones((2, 1))}, meta={"epochs": np.int64(3), "lr": np.float32(0.5)})
    acts.save(tmp_path / "s")
    assert Activations.load(tmp_path / "s").meta == {"epochs": 3, "lr": 0.5}
    bad = Activations({"a": np.ones((2, 1))}, meta={"run": {"when": object()}})
    with pytest.raises(TypeError, match=r"\['meta'\]\['run'\]\['when'\].*type object"):
        bad.save(tmp_path / "t")
    assert not (tmp_path / "t").exists() and not (tmp_path / "t.partial").exists()


# --- store paths -------------------------------------------------------------------------------

def test_a_store_saved_with_save_is_refused_as_saved_not_as_other_weights(tmp_path):
    Activations({"lin": np.zeros((8, 3))}).save(tmp_path / "saved")
    with pytest.raises(ValueError, match="saved with Activations.save") as err:
        _capture(tmp_path / "saved")
    assert "weights" not in str(err.value)


@pytest.mark.parametrize("use", ["capture", "save", "load"])
def test_a_file_or_a_path_under_a_file_is_refused_naming_the_argument(tmp_path, use):
    (tmp_path / "f").write_text("notes")
    argument = "store" if use == "capture" else "path"
    act = {"capture": _capture, "save": Activations({"a": np.ones((2, 1))}).save, "load": Activations.load}[use]
    with pytest.raises(ValueError, match=rf"{argument}=.*is a file, not a folder"):
        act(tmp_path / "f")
    with pytest.raises(ValueError, match=rf"{argument}=.*lies under .*which is a file"):
        act(tmp_path / "f" / "acts")
    assert (tmp_path / "f").read_text() == "notes"


@pytest.mark.parametrize("use", ["capture", "save"])
def test_the_current_folder_or_one_above_is_refused_as_a_store(tmp_path, monkeypatch, use):
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    act = {"capture": _capture, "save": Activations({"a": np.ones((2, 1))}).save}[use]
    for path in (".", "..", "/"):
        with pytest.raises(ValueError, match="the current folder or one above it"):
            act(path)
    assert list(here.iterdir()) == []


def test_relative_and_absolute_spellings_are_one_store(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = _capture("acts")
    np.testing.assert_allclose(first["lin"], _expected(), atol=1e-6)
    again = _capture(str(tmp_path / "sub" / ".." / "acts"))
    np.testing.assert_array_equal(again["lin"], first["lin"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["acts", "acts.lock"]


def test_load_of_a_missing_or_plain_folder_says_what_it_is(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        Activations.load(tmp_path / "typo")
    (tmp_path / "plain").mkdir()
    with pytest.raises(ValueError, match="without a manifest.json"):
        Activations.load(tmp_path / "plain")


def test_a_lock_path_taken_by_a_folder_is_named(tmp_path):
    (tmp_path / "acts.lock").mkdir()
    with pytest.raises(OSError, match=r"lock file .*acts\.lock.*pass another store folder"):
        _capture(tmp_path / "acts")


# --- the model's identity: what it computes, not only its weights ----------------------------
# Each change keeps the weights (the conv is seeded the same whatever its padding or activation);
# the oracle is the changed model's layer run by hand, in memory.

class ConvNet(nn.Module):
    def __init__(self, act=None, padding=0, scale=1.0):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(1, 2, 3, padding=padding)
        self.act = nn.ReLU() if act is None else act
        self.scale = scale

    def forward(self, x):
        return self.act(self.conv(x * self.scale)).flatten(1)


IMAGES = torch.randn(200, 1, 14, 14, generator=torch.Generator().manual_seed(0))


def _by_hand(model):
    with torch.no_grad():
        return model.act(model.conv(IMAGES * model.scale)).flatten(1).numpy()


def _capture_net(model, store):
    return capture_activations(model, IMAGES, layers=["act"], store=store, progress=False, batch_size=64)


def _times(k):
    return lambda _module, _args, out: out * k


def _add_hook(model, hook=_times(2.0), pre=False):
    if pre:
        model.conv.register_forward_pre_hook(lambda _module, args: (args[0] + 1,))
    else:
        model.act.register_forward_hook(hook)
    return model


CHANGES = {
    "ReLU -> GELU": lambda: ConvNet(act=nn.GELU()),
    "ReLU -> Tanh": lambda: ConvNet(act=nn.Tanh()),
    "LeakyReLU slope": lambda: ConvNet(act=nn.LeakyReLU(0.3)),
    "conv padding 0 -> 1": lambda: ConvNet(padding=1),
    "forward hook added": lambda: _add_hook(ConvNet()),
    "forward hook changed": lambda: _add_hook(ConvNet(), _times(3.0)),
    "forward pre-hook added": lambda: _add_hook(ConvNet(), pre=True),
    "input scale 1 -> 3": lambda: ConvNet(scale=3.0),
}
BEFORE = {"LeakyReLU slope": lambda: ConvNet(act=nn.LeakyReLU(0.01)),
          "forward hook changed": lambda: _add_hook(ConvNet())}


@pytest.mark.parametrize("change", list(CHANGES))
def test_a_model_that_computes_otherwise_is_refused_not_stale(tmp_path, change):
    before, after = BEFORE.get(change, ConvNet)(), CHANGES[change]()
    assert all(torch.equal(a, b) for a, b in zip(before.state_dict().values(), after.state_dict().values()))
    first = _capture_net(before, tmp_path / "s")
    np.testing.assert_array_equal(first["act"], _by_hand(before))
    assert first["act"].shape != _by_hand(after).shape or not np.array_equal(first["act"], _by_hand(after))
    with pytest.raises(ValueError, match=r"holds activations of another capture; they differ in: modules \("):
        _capture_net(after, tmp_path / "s")  # before: the old activations came back
    np.testing.assert_array_equal(_capture_net(after, tmp_path / "t")["act"], _by_hand(after))


def _mtimes(folder):
    return {p.name: p.stat().st_mtime_ns for p in sorted(folder.iterdir())}


def test_the_same_model_built_again_reuses_its_store(tmp_path):
    first = _capture_net(_add_hook(ConvNet(act=nn.LeakyReLU(0.3), padding=1)), tmp_path / "s")
    written = _mtimes(tmp_path / "s")
    again = _capture_net(_add_hook(ConvNet(act=nn.LeakyReLU(0.3), padding=1)), tmp_path / "s")
    assert _mtimes(tmp_path / "s") == written
    np.testing.assert_array_equal(again["act"], first["act"])


class Counting(nn.Module):
    """Writes ``self.calls`` in its forward: running state, not configuration."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.lin = nn.Linear(5, 3)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.lin(x)


def test_an_attribute_the_forward_writes_does_not_stop_reuse(tmp_path):
    model = Counting()
    first = capture_activations(model, X, layers=["lin"], store=tmp_path / "s", progress=False, batch_size=4)
    assert model.calls == 2
    written = _mtimes(tmp_path / "s")
    again = capture_activations(model, X, layers=["lin"], store=tmp_path / "s", progress=False, batch_size=4)
    assert model.calls == 2 and _mtimes(tmp_path / "s") == written
    np.testing.assert_array_equal(again["lin"], first["lin"])


_PROCESS_SCRIPT = """
import sys
import torch
from torch import nn
from repgraph import capture_activations

MODES = {"mean", "max", "min", "sum", "std"}

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        self.act = nn.LeakyReLU(0.3)
        self.options = {"modes": {"a", "b", "c", "d"}, "scale": 2.0}

    def forward(self, x):
        return self.act(self.conv(x * self.options["scale"])) * (2 if "mean" in MODES else 1)

model = Net()
model.act.register_forward_hook(lambda _m, _a, out: out + 1)
x = torch.randn(16, 1, 6, 6, generator=torch.Generator().manual_seed(0))
acts = capture_activations(model, x, layers=["act"], store=sys.argv[1], progress=False, batch_size=8)
print(float(acts["act"].sum()))
"""


def test_the_same_model_reuses_its_store_in_another_process(tmp_path):
    """String hashing is randomised per process: sets and dicts must not show through."""
    store, sums = tmp_path / "s", set()
    for seed in ("1", "2", "3"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        run = subprocess.run([sys.executable, "-c", _PROCESS_SCRIPT, str(store)], env=env, capture_output=True,
                             text=True)
        assert run.returncode == 0, run.stderr
        sums.add(run.stdout.strip())
        if seed == "1":
            written = _mtimes(store)
    assert _mtimes(store) == written and len(sums) == 1


# --- the manifest's checksum covers the order of the layers -------------------------------------

def test_two_layer_entries_swapped_without_a_new_checksum_are_refused(tmp_path):
    from repgraph.storage.store import DamagedStoreError
    store = tmp_path / "s"
    capture_activations(ConvNet(), IMAGES, layers=["conv", "act"], store=store, progress=False)
    manifest = json.loads((store / "manifest.json").read_text())
    manifest["layers"].reverse()
    (store / "manifest.json").write_text(json.dumps(manifest, indent=1))
    for use in (Activations.load, lambda s: capture_activations(ConvNet(), IMAGES, layers=["conv", "act"],
                                                                store=s, progress=False)):
        with pytest.raises(DamagedStoreError, match="does not match its checksum"):
            use(store)


class Interrupted(ConvNet):
    """``ConvNet`` that raises on its third call while ``fail`` is set (a killed capture)."""

    fail = True

    def forward(self, x):
        self.calls = getattr(self, "calls", 0) + 1
        if Interrupted.fail and self.calls == 3:
            raise KeyboardInterrupt("simulated interruption")
        return super().forward(x)


def test_a_changed_model_does_not_resume_the_old_ones_interrupted_capture(tmp_path, monkeypatch):
    with pytest.raises(KeyboardInterrupt):
        _capture_net(Interrupted(), tmp_path / "s")  # two batches of 64 committed
    monkeypatch.setattr(Interrupted, "fail", False)
    after = Interrupted(scale=3.0)
    got = _capture_net(after, tmp_path / "s")  # before: rows 0:128 of the x1 model, the rest x3
    assert after.calls == 4  # started again
    np.testing.assert_array_equal(got["act"], _by_hand(after))


def test_a_hugging_face_config_is_part_of_the_model_identity(tmp_path):
    transformers = pytest.importorskip("transformers")

    def bert(**change):
        torch.manual_seed(0)
        config = transformers.BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                         intermediate_size=16, max_position_embeddings=16, **change)
        return transformers.BertModel(config).eval()

    ids = torch.randint(0, 50, (6, 5), generator=torch.Generator().manual_seed(0))
    run = {"layers": ["encoder.layer.0"], "store": tmp_path / "s", "progress": False}
    capture_activations(bert(), ids, **run)
    written = _mtimes(tmp_path / "s")
    capture_activations(bert(), ids, **run)  # the same config: reused
    assert _mtimes(tmp_path / "s") == written
    changed = bert()
    changed.config.output_hidden_states = True  # read from the config at forward time: another output
    with pytest.raises(ValueError, match="differ in: modules"):
        capture_activations(changed, ids, **run)

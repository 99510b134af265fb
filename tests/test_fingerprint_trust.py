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

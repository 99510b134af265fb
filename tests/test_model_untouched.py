"""The user's model is never changed by an analysis: its own hooks run during every capture or
traced forward and stay on the model, and each submodule's train/eval flag is as it was.

The hook oracle: torch numbers hook handles per process from 0, so a model unpickled in a fresh
process holds hooks under ids the process's counter has not reached yet. A hook whose id collides
with the user's would overwrite it in the module's dict (the analysis then runs without it) and
its removal would delete the user's hook. The effect of the user's hooks on the output (worked out
by hand) says whether they ran.
"""
import inspect
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

import repgraph
import repgraph.hooks
import repgraph.hooks.trace
import repgraph.pruning
import repgraph.workflows
from repgraph.hooks.handles import TemporaryHooks
from repgraph.hooks.modes import evaluating
from repgraph.models import resnet20
from repgraph.models.byte_gpt import byte_gpt

ROOT = Path(__file__).resolve().parents[1]

# Two fresh interpreters: the first saves a model with its hooks, the second loads it (its hook
# counter starts at 0 again) and captures. The saved hooks sit where a capture's first hooks go
# (ids 0, 1, 2: the model's pre-hook, the forward hooks of "0" and "1"), so every one of them
# would be overwritten by a colliding id. Linear(1, 1) with weight 1 and bias 0; the pre-hook adds
# 10 to the input, the forward hook of "0" doubles its output, the with_kwargs forward hook of the
# ReLU adds 1: a bare forward of x = 1 gives "0" = (1 + 10)·2 = 22 and "1" = 22 + 1 = 23.
HOOKS = """
import torch
from torch import nn

def add_ten(module, args):
    return (args[0] + 10,)

def double(module, args, output):
    return output * 2

def add_one(module, args, kwargs, output):
    return output + 1
"""
SAVE = HOOKS + """
import sys
model = nn.Sequential(nn.Linear(1, 1), nn.ReLU())
with torch.no_grad():
    model[0].weight.fill_(1.0)
    model[0].bias.zero_()
model.register_forward_pre_hook(add_ten)
model[0].register_forward_hook(double)
model[1].register_forward_hook(add_one, with_kwargs=True)
torch.save(model, sys.argv[1])
"""
LOAD = HOOKS + """
import sys
from torch.utils.hooks import RemovableHandle
import repgraph as rg

def hooks(model):
    return [(n, attr, dict(d)) for n, m in model.named_modules() for attr, d in sorted(vars(m).items())
            if "hooks" in attr and isinstance(d, dict)]

model = torch.load(sys.argv[1], weights_only=False)
before = hooks(model)
assert RemovableHandle.next_id == 0 and list(model._forward_pre_hooks) == [0], "no collision to test"
assert list(model[0]._forward_hooks) == [1] and list(model[1]._forward_hooks) == [2], "no collision to test"
x = torch.ones(3, 1)
assert model(x).flatten().tolist() == [23.0] * 3
acts = rg.capture_activations(model, x, layers=["0", "1"], progress=False)
assert acts["0"].ravel().tolist() == [22.0] * 3, acts["0"]
assert acts["1"].ravel().tolist() == [23.0] * 3, acts["1"]
assert hooks(model) == before, (hooks(model), before)
assert model(x).flatten().tolist() == [23.0] * 3
print("ok")
"""


def test_hooks_of_a_model_loaded_in_a_fresh_process_run_during_a_capture_and_stay(tmp_path):
    path = tmp_path / "model.pt"
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    subprocess.run([sys.executable, "-c", SAVE, str(path)], check=True, env=env, timeout=120)
    done = subprocess.run([sys.executable, "-c", LOAD, str(path)], capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]


def test_temporary_hooks_remove_only_entries_that_still_hold_their_hook():
    model = nn.Sequential(nn.Linear(1, 1))
    added = TemporaryHooks(model)
    ours, theirs, kept = CountCalls(), CountCalls(), CountCalls()
    added.forward(model[0], ours)
    added.pre(model, kept, with_kwargs=True)
    (key,) = model[0]._forward_hooks
    model[0]._forward_hooks[key] = theirs  # replaced since: no longer ours to remove
    added.remove()
    assert dict(model[0]._forward_hooks) == {key: theirs}
    assert not model._forward_pre_hooks and not model._forward_pre_hooks_with_kwargs


# --- every public function that takes a model -------------------------------------------------


class CountCalls:
    """A user's hook that counts its calls and leaves everything as it is."""

    def __init__(self):
        self.calls = 0

    def __call__(self, *args):
        self.calls += 1


def hook_table(model: nn.Module) -> list:
    """Every hook entry of every submodule: (module name, dict name, id, hook)."""
    return [(name, attr, key, value) for name, m in model.named_modules() for attr, d in sorted(vars(m).items())
            if "hooks" in attr and isinstance(d, dict) for key, value in d.items()]


def state(model: nn.Module) -> dict:
    return {"training": [(n, m.training) for n, m in model.named_modules()],
            "requires_grad": [(n, p.requires_grad) for n, p in model.named_parameters()],
            "hooks": hook_table(model),
            "values": {k: v.clone() for k, v in model.state_dict().items()}}


def assert_same_state(before: dict, after: dict):
    assert after["training"] == before["training"]
    assert after["requires_grad"] == before["requires_grad"]
    assert after["hooks"] == before["hooks"]
    assert after["values"].keys() == before["values"].keys()
    for key, value in before["values"].items():
        assert torch.equal(after["values"][key], value), key


def mixed_modes(model: nn.Module) -> nn.Module:
    """Every other submodule in train mode, the others in eval mode (set one by one)."""
    for i, m in enumerate(model.modules()):
        m.training = i % 2 == 0
    return model


def registrations(model: nn.Module, call) -> list:
    """The hooks ``call()`` registers on ``model``, in order: (module name, dict name, offset of
    the id from torch's hook counter before the call). Torch creates each handle before it inserts
    the hook under the handle's id, so the spy sees every registration, repgraph's and
    Torch-Pruning's alike."""
    where = {id(d): (name, attr) for name, m in model.named_modules() for attr, d in vars(m).items()
             if attr in ("_forward_hooks", "_forward_pre_hooks")}
    start, made, init = RemovableHandle.next_id, [], RemovableHandle.__init__

    def spy(handle, hooks_dict, **kwargs):
        init(handle, hooks_dict, **kwargs)
        if id(hooks_dict) in where:
            made.append((*where[id(hooks_dict)], handle.id - start))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(RemovableHandle, "__init__", spy)
        call()
    return made


@pytest.fixture
def user_hooks(monkeypatch):
    """``add(model, places) -> counters``: a user's hook at each place ``(module name, dict name,
    offset)`` of ``registrations``, under the id an analysis that registers in the same order will
    be given next (plain and with_kwargs variants in turn), then torch's hook counter set back to
    the first of those ids, as in a process that has just unpickled the model: every hook the
    analysis adds would collide with one of the user's."""
    def add(model, places):
        start, counters = RemovableHandle.next_id, []
        for i, (name, attr, offset) in enumerate(places):
            module = model.get_submodule(name)
            register = module.register_forward_hook if attr == "_forward_hooks" else module.register_forward_pre_hook
            monkeypatch.setattr(RemovableHandle, "next_id", start + offset)
            counters.append(CountCalls())
            register(counters[-1], with_kwargs=i % 2 == 1)
        monkeypatch.setattr(RemovableHandle, "next_id", start)
        return counters
    return add


X = torch.randn(6, 3, 32, 32, generator=torch.Generator().manual_seed(0))
Y = torch.arange(6) % 10
X1 = X[:1]
TOKENS = torch.arange(6 * 16).reshape(6, 16) % 256


def _recorder(model, tmp_path):
    with repgraph.ActivationRecorder(model, ["layer1.0", "fc"], inputs=True) as rec:
        with evaluating(model), torch.no_grad():
            model(X)
    assert rec.outputs["fc"][0].shape == (6, 10)


def _prune(m):
    return repgraph.prune_filters(m, repgraph.l1_scores(m), ratio=0.5, example_input=X1)


def _scores(model):
    return {c: repgraph.l1_scores(model)[c] for c in repgraph.uncoupled_convs(model, X1)}


# name -> (model kind, call, whether the call runs the model). Each runs on the mixed-mode model
# with the user's hooks under colliding ids.
CASES = {
    "ActivationRecorder": ("cnn", _recorder, True),
    "capture_activations": ("cnn", lambda m, tmp: repgraph.capture_activations(m, X, progress=False), True),
    "capture_activations[store]": ("cnn", lambda m, tmp: repgraph.capture_activations(
        m, X, layers=["layer1.0", "fc"], store=tmp / "store", progress=False), True),
    "list_layers": ("cnn", lambda m, tmp: repgraph.list_layers(m, X1), True),
    "l1_scores": ("cnn", lambda m, tmp: repgraph.l1_scores(m), False),
    "ScoresImportance": ("cnn", lambda m, tmp: repgraph.ScoresImportance(repgraph.l1_scores(m), model=m), False),
    "count_params_flops": ("cnn", lambda m, tmp: repgraph.count_params_flops(m, X1), True),
    "evaluate": ("cnn", lambda m, tmp: repgraph.evaluate(m, (X, Y), progress=False), True),
    "evaluate_lm": ("lm", lambda m, tmp: repgraph.evaluate_lm(m, TOKENS, progress=False), True),
    "block_removal_loss": ("lm", lambda m, tmp: repgraph.block_removal_loss(m, TOKENS, progress=False), True),
    # the test's model has 2 blocks: without the first-block barrier one may go
    "sleb_removal": ("lm", lambda m, tmp: repgraph.sleb_removal(m, TOKENS, 1, keep_first=0, progress=False), True),
    "block_taylor_scores": ("lm", lambda m, tmp: repgraph.block_taylor_scores(m, TOKENS, progress=False), True),
    "prune_filters": ("cnn", lambda m, tmp: repgraph.prune_filters(m, _scores(m), ratio=0.5, example_input=X1),
                      True),
    "save_pruned": ("cnn", lambda m, tmp: repgraph.save_pruned(m, tmp.with_name(f"{tmp.name}_pruned.pt")), False),
    "layer_sensitivity": ("cnn", lambda m, tmp: repgraph.layer_sensitivity(m, (X, Y), layers=["conv1", "fc"],
                                                                           repeats=1), True),
    "snf_ratios": ("cnn", lambda m, tmp: repgraph.snf_ratios(m, _scores(m), target_flops=0.8, example_input=X1), True),
    "magnitude_masks": ("cnn", lambda m, tmp: repgraph.magnitude_masks(m, 0.5), False),
    "rgp_masks": ("cnn", lambda m, tmp: repgraph.rgp_masks(m, 0.5, swaps=2), False),
    "spline_scores": ("cnn", lambda m, tmp: repgraph.spline_scores(m, example_input=X1), True),
    "apply_masks": ("cnn", lambda m, tmp: repgraph.apply_masks(m, repgraph.magnitude_masks(m, 0.5)), False),
    "sparsity": ("cnn", lambda m, tmp: repgraph.sparsity(m), False),
    # the rounds train copies (here a "training" that runs one forward on the copy)
    "lottery_imp": ("cnn", lambda m, tmp: repgraph.lottery_imp(m, lambda net: net(X1), sparsity=0.5, rounds=2),
                    False),
    "colt_masks": ("cnn", lambda m, tmp: repgraph.colt_masks(m, lambda net, s: net(s), [X1, X1], sparsity=0.3,
                                                             rate=0.2), False),
    # the search runs on a copy (the copy's hooks run, not these)
    "lottery_jackpot": ("cnn", lambda m, tmp: repgraph.lottery_jackpot(m, (X, Y), sparsity=0.5, epochs=1, batch_size=3,
                                                                       progress=False), False),
    # constructing the regulariser reads the layer names only; shrink_prune trains a copy
    "SelectiveShrinkage": ("cnn", lambda m, tmp: repgraph.SelectiveShrinkage(m, decay=1.0), False),
    "shrink_prune": ("cnn", lambda m, tmp: repgraph.shrink_prune(m, lambda net, shrink: net(X1), threshold=1e-3,
                                                                 decay=1.0), False),
    # ASCP: clustering reads the weights; the regulariser's constructor traces conv -> BN pairs (its calls
    # pull the filters, by design); the merge traces and prunes a copy (the copy's hooks run, not these)
    "ascp_clusters": ("cnn", lambda m, tmp: repgraph.ascp_clusters(m, 0.5, layers=["layer1.0.conv1"]), False),
    "AscpRegulariser": ("cnn", lambda m, tmp: repgraph.AscpRegulariser(
        m, repgraph.ascp_clusters(m, 0.5, layers=["layer1.0.conv1"]), epochs=2, example_input=X1), True),
    "ascp_merge": ("cnn", lambda m, tmp: repgraph.ascp_merge(
        m, repgraph.ascp_clusters(m, 0.5, layers=["layer1.0.conv1"]), X1), False),
    "removable_layers": ("cnn", lambda m, tmp: repgraph.removable_layers(m, X1), True),
    "remove_layers": ("cnn", lambda m, tmp: repgraph.remove_layers(m, ["layer1.1"], example_input=X1), True),
    "uncoupled_convs": ("cnn", lambda m, tmp: repgraph.uncoupled_convs(m, X1), True),
    "block_redundancy": ("lm", lambda m, tmp: repgraph.block_redundancy(m, TOKENS, n_max=2, progress=False), True),
    "clp_scores": ("cnn", lambda m, tmp: repgraph.clp_scores(m, example_input=X1), True),
    "criterion_importance": ("cnn", lambda m, tmp: repgraph.criterion_importance(
        m, "l1", example_input=X1), True),
    "filter_scores": ("cnn", lambda m, tmp: repgraph.filter_scores(m, "hrank", example_input=X1, data=X,
                                                                   progress=False), True),
    "fsm_model_scores": ("cnn", lambda m, tmp: repgraph.fsm_model_scores(m, example_input=X1), True),
    "filter_scores[fsm]": ("cnn", lambda m, tmp: repgraph.filter_scores(m, "fsm", example_input=X1), True),
    "cap_mask_scores": ("cnn", lambda m, tmp: repgraph.cap_mask_scores(m, (X, Y), epochs=1, batch_size=3), True),
    "filter_scores[cap]": ("cnn", lambda m, tmp: repgraph.filter_scores(m, "cap", example_input=X1, data=(X, Y)),
                           True),
    "layer_filter_report": ("cnn", lambda m, tmp: repgraph.layer_filter_report(m, (X, Y), "layer1.0.relu1",
                                                                               progress=False), True),
    "prune_experiment": ("cnn", lambda m, tmp: repgraph.prune_experiment(m, _prune, (X, Y), (X, Y), example_input=X1,
                                                                         finetune_epochs=1, progress=False), True),
    "CriterionInputs": ("cnn", lambda m, tmp: repgraph.workflows.CriterionInputs(
        model=m, convs=["conv1"], example_input=X1, ratio=0.5, seed=0), False),
    "select_layers": ("cnn", lambda m, tmp: repgraph.hooks.select_layers(m, "blocks"), False),
    "block_stack": ("lm", lambda m, tmp: repgraph.hooks.block_stack(m), False),
    "layer_chain": ("cnn", lambda m, tmp: repgraph.hooks.layer_chain(m, X1, "blocks"), True),
    "check_chained": ("cnn", lambda m, tmp: repgraph.hooks.check_chained(m, X1, ["layer1.0", "layer1.1"]), True),
    "run_with_hooks": ("cnn", lambda m, tmp: repgraph.hooks.trace.run_with_hooks(m, X1, [(m.fc, CountCalls())]),
                       True),
    "traced_input": ("cnn", lambda m, tmp: repgraph.hooks.trace.traced_input(m, X1.numpy()), False),
    "execution_order": ("cnn", lambda m, tmp: repgraph.hooks.trace.execution_order(m, X1), True),
    "conv_bn_pairs": ("cnn", lambda m, tmp: repgraph.hooks.trace.conv_bn_pairs(m, X1), True),
    "producing_conv": ("cnn", lambda m, tmp: repgraph.hooks.trace.producing_conv(m, "layer1.0.relu1", X1), True),
    "following_relu": ("cnn", lambda m, tmp: repgraph.hooks.trace.following_relu(m, "layer1.0.conv1", X1), True),
}
# Functions that change the model they are given by design, and are tested for what they
# promise instead (test_training_changes_weights_and_modes_only).
CHANGE_THE_MODEL = {
    "train": "trains the weights in place and leaves the model in eval mode",
    "heal_lm": "fine-tunes the weights in place and leaves the model in eval mode",
    "shrink_step": "adds the regulariser's gradient to the weights' .grad in place (one step of the user's loop)",
}
HOOKED = {"cnn": ["", "layer1.0", "layer1.0.relu1", "layer2.0.conv1", "fc"], "lm": ["", "transformer.h.0"]}


def fixed_places(kind: str, after: list) -> list:
    """A forward hook and a pre-hook on each module of ``HOOKED[kind]``, under ids after those of
    ``after``."""
    first = max((offset for *_, offset in after), default=-1) + 1
    pairs = [(name, attr) for name in HOOKED[kind] for attr in ("_forward_hooks", "_forward_pre_hooks")]
    return [(name, attr, first + i) for i, (name, attr) in enumerate(pairs)]


def _model(kind: str) -> nn.Module:
    torch.manual_seed(0)
    return resnet20() if kind == "cnn" else byte_gpt(n_layer=2, n_embd=16, n_head=2, n_positions=16)


def public_names(module) -> list[str]:
    """``__all__``, or for a module without one (the traced queries of ``repgraph.hooks.trace``)
    the names it defines without a leading underscore."""
    if hasattr(module, "__all__"):
        return module.__all__
    return [name for name, obj in vars(module).items()
            if not name.startswith("_") and getattr(obj, "__module__", None) == module.__name__]


def test_every_public_function_taking_a_model_is_covered():
    found = set()
    for module in (repgraph, repgraph.workflows, repgraph.pruning, repgraph.hooks, repgraph.hooks.trace):
        for name in public_names(module):
            obj = getattr(module, name)
            try:
                parameters = inspect.signature(obj).parameters
            except (TypeError, ValueError):
                continue
            if "model" in parameters:
                found.add(obj.__name__)
    covered = {name.split("[")[0] for name in CASES} | set(CHANGE_THE_MODEL)
    assert found == covered, (f"not covered: {sorted(found - covered)}; "
                              f"no longer public: {sorted(covered - found)}")


@pytest.mark.parametrize("name", list(CASES))
def test_analysis_leaves_modes_hooks_and_weights_as_they_were(name, user_hooks, tmp_path):
    kind, call, runs = CASES[name]
    places = registrations(probe := _model(kind), lambda: call(probe, tmp_path / "probe"))
    model = mixed_modes(_model(kind))
    counters = user_hooks(model, places + fixed_places(kind, after=places))
    before = state(model)
    call(model, tmp_path)
    assert_same_state(before, state(model))
    if runs:  # the user's hooks ran during the analysis, as in a bare forward
        assert all(c.calls > 0 for c in counters), [c.calls for c in counters]


@pytest.mark.parametrize("kind, fit", [
    ("cnn", lambda m: repgraph.train(m, (X, Y), epochs=1, batch_size=3, progress=False)),
    ("lm", lambda m: repgraph.heal_lm(m, TOKENS.reshape(-1), steps=2, batch_size=2, seq_len=8, progress=False)),
], ids=["train", "heal_lm"])
def test_training_changes_weights_and_modes_only(kind, fit, user_hooks):
    model = mixed_modes(_model(kind))
    counters = user_hooks(model, fixed_places(kind, after=[]))
    before = state(model)
    fit(model)
    after = state(model)
    assert after["hooks"] == before["hooks"]
    assert after["requires_grad"] == before["requires_grad"]
    assert not any(training for _, training in after["training"])  # left in eval mode, as documented
    assert any(not torch.equal(after["values"][k], v) for k, v in before["values"].items())
    assert all(c.calls > 0 for c in counters)


def _add_ten(module, args):
    return (args[0] + 10,)


def _double(module, args, output):
    return output * 2


def _add_one(module, args, kwargs, output):
    return output + 1


def test_hooks_of_a_model_shipped_to_a_fresh_dask_worker_run_during_the_capture(tmp_path, monkeypatch):
    distributed = pytest.importorskip("distributed")
    cloudpickle = pytest.importorskip("cloudpickle")
    # The model of the fresh-process test, its hooks under ids 0, 1, 2: the ids a fresh worker's
    # recorder is given first (its model pre-hook, the forward hooks of "0" and "1").
    monkeypatch.setattr(RemovableHandle, "next_id", 0)
    model = nn.Sequential(nn.Linear(1, 1), nn.ReLU())
    with torch.no_grad():
        model[0].weight.fill_(1.0)
        model[0].bias.zero_()
    model.register_forward_pre_hook(_add_ten)
    model[0].register_forward_hook(_double)
    model[1].register_forward_hook(_add_one, with_kwargs=True)
    monkeypatch.undo()
    x = torch.ones(4, 1)
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import this test file
    try:
        with distributed.LocalCluster(n_workers=1, processes=True, threads_per_worker=1, dashboard_address=None,
                                      silence_logs=40) as local, distributed.Client(local) as client:
            counters = client.run(lambda: __import__("torch.utils.hooks").utils.hooks.RemovableHandle.next_id)
            assert list(counters.values()) == [0], "the worker has hooked before: no collision to test"
            acts = repgraph.capture_activations(model, x, layers=["0", "1"], store=tmp_path / "store",
                                                client=client, progress=False)
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    assert np.asarray(acts["0"]).ravel().tolist() == [22.0] * 4
    assert np.asarray(acts["1"]).ravel().tolist() == [23.0] * 4

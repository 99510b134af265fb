"""Language-model evaluation, healing, block removal and the command line on awkward input.

Oracles: the per-token NLL of each unpadded sequence run alone (F.cross_entropy on its own
logits), weights cloned before a call, and error messages that must name the argument.
"""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

transformers = pytest.importorskip("transformers")
from transformers import GPT2Config, GPT2LMHeadModel, GPT2Model, LlamaConfig, LlamaForCausalLM  # noqa: E402

from repgraph.models import example_input, get_model  # noqa: E402
from repgraph.pruning import evaluate_lm, heal_lm, remove_layers  # noqa: E402
from repgraph.pruning.language_model import next_token_nll  # noqa: E402

V = 100  # vocabulary of the tiny models
POSITIONS = 64


def _gpt2(seed=0):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=V, n_positions=POSITIONS,
                                          bos_token_id=None, eos_token_id=None)).eval()


def _llama(seed=0):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return LlamaForCausalLM(LlamaConfig(num_hidden_layers=2, hidden_size=32, intermediate_size=64,
                                            num_attention_heads=4, num_key_value_heads=2, vocab_size=V,
                                            max_position_embeddings=POSITIONS, bos_token_id=None,
                                            eos_token_id=None)).eval()


def _sequences():
    g = torch.Generator().manual_seed(3)
    return [torch.randint(0, V, (n,), generator=g) for n in (9, 5, 7)]


def _padded(seqs, side):
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), 7, dtype=torch.long)
    mask = torch.zeros(len(seqs), width, dtype=torch.long)
    for i, s in enumerate(seqs):
        where = slice(width - len(s), width) if side == "left" else slice(0, len(s))
        ids[i, where], mask[i, where] = s, 1
    return ids, mask


# --- position ids from the attention mask ------------------------------------------------------

@pytest.mark.parametrize("build", [_gpt2, _llama], ids=["gpt2", "llama"])
@pytest.mark.parametrize("side", ["left", "right"])
def test_padded_batches_give_the_losses_of_each_sequence_alone(build, side):
    model = _gpt2() if build is _gpt2 else _llama()
    seqs = _sequences()
    with torch.no_grad():
        alone = torch.cat([F.cross_entropy(model(s[None]).logits[0, :-1], s[1:], reduction="none") for s in seqs])
        ids, mask = _padded(seqs, side)
        per_token = next_token_nll(model, ids, mask)
    torch.testing.assert_close(per_token, alone, rtol=1e-5, atol=1e-5)
    result = evaluate_lm(model, {"input_ids": ids, "attention_mask": mask}, batch_size=2, progress=False)
    assert result.n_tokens == 8 + 4 + 6
    assert result.nll == pytest.approx(float(alone.double().mean()), rel=1e-5)


def test_a_model_without_position_ids_gets_none():
    seen = {}

    class MaskOnly(nn.Module):
        def forward(self, ids, attention_mask=None):
            seen["mask"] = attention_mask
            return torch.zeros(*ids.shape, 256)

    ids, mask = _padded(_sequences(), "left")
    evaluate_lm(MaskOnly(), {"input_ids": ids, "attention_mask": mask}, progress=False)
    assert torch.equal(seen["mask"], mask)


# --- evaluate_lm input checks -------------------------------------------------------------------

def test_numpy_token_ids_are_accepted_like_tensors():
    model = _gpt2()
    ids, mask = _padded(_sequences(), "left")
    expected = evaluate_lm(model, {"input_ids": ids, "attention_mask": mask}, progress=False)
    assert evaluate_lm(model, {"input_ids": ids.numpy().astype(np.int32), "attention_mask": mask.numpy()},
                       progress=False) == expected
    plain = evaluate_lm(model, ids, progress=False)
    assert evaluate_lm(model, ids.numpy(), progress=False) == plain
    assert evaluate_lm(model, [ids.numpy()], progress=False) == plain
    with pytest.raises(TypeError, match="integer"):
        evaluate_lm(model, ids.numpy().astype(np.float32), progress=False)


def test_sequences_longer_than_the_model_positions():
    with pytest.raises(ValueError, match=r"data.*80 tokens.*64 positions.*n_positions"):
        evaluate_lm(_gpt2(), torch.zeros(2, 80, dtype=torch.long), progress=False)
    with pytest.raises(ValueError, match=r"data.*80 tokens.*64 positions.*max_position_embeddings"):
        evaluate_lm(_llama(), torch.zeros(2, 80, dtype=torch.long), progress=False)
    assert evaluate_lm(_gpt2(), torch.zeros(2, POSITIONS, dtype=torch.long), progress=False).n_tokens == 126


def test_odd_masks_ids_and_batch_sizes():
    model = _gpt2()
    ids = torch.zeros(2, 5, dtype=torch.long)
    with pytest.raises(ValueError, match="attention_mask.*0 .*1"):
        evaluate_lm(model, {"input_ids": ids, "attention_mask": torch.full((2, 5), 0.5)}, progress=False)
    with pytest.raises(ValueError, match=r"attention_mask has shape \(2, 4\)"):
        evaluate_lm(model, {"input_ids": ids, "attention_mask": torch.ones(2, 4)}, progress=False)
    with pytest.raises(TypeError, match="bool"):
        evaluate_lm(model, ids.bool(), progress=False)
    with pytest.raises(TypeError, match=r"ids\[None\]"):
        evaluate_lm(model, ids[0], progress=False)
    for bad in (0, 2.5, True):
        with pytest.raises((TypeError, ValueError), match="batch_size"):
            evaluate_lm(model, ids, batch_size=bad, progress=False)
    assert evaluate_lm(model, ids.int(), progress=False) == evaluate_lm(model, ids, progress=False)


def test_models_that_cannot_be_evaluated():
    ids = torch.zeros(2, 5, dtype=torch.long)
    base = GPT2Model(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=V, n_positions=POSITIONS,
                                 bos_token_id=None, eos_token_id=None))
    with pytest.raises(TypeError, match="language-model head"):
        evaluate_lm(base, ids, progress=False)

    class NoMask(nn.Module):
        def forward(self, ids):
            return torch.zeros(*ids.shape, 256)

    with pytest.raises(TypeError, match="attention_mask"):
        evaluate_lm(NoMask(), {"input_ids": ids, "attention_mask": torch.ones(2, 5)}, progress=False)


# --- heal_lm ------------------------------------------------------------------------------------

TOKENS = torch.arange(2000) % V


def _bigram(seed=0):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Embedding(V, 16), nn.Linear(16, V))


def _weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _heal(model, **settings):
    options = {"steps": 3, "lr": 1e-2, "batch_size": 2, "seq_len": 16, "schedule": "constant", "progress": False}
    return heal_lm(model, settings.pop("tokens", TOKENS), **{**options, **settings})


def test_heal_stops_on_a_non_finite_loss_and_keeps_the_last_finite_weights():
    # lr 1e20: step 1 moves every weight by ~1e20 (Adam), so step 2's logits overflow and its loss
    # is not finite; the weights must be those after step 1 (finite, unlike the start).
    model = _bigram()
    start = _weights(model)
    with pytest.raises(FloatingPointError, match=r"step 2.*lr=1e\+20"):
        _heal(model, lr=1e20, max_grad_norm=None)
    after = _weights(model)
    assert all(torch.isfinite(v).all() for v in after.values())
    assert not torch.equal(after["0.weight"], start["0.weight"])
    # the reference: the same run stopped after its one finite step
    reference = _bigram()
    _heal(reference, lr=1e20, max_grad_norm=None, steps=1)
    assert all(torch.equal(after[k], v) for k, v in _weights(reference).items())
    assert not model.training


def test_heal_restores_the_weights_when_a_step_makes_them_non_finite():
    # lr·weight_decay = 1e38: AdamW's decay multiplies every weight by 1 − 1e38, so the N(0, 1)
    # embedding overflows float32 in step 1 although its loss and gradients were finite.
    model = _bigram()
    start = _weights(model)
    with pytest.raises(FloatingPointError, match="step 1"):
        _heal(model, lr=1e19, weight_decay=1e19, max_grad_norm=None)
    assert all(torch.equal(v, start[k]) for k, v in _weights(model).items())


@pytest.mark.parametrize("settings, error, match", [
    ({"max_grad_norm": 0}, ValueError, "max_grad_norm"),
    ({"max_grad_norm": -1.0}, ValueError, "max_grad_norm"),
    ({"max_grad_norm": float("nan")}, ValueError, "max_grad_norm"),
    ({"lr": 0}, ValueError, "lr"),
    ({"lr": -1e-3}, ValueError, "lr"),
    ({"lr": float("nan")}, ValueError, "lr"),
    ({"lr": float("inf")}, ValueError, "lr"),
    ({"lr": "0.1"}, TypeError, "lr"),
    ({"weight_decay": -1.0}, ValueError, "weight_decay"),
    ({"weight_decay": float("nan")}, ValueError, "weight_decay"),
    ({"steps": 2.5}, TypeError, "steps"),
    ({"steps": 0}, ValueError, "steps"),
    ({"batch_size": 2.0}, TypeError, "batch_size"),
    ({"seq_len": 16.0}, TypeError, "seq_len"),
    ({"seq_len": 1}, ValueError, "seq_len"),
    ({"seed": None}, TypeError, "seed"),
    ({"tokens": torch.ones(100, dtype=torch.bool)}, ValueError, "tokens"),
    ({"tokens": torch.arange(-5, 95)}, ValueError, r"tokens.*\[0, 100\)"),
    ({"tokens": torch.arange(2000) % 256}, ValueError, r"tokens.*\[0, 100\)"),
])
def test_heal_refuses_bad_settings_before_touching_the_model(settings, error, match):
    model = _gpt2()
    start = _weights(model)
    with pytest.raises(error, match=match):
        _heal(model, **settings)
    assert all(torch.equal(v, start[k]) for k, v in _weights(model).items())


def test_heal_refuses_a_frozen_model_and_windows_beyond_its_positions():
    model = _gpt2()
    for p in model.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match="requires_grad"):
        _heal(model)
    with pytest.raises(ValueError, match=r"seq_len.*80 tokens.*64 positions"):
        _heal(_gpt2(), seq_len=80)
    history = _heal(_gpt2(), tokens=np.arange(2000, dtype=np.int32) % V, max_grad_norm=0.5)
    assert len(history) == 3 and history["loss"].map(math.isfinite).all()


# --- remove_layers ------------------------------------------------------------------------------

@pytest.mark.parametrize("names", [1, None, [1], ["transformer.h.0", 2], b"transformer.h.0"])
def test_remove_layers_names_must_be_strings(names):
    with pytest.raises(TypeError, match="names"):
        remove_layers(_gpt2(), names)


# --- the command line ---------------------------------------------------------------------------

def _parse_error(argv, capsys):
    """argparse's exit code and its one error line for ``argv``."""
    from repgraph.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return exit_.value.code, err.strip().splitlines()[-1]


@pytest.mark.parametrize("argv, option", [
    (["prune", "--finetune-epochs", "-1"], "--finetune-epochs"),
    (["prune", "--epochs", "0"], "--epochs"),
    (["prune", "--ratio", "1.5"], "--ratio"),
    (["prune", "--ratio", "nan"], "--ratio"),
    (["prune", "--tol", "nan"], "--tol"),
    (["demo", "--tol", "inf"], "--tol"),
    (["demo", "--k", "0"], "--k"),
    (["demo", "--k", "2.5"], "--k"),
    (["demo", "--batch-size", "1"], "--batch-size"),
    (["demo", "--size", "4"], "--size"),
    (["report", "--seed", "-1"], "--seed"),
    (["train", "--out", "m.pt", "--epochs", "0"], "--epochs"),
    (["layers", "--size", "0"], "--size"),
    (["layers", "--in-channels", "0"], "--in-channels"),
])
def test_cli_refuses_bad_numbers_at_parse_time(argv, option, capsys):
    code, line = _parse_error(argv, capsys)
    assert code == 2 and f"argument {option}:" in line


def test_cli_refuses_output_paths_that_cannot_be_made(tmp_path, capsys):
    plain = tmp_path / "afile"
    plain.write_text("not a folder")
    cases = [(["demo", "--out", str(plain)], "--out"), (["demo", "--store", str(plain)], "--store"),
             (["report", "--store", str(plain / "sub")], "--store"), (["prune", "--out", str(plain)], "--out"),
             (["train", "--out", str(plain / "x.pt")], "--out"), (["train", "--out", str(tmp_path)], "--out"),
             (["train", "--out", ""], "--out")]
    for argv, option in cases:
        code, line = _parse_error(argv, capsys)
        assert code == 2 and f"argument {option}:" in line, argv
    assert plain.read_text() == "not a folder"


def test_cli_runs_as_a_program_without_traceback(tmp_path):
    import subprocess
    import sys

    plain = tmp_path / "afile"
    plain.write_text("")
    done = subprocess.run([sys.executable, "-m", "repgraph.cli", "train", "--out", str(plain / "x"), "--epochs", "1"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("repgraph train: error: argument --out:")


def test_layers_of_a_sequence_model_at_other_lengths(capsys):
    from repgraph.cli import main

    assert main(["layers", "--model", "cnn1d", "--size", "10"]) == 0  # the classifier is built for 10
    assert "fc" in capsys.readouterr().out
    for size in ("1", "2"):
        assert main(["layers", "--model", "cnn1d", "--size", size]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("repgraph layers: error: --size") and "Traceback" not in err[0]


def test_train_refuses_a_sequence_model_on_the_image_digits(tmp_path, capsys):
    from repgraph.cli import main

    assert main(["train", "--model", "cnn1d", "--out", str(tmp_path / "m.pt"), "--epochs", "1", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cnn1d" in err[0] and "resnet20" in err[0]
    assert not (tmp_path / "m.pt").exists()


# --- get_model, example_input -------------------------------------------------------------------

@pytest.mark.parametrize("factory, args, kwargs, error, name", [
    (get_model, (123,), {}, TypeError, "name"),
    (get_model, ("resnet20",), {"num_classes": 0}, ValueError, "num_classes"),
    (get_model, ("resnet20",), {"in_channels": 0}, ValueError, "in_channels"),
    (get_model, ("resnet20",), {"num_classes": 2.5}, TypeError, "num_classes"),
    (example_input, (None,), {}, TypeError, "name"),
    (example_input, ("resnet20",), {"size": -1}, ValueError, "size"),
    (example_input, ("resnet20",), {"batch_size": 0}, ValueError, "batch_size"),
    (example_input, ("cnn1d",), {"in_channels": 2.5}, TypeError, "in_channels"),
])
def test_model_factories_name_the_bad_argument(factory, args, kwargs, error, name):
    with pytest.raises(error, match=name):
        factory(*args, **kwargs)

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

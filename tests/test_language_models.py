"""Transformer block removal, perplexity, healing, the byte corpus and byte_gpt.

Every expected value comes from a hand count or an independent computation: parameter counts from
the original model's own blocks, reference models rebuilt from a config with fewer layers and the
kept weights loaded by hand, the next-token NLL from F.cross_entropy on each unpadded sequence.
"""
import math
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

transformers = pytest.importorskip("transformers")
from transformers import (BertConfig, BertForMaskedLM, GPT2Config, GPT2LMHeadModel,  # noqa: E402
                          LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM)

from repgraph.datasets.text import byte_corpus, token_windows  # noqa: E402
from repgraph.hooks import block_stack  # noqa: E402
from repgraph.models.byte_gpt import byte_gpt  # noqa: E402
from repgraph.pruning import evaluate_lm, heal_lm, removable_layers, remove_layers  # noqa: E402

V = 64  # vocabulary of the tiny transformers


def _gpt2(n):
    return GPT2LMHeadModel, GPT2Config(n_layer=n, n_embd=32, n_head=4, vocab_size=V, n_positions=32,
                                       bos_token_id=None, eos_token_id=None)


def _llama(n):
    return LlamaForCausalLM, LlamaConfig(num_hidden_layers=n, hidden_size=32, intermediate_size=64,
                                         num_attention_heads=4, num_key_value_heads=2, vocab_size=V,
                                         max_position_embeddings=32, bos_token_id=None, eos_token_id=None)


def _bert(n):
    return BertForMaskedLM, BertConfig(num_hidden_layers=n, hidden_size=32, intermediate_size=64,
                                       num_attention_heads=4, vocab_size=V, max_position_embeddings=32)


def _build(spec, n, seed=0):
    cls, config = spec(n)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return cls(config).eval()


def _by_hand(original, prefix, kept):
    """The original's state dict with block kept[i] renamed to block i and the others dropped."""
    out = {}
    for key, value in original.state_dict().items():
        if key.startswith(prefix + "."):
            index, rest = key[len(prefix) + 1:].split(".", 1)
            if int(index) not in kept:
                continue
            key = f"{prefix}.{kept.index(int(index))}.{rest}"
        out[key] = value
    return out


def _layer_indices(block):
    return [m.layer_idx for m in block.modules() if isinstance(vars(m).get("layer_idx"), int)]


CASES = [  # (builder, stack, layers, removed, causal)
    (_gpt2, "transformer.h", 4, [1, 3], True),
    (_llama, "model.layers", 3, [0], True),
    (_bert, "bert.encoder.layer", 4, [1, 2], False),
]


@pytest.mark.parametrize("spec, prefix, n, removed, causal", CASES, ids=["gpt2", "llama", "bert"])
def test_remove_transformer_blocks(spec, prefix, n, removed, causal):
    model = _build(spec, n)
    x = torch.randint(0, V, (2, 7), generator=torch.Generator().manual_seed(1))
    before_logits = model(x).logits.detach().clone()
    before_state = {k: v.clone() for k, v in model.state_dict().items()}
    names = [f"{prefix}.{i}" for i in removed]
    kept = [i for i in range(n) if i not in removed]

    assert block_stack(model) == (prefix, [f"{prefix}.{i}" for i in range(n)])
    assert removable_layers(model) == [f"{prefix}.{i}" for i in range(n)]
    pruned = remove_layers(model, names)

    stack = pruned.get_submodule(prefix)
    assert len(stack) == len(kept) and pruned.config.num_hidden_layers == len(kept)
    removed_params = sum(p.numel() for name in names for p in model.get_submodule(name).parameters())
    assert sum(p.numel() for p in pruned.parameters()) == sum(p.numel() for p in model.parameters()) - removed_params
    for new, old in enumerate(kept):
        mine, theirs = stack[new].state_dict(), model.get_submodule(prefix)[old].state_dict()
        assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)
        assert _layer_indices(stack[new]) and set(_layer_indices(stack[new])) == {new}
    assert pruned(x).logits.shape == (2, 7, V)

    # independent reference: the same class built with fewer layers, kept weights loaded by hand
    reference = _build(spec, len(kept), seed=1)
    reference.load_state_dict(_by_hand(model, prefix, kept))
    torch.testing.assert_close(pruned(x).logits, reference(x).logits)

    if causal:
        def gen(m, use_cache):
            return m.generate(x[:1], max_new_tokens=5, do_sample=False, use_cache=use_cache)
        cached = gen(pruned, True)
        assert cached.shape == (1, 12)
        assert torch.equal(cached, gen(pruned, False))
        assert torch.equal(cached, gen(reference, True))

    # the original is untouched
    assert len(model.get_submodule(prefix)) == n and model.config.num_hidden_layers == n
    assert [_layer_indices(b)[0] for b in model.get_submodule(prefix)] == list(range(n))
    assert all(torch.equal(v, before_state[k]) for k, v in model.state_dict().items())
    torch.testing.assert_close(model(x).logits, before_logits)


def test_gpt2_layer_count_alias_and_shared_config():
    pruned = remove_layers(_build(_gpt2, 4), ["transformer.h.0", "transformer.h.2"])
    assert pruned.config.n_layer == 2  # GPT-2's own name of num_hidden_layers
    assert all(b.attn.config is pruned.config for b in pruned.transformer.h)


def test_per_layer_types_follow_the_removal():
    # Qwen2: layer 0 full attention, layers 1-2 sliding (window 3); the KV cache is built from
    # config.layer_types, so dropping layer 0 must leave ["sliding_attention", "sliding_attention"].
    def spec(n, layer_types=None):
        return Qwen2ForCausalLM, Qwen2Config(num_hidden_layers=n, hidden_size=32, intermediate_size=64,
                                             num_attention_heads=4, num_key_value_heads=2, vocab_size=V,
                                             use_sliding_window=True, sliding_window=3, max_window_layers=1,
                                             layer_types=layer_types, bos_token_id=None, eos_token_id=None)
    model = _build(spec, 3)
    assert model.config.layer_types == ["full_attention", "sliding_attention", "sliding_attention"]
    pruned = remove_layers(model, "model.layers.0")
    assert pruned.config.layer_types == ["sliding_attention", "sliding_attention"]
    assert model.config.layer_types == ["full_attention", "sliding_attention", "sliding_attention"]
    reference = _build(lambda n: spec(n, ["sliding_attention"] * 2), 2)
    reference.load_state_dict(_by_hand(model, "model.layers", [1, 2]))
    x = torch.randint(0, V, (1, 6), generator=torch.Generator().manual_seed(2))
    cached = pruned.generate(x, max_new_tokens=5, do_sample=False, use_cache=True)
    assert torch.equal(cached, pruned.generate(x, max_new_tokens=5, do_sample=False, use_cache=False))
    assert torch.equal(cached, reference.generate(x, max_new_tokens=5, do_sample=False, use_cache=True))


def test_remove_transformer_blocks_errors():
    model = _build(_gpt2, 3)
    with pytest.raises(ValueError, match="Unknown layer 'transformer.h.7'"):
        remove_layers(model, ["transformer.h.7"])
    with pytest.raises(ValueError, match="cannot be removed: only whole blocks of the stack 'transformer.h'"):
        remove_layers(model, ["transformer.h.0.attn"])
    with pytest.raises(ValueError, match="cannot be removed"):
        remove_layers(model, ["transformer.h.0", "transformer.ln_f"])
    with pytest.raises(ValueError, match="Removing all 3 blocks"):
        remove_layers(model, [f"transformer.h.{i}" for i in range(3)])


# --- perplexity -------------------------------------------------------------------------------

class Uniform(nn.Module):
    """Constant logits: p = 1/256 for every token, so the perplexity is 256 by hand."""

    def forward(self, ids, attention_mask=None):
        return torch.zeros(*ids.shape, 256)


class Successor(nn.Module):
    """All mass on (x + 1) mod 256: perplexity 1 on sequences that count up, huge elsewhere."""

    def forward(self, ids, attention_mask=None):
        return 100.0 * F.one_hot((ids + 1) % 256, 256).float()


def _counting(n, t, start=0):
    return (torch.arange(t)[None, :] + torch.arange(start, start + n)[:, None]) % 256


def test_perplexity_by_hand():
    ids = _counting(5, 9, start=250)  # wraps around 255 -> 0
    uniform = evaluate_lm(Uniform(), ids, batch_size=2, progress=False)
    assert uniform.perplexity == pytest.approx(256.0, rel=1e-6)
    assert uniform.nll == pytest.approx(math.log(256), rel=1e-6)
    assert uniform.n_tokens == 5 * 8
    perfect = evaluate_lm(Successor(), ids, progress=False)
    assert perfect.perplexity == pytest.approx(1.0, abs=1e-6) and perfect.n_tokens == 40


def test_padding_is_not_counted():
    ids = _counting(3, 6, start=10)
    mask = torch.tensor([[1, 1, 1, 1, 1, 1],   # 5 predicted tokens
                         [1, 1, 1, 0, 0, 0],   # right padding: 2
                         [0, 0, 1, 1, 1, 1]])  # left padding: 3
    ids = torch.where(mask.bool(), ids, torch.full_like(ids, 7))  # pads that break the counting
    batch = {"input_ids": ids, "attention_mask": mask}
    perfect = evaluate_lm(Successor(), batch, progress=False)
    assert perfect.n_tokens == 10 and perfect.perplexity == pytest.approx(1.0, abs=1e-6)
    assert evaluate_lm(Successor(), ids, progress=False).perplexity > 1e10  # the pads would count
    assert evaluate_lm(Uniform(), batch, progress=False).perplexity == pytest.approx(256.0, rel=1e-6)


def test_perplexity_of_a_padded_gpt2_batch_matches_each_sequence_alone():
    model = _build(_gpt2, 2)
    g = torch.Generator().manual_seed(3)
    seqs = [torch.randint(0, V, (n,), generator=g) for n in (9, 5, 7)]
    ids = torch.zeros(3, 9, dtype=torch.long)
    mask = torch.zeros(3, 9, dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, :len(s)], mask[i, :len(s)] = s, 1
    with torch.no_grad():
        nll = [F.cross_entropy(model(s[None]).logits[0, :-1], s[1:], reduction="sum") for s in seqs]
    expected = float(sum(nll)) / (8 + 4 + 6)
    result = evaluate_lm(model, {"input_ids": ids, "attention_mask": mask}, batch_size=2, progress=False)
    assert result.n_tokens == 18
    assert result.nll == pytest.approx(expected, rel=1e-5)
    assert result.perplexity == pytest.approx(math.exp(expected), rel=1e-5)


def test_evaluate_lm_inputs_modes_and_errors():
    ids = _counting(6, 5)
    expected = evaluate_lm(Uniform(), ids, progress=False)
    forms = [ids, {"input_ids": ids}, TensorDataset(ids), [ids[:4], ids[4:]], [{"input_ids": ids}]]
    for data in forms:
        assert evaluate_lm(Uniform(), data, batch_size=4, progress=False) == expected

    seen = []

    class Recording(Uniform):
        def forward(self, ids, attention_mask=None):
            seen.append(self.training)
            return super().forward(ids)

    model = Recording().train()
    evaluate_lm(model, ids, progress=False)
    assert seen == [False] and model.training
    with pytest.raises(TypeError, match="integer tensor"):
        evaluate_lm(Uniform(), ids.float(), progress=False)
    with pytest.raises(ValueError, match=r"\[0, 64\)"):
        evaluate_lm(_build(_gpt2, 1), torch.full((1, 4), 100), progress=False)
    with pytest.raises(ValueError, match=r"\[0, 256\)"):
        evaluate_lm(Uniform(), torch.full((1, 4), 300), progress=False)
    with pytest.raises(ValueError, match="no predicted token"):
        evaluate_lm(Uniform(), ids[:, :1], progress=False)
    with pytest.raises(TypeError, match="input_ids"):
        evaluate_lm(Uniform(), {"ids": ids}, progress=False)


# --- healing, byte corpus, byte_gpt ------------------------------------------------------------

def _tiny_byte_gpt(dropout=0.0):
    return byte_gpt(n_layer=2, n_embd=32, n_head=2, n_positions=64, dropout=dropout)


def test_heal_lowers_the_loss_and_the_perplexity():
    model = _tiny_byte_gpt()
    held_out = token_windows(byte_corpus("validation"), 64, max_windows=32)
    before = evaluate_lm(model, held_out, progress=False).perplexity
    history = heal_lm(model, byte_corpus("train"), steps=30, lr=3e-3, batch_size=8, seq_len=64, progress=False)
    assert list(history.columns) == ["step", "loss", "lr"] and history["step"].tolist() == list(range(1, 31))
    assert history["loss"].iloc[0] == pytest.approx(math.log(256), abs=0.3)  # near uniform at the start
    assert history["loss"].iloc[-5:].mean() < history["loss"].iloc[:5].mean() - 1.0
    assert history["lr"].iloc[0] == 3e-3 and history["lr"].is_monotonic_decreasing  # cosine
    assert evaluate_lm(model, held_out, progress=False).perplexity < before / 4
    assert not model.training


def test_heal_is_deterministic_and_leaves_the_global_rng_alone():
    tokens = byte_corpus("train")[:20_000]
    runs = []
    for _ in range(2):
        model = _tiny_byte_gpt(dropout=0.1)
        rng = torch.random.get_rng_state()
        history = heal_lm(model, tokens, steps=5, lr=1e-3, batch_size=4, seq_len=32, seed=7, progress=False)
        assert torch.equal(torch.random.get_rng_state(), rng)
        runs.append((model.state_dict(), history))
    (a, ha), (b, hb) = runs
    assert all(torch.equal(a[k], b[k]) for k in a) and ha.equals(hb)
    other = _tiny_byte_gpt(dropout=0.1)
    heal_lm(other, tokens, steps=5, lr=1e-3, batch_size=4, seq_len=32, seed=8, progress=False)
    assert not torch.equal(other.state_dict()["transformer.h.0.attn.c_attn.weight"], a["transformer.h.0.attn.c_attn.weight"])
    with pytest.raises(ValueError, match="1-D integer token stream"):
        heal_lm(other, token_windows(tokens, 32), steps=1, progress=False)
    with pytest.raises(ValueError, match="schedule"):
        heal_lm(other, tokens, steps=1, schedule="linear", progress=False)


def test_byte_corpus_splits_one_module_by_position():
    source = Path(textwrap.__file__).read_bytes().replace(b"\r\n", b"\n")
    parts = [bytes(byte_corpus(s, modules=["textwrap"]).tolist()) for s in ("train", "validation", "test")]
    assert b"".join(parts) == source
    assert len(parts[0]) == round(0.9 * len(source)) and len(parts[1]) == round(0.95 * len(source)) - len(parts[0])
    full = byte_corpus("train")
    assert full.dtype == torch.uint8 and full.dim() == 1 and len(full) > 1_000_000
    assert torch.equal(full, byte_corpus("train"))
    with pytest.raises(ValueError, match="split"):
        byte_corpus("valid")
    with pytest.raises(ValueError, match="fractions"):
        byte_corpus("train", fractions=(0.5, 0.5, 0.0))


def test_token_windows():
    stream = torch.arange(10, dtype=torch.uint8)
    w = token_windows(stream, 4)
    assert w.dtype == torch.long and w.tolist() == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert token_windows(stream, 4, stride=3).tolist() == [[0, 1, 2, 3], [3, 4, 5, 6], [6, 7, 8, 9]]
    assert token_windows(stream, 2, max_windows=2).tolist() == [[0, 1], [2, 3]]
    longs = torch.arange(10)
    token_windows(longs, 5)[0, 0] = 99
    assert longs[0] == 0  # a copy, not a view
    with pytest.raises(ValueError, match="fewer than seq_len"):
        token_windows(stream, 11)


def test_byte_gpt():
    model = _tiny_byte_gpt()
    assert isinstance(model, GPT2LMHeadModel) and not model.training
    assert model.config.vocab_size == 256 and model.config.num_hidden_layers == 2
    assert model(torch.zeros(1, 10, dtype=torch.long)).logits.shape == (1, 10, 256)
    again, other = _tiny_byte_gpt(), byte_gpt(n_layer=2, n_embd=32, n_head=2, n_positions=64, seed=1)
    key = "transformer.h.1.mlp.c_fc.weight"
    assert torch.equal(model.state_dict()[key], again.state_dict()[key])
    assert not torch.equal(model.state_dict()[key], other.state_dict()[key])
    assert removable_layers(model) == ["transformer.h.0", "transformer.h.1"]
    with pytest.raises(ValueError, match="multiple of n_head"):
        byte_gpt(n_embd=30, n_head=4)

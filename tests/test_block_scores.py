"""Loss-based block scores and baselines (issue 20, item 2): block_removal_loss, sleb_removal,
block_taylor_scores and blocks_to_remove(by="last").

Oracles: ports, written here, of the authors' code — jiwonsong-dev/SLEB ``sleb.py`` (the greedy
loop with its barriers, ``get_loss`` and on/off blocks) and Nota-NetsPresso/shortened-llm
``src/anal_block_sensitivity_{ppl,taylor,magnitude}.py``, ``block_prune.py`` (the "+" rule) and
``utils.copy_weight`` (the smaller model built from a config) — and an additive model whose
losses and gradients are worked out by hand.
"""
import copy
import math

import pandas as pd
import pytest
import torch
from torch import nn
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from repgraph import (block_removal_loss, block_taylor_scores, blocks_to_remove, evaluate_lm, remove_layers,
                      sleb_removal)


def tiny_llama(n_layers=6, seed=0):
    torch.manual_seed(seed)
    config = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=n_layers, num_attention_heads=4,
                         num_key_value_heads=2, vocab_size=128, max_position_embeddings=64)
    return LlamaForCausalLM(config).eval()


def tiny_gpt2(seed=0):
    torch.manual_seed(seed)
    return GPT2LMHeadModel(GPT2Config(n_layer=5, n_embd=32, n_head=2, vocab_size=128, n_positions=64)).eval()


def calibration(n=6, t=16, seed=1):
    return torch.randint(0, 128, (n, t), generator=torch.Generator().manual_seed(seed))


# --- the hand-worked model: block k adds w_k = (a_k, 0) to the logits of a two-token vocabulary --------------

class Shift(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.weight = nn.Parameter(torch.tensor([a, 0.0], dtype=torch.float64))
        self.bias = nn.Parameter(torch.tensor([0.25, 0.25], dtype=torch.float64))  # adds to both logits: no effect

    def forward(self, h):
        return h + self.weight + self.bias


class Additive(nn.Module):
    def __init__(self, shifts):
        super().__init__()
        self.layers = nn.ModuleList(Shift(a) for a in shifts)

    def forward(self, ids):
        h = torch.zeros(*ids.shape, 2, dtype=torch.float64)
        for block in self.layers:
            h = block(h)
        return h


def softplus(x):
    return math.log1p(math.exp(x))


# --- ports of the reference code ----------------------------------------------------------------------------

def port_copy_weight_without(model_orig, pruned_blocks):
    """shortened-llm utils.get_block_pruned_network/copy_weight: a fresh LLaMA of L − k blocks from the
    config, with the kept blocks' weights copied under their new indices."""
    config = copy.deepcopy(model_orig.config)
    config.num_hidden_layers = config.num_hidden_layers - len(pruned_blocks)
    small = LlamaForCausalLM(config).eval()
    connect = {"model.embed_tokens.weight": "model.embed_tokens.weight", "model.norm.weight": "model.norm.weight",
               "lm_head.weight": "lm_head.weight"}
    k = 0
    for k_orig in range(model_orig.config.num_hidden_layers):
        if k_orig in pruned_blocks:
            continue
        connect[f"model.layers.{k}."] = f"model.layers.{k_orig}."
        k += 1
    orig = model_orig.state_dict()
    with torch.no_grad():
        for key, value in small.state_dict().items():
            for prefix, source in connect.items():
                if key.startswith(prefix):
                    value.copy_(orig[key.replace(prefix, source)])
                    break
    return small


def port_ppl_criterion(model_orig, examples):
    """shortened-llm anal_block_sensitivity_ppl.py: PPL over the calibration samples, one at a time,
    of the model without each block."""
    loss_fct = nn.CrossEntropyLoss(reduction="none")
    ppls = []
    for block_idx in range(model_orig.config.num_hidden_layers):
        model = port_copy_weight_without(model_orig, [block_idx])
        nlls = []
        with torch.no_grad():
            for j in range(examples.shape[0]):
                x = examples[j].unsqueeze(0)
                logits = model(x).logits
                nlls.append(loss_fct(logits[:, :-1, :].reshape(-1, logits.size(-1)), x[:, 1:].reshape(-1)))
        ppls.append(float(torch.exp(torch.cat(nlls).mean())))
    return ppls


class OnOff(nn.Module):
    """SLEB's on/off decoder layer: with ``pass_layer`` it returns its input hidden states."""

    def __init__(self, layer):
        super().__init__()
        self.layer = layer
        self.pass_layer = False

    def forward(self, hidden_states, *args, **kwargs):
        if self.pass_layer:
            return hidden_states
        return self.layer(hidden_states, *args, **kwargs)


def port_get_loss(model, stream, seqlen):
    """SLEB get_loss (bs=1): Σ over the sequences cut from the token stream of seqlen × mean NLL."""
    nsamples = stream.numel() // seqlen
    losses = []
    with torch.no_grad():
        for i in range(nsamples):
            inputs = stream[:, i * seqlen:(i + 1) * seqlen]
            out = model(inputs)
            logits = getattr(out, "logits", out)
            loss = nn.CrossEntropyLoss()(logits[:, :-1, :].reshape(-1, logits.size(-1)), inputs[:, 1:].reshape(-1))
            losses.append(loss.float() * seqlen)
    return torch.stack(losses).sum().item()


def port_sleb(model, stack, stream, seqlen, num_remove_blocks, early_barrier=1, latter_barrier=1):
    """SLEB sleb(): the greedy loop over the alive list with its barriers and strict '<'."""
    model = copy.deepcopy(model)
    layers = model.get_submodule(stack)
    num_blocks = len(layers)
    for i in range(num_blocks):
        layers[i] = OnOff(layers[i])
    alive_list = list(range(num_blocks))
    removal_list = []
    for i in range(num_remove_blocks):
        min_loss, min_loss_idx = 1e99, -1
        search_bound = num_blocks - i
        for j in range(early_barrier, search_bound - latter_barrier):
            layers[alive_list[j]].pass_layer = True
            loss = port_get_loss(model, stream, seqlen)
            if loss < min_loss:
                min_loss, min_loss_idx = loss, j
            layers[alive_list[j]].pass_layer = False
        layers[alive_list[min_loss_idx]].pass_layer = True
        removal_list.append(alive_list[min_loss_idx])
        del alive_list[min_loss_idx]
    return removal_list


def port_shortened_scores(model, examples, batch_size, taylor=True):
    """shortened-llm anal_block_sensitivity_taylor.py / _magnitude.py with the defaults (norm_power 1,
    sum, sum): per-block scores, model.norm and lm_head dropped, and the block order (ascending)."""
    model = copy.deepcopy(model).eval()
    salience = {}
    if taylor:
        for i in range(0, examples.size(0), batch_size):
            batch = examples[i:i + batch_size]
            loss = model(batch, labels=batch).loss
            loss.backward()
            for k, param in model.named_parameters():
                if param.requires_grad and "weight" in k and "embed_tokens" not in k:
                    s = (param * param.grad).data.clone().float()
                    salience[k] = salience[k] + s if k in salience else s
            model.zero_grad()
    block_info = {}
    for k, param in model.named_parameters():
        if param.requires_grad and "weight" in k and "embed_tokens" not in k:
            block_idx = ".".join(k.split(".")[:3])
            values = salience[k] if taylor else param.data.clone().float()
            if "proj" in k or "lm_head" in k:
                imp = values.abs().pow(1).sum(1)
            elif "norm" in k:
                imp = values.abs().pow(1)
            block_info.setdefault(block_idx, []).append(imp.sum(dim=0).item())
    summary = {k: torch.tensor(v).sum(dim=0).item() for k, v in block_info.items()}
    for k in ["model.norm.weight", "lm_head.weight"]:
        summary.pop(k, None)
    order = [int(k.split(".")[-1]) for k, _ in sorted(summary.items(), key=lambda item: item[1])]
    return summary, order


def port_plus_order(order, num_hidden_layers):
    """shortened-llm block_prune.py: the '+' heuristic keeps blocks 0-3 and the last two."""
    last = num_hidden_layers - 1
    keep = [0, 1, 2, 3, last - 1, last]
    return [idx for idx in order if idx not in keep]


# --- block_removal_loss ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("make", [tiny_llama, tiny_gpt2], ids=["llama", "gpt2"])
def test_removal_loss_is_remove_layers_then_evaluate_lm(make):
    model, tokens = make(), calibration()
    table = block_removal_loss(model, tokens, batch_size=4, progress=False)
    full = evaluate_lm(model, tokens, batch_size=4, progress=False)
    assert table.attrs["full_loss"] == full.nll and table.attrs["n_tokens"] == full.n_tokens
    assert table["depth"].tolist() == list(range(len(table)))
    for block, loss, ppl, delta in table[["block", "loss", "perplexity", "delta_loss"]].itertuples(index=False):
        expected = evaluate_lm(remove_layers(model, [block]), tokens, batch_size=4, progress=False)
        assert loss == expected.nll and ppl == expected.perplexity
        assert delta == pytest.approx(expected.nll - full.nll, abs=1e-12)
    assert table["removable"].all() and table.attrs["redundant_when"]["loss"] == "low"


def test_removal_perplexity_matches_the_shortened_llama_ppl_port():
    model, tokens = tiny_llama(), calibration()
    table = block_removal_loss(model, tokens, progress=False)
    expected = port_ppl_criterion(model, tokens)
    assert table["perplexity"].tolist() == pytest.approx(expected, rel=1e-5)
    assert table.sort_values("perplexity", kind="stable")["depth"].tolist() == sorted(
        range(len(expected)), key=lambda i: expected[i])


def test_removal_loss_by_hand():
    shifts = [1.0, 2.0, 3.0, 0.5]
    table = block_removal_loss(Additive(shifts), torch.zeros(3, 5, dtype=torch.long), progress=False)
    total = sum(shifts)
    # logits (Σa − a_k, 0) + bias on both; every target is token 0: −log p0 = log(1 + e^(−(Σa − a_k))).
    # next_token_nll computes in float32, hence rel=1e-4
    assert table["loss"].tolist() == pytest.approx([softplus(-(total - a)) for a in shifts], rel=1e-4)
    assert table.attrs["full_loss"] == pytest.approx(softplus(-total), rel=1e-4)
    assert table.attrs["n_tokens"] == 12
    assert blocks_to_remove(table, 1, by="loss") == ["layers.3"]


# --- sleb_removal ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("barriers", [(1, 1), (0, 2)])
def test_sleb_order_matches_the_reference_loop(barriers):
    model = tiny_llama(n_layers=6, seed=3)
    seqlen = 16
    stream = torch.randint(0, 128, (1, 6 * seqlen + 5), generator=torch.Generator().manual_seed(4))
    windows = stream[0, :6 * seqlen].reshape(6, seqlen)  # the reference drops the incomplete tail
    steps = sleb_removal(model, windows, 3, keep_first=barriers[0], keep_last=barriers[1], batch_size=1,
                         progress=False)
    expected = port_sleb(model, "model.layers", stream, seqlen, 3, *barriers)
    assert steps["depth"].tolist() == expected
    assert steps.attrs["order"] == [f"model.layers.{i}" for i in expected] == steps["block"].tolist()
    assert steps["step"].tolist() == [1, 2, 3]
    # each step's loss is the model without the blocks removed so far
    for k in range(3):
        after = evaluate_lm(remove_layers(model, steps["block"][:k + 1].tolist()), windows, progress=False)
        assert steps["loss"][k] == after.nll and steps["perplexity"][k] == after.perplexity
    assert steps.attrs["full_loss"] == evaluate_lm(model, windows, progress=False).nll


def test_sleb_by_hand_with_a_tie():
    # inner blocks a = 0.2, 0.2, 0.4 (the barriers stay): removing the smallest a hurts least; the
    # tie between layers.1 and layers.2 (the same sums in the same order: an exact tie) goes to the
    # earlier block, as with the reference's strict '<'.
    shifts = [1.0, 0.2, 0.2, 0.4, 1.0]
    model, tokens = Additive(shifts), torch.zeros(2, 4, dtype=torch.long)
    steps = sleb_removal(model, tokens, 3, progress=False)
    assert steps["block"].tolist() == ["layers.1", "layers.2", "layers.3"]
    assert steps["loss"].tolist() == pytest.approx([softplus(-2.6), softplus(-2.4), softplus(-2.0)], rel=1e-4)
    stream = tokens.reshape(1, -1)
    assert port_sleb(model, "layers", stream, 4, 3) == [1, 2, 3]


def test_sleb_refuses_bad_arguments():
    model, tokens = Additive([1.0, 2.0, 3.0, 4.0]), torch.zeros(2, 4, dtype=torch.long)
    with pytest.raises(ValueError, match="n=3 exceeds the 2 blocks"):
        sleb_removal(model, tokens, 3, progress=False)
    with pytest.raises(ValueError, match="n must be an integer >= 1"):
        sleb_removal(model, tokens, 0, progress=False)
    with pytest.raises(ValueError, match="keep_first must be an integer >= 0"):
        sleb_removal(model, tokens, 1, keep_first=-1, progress=False)
    with pytest.raises(TypeError, match="token ids must be an integer tensor"):
        sleb_removal(model, tokens.float(), 1, progress=False)
    with pytest.raises(ValueError, match="no removable blocks"):
        sleb_removal(nn.Linear(2, 2), tokens, 1, progress=False)
    with pytest.raises(TypeError, match="model must be an nn.Module"):
        sleb_removal("gpt2", tokens, 1, progress=False)


# --- block_taylor_scores --------------------------------------------------------------------------------------

def test_taylor_and_magnitude_match_the_shortened_llama_port():
    model, tokens = tiny_llama(n_layers=6), calibration(n=6)
    table = block_taylor_scores(model, tokens, batch_size=4, progress=False)
    one_batch, order = port_shortened_scores(model, tokens, batch_size=6)  # the reference default: one batch
    blocks = [f"model.layers.{i}" for i in range(6)]
    assert table["block"].tolist() == blocks
    assert table["taylor"].tolist() == pytest.approx([one_batch[b] for b in blocks], rel=1e-4)
    assert table.sort_values("taylor", kind="stable")["depth"].tolist() == order
    # three batches of two: the reference sums three batch-mean gradients, three times L's gradient
    three, _ = port_shortened_scores(model, tokens, batch_size=2)
    assert [3 * t for t in table["taylor"]] == pytest.approx([three[b] for b in blocks], rel=1e-4)
    magnitude, magnitude_order = port_shortened_scores(model, tokens, batch_size=6, taylor=False)
    assert table["magnitude"].tolist() == pytest.approx([magnitude[b] for b in blocks], rel=1e-6)
    assert table.sort_values("magnitude", kind="stable")["depth"].tolist() == magnitude_order
    assert table.attrs["loss"] == pytest.approx(evaluate_lm(model, tokens, progress=False).nll, rel=1e-6)


def test_plus_rule_matches_block_prune():
    model, tokens = tiny_llama(n_layers=9, seed=2), calibration(n=4)
    table = block_taylor_scores(model, tokens, plus=True, progress=False)
    assert table["removable"].tolist() == [False] * 4 + [True] * 3 + [False] * 2
    for by, taylor in (("taylor", True), ("magnitude", False)):
        _, order = port_shortened_scores(model, tokens, batch_size=4, taylor=taylor)
        pruned = port_plus_order(order, 9)[:2]
        assert blocks_to_remove(table, 2, by=by) == [f"model.layers.{i}" for i in sorted(pruned)]
    with pytest.raises(ValueError, match="Only 3 removable blocks"):
        blocks_to_remove(table, 4, by="taylor")
    loss_table = block_removal_loss(model, tokens, plus=True, progress=False)
    assert loss_table["removable"].tolist() == table["removable"].tolist()


def test_taylor_of_gpt2_sums_every_block_weight():
    """GPT-2 (Conv1D weights, LayerNorm ln_1/ln_2, biases): the reference's rule generalised — every
    parameter of the block whose own name contains 'weight' — against a plain backward of the mean loss."""
    model, tokens = tiny_gpt2(), calibration(n=4)
    table = block_taylor_scores(model, tokens, batch_size=3, progress=False)
    probe = copy.deepcopy(model)
    probe(tokens, labels=tokens).loss.backward()
    for i, row in table.iterrows():
        block = probe.transformer.h[i]
        weights = [(n, p) for n, p in block.named_parameters() if n.endswith("weight")]
        assert {n for n, _ in weights} == {"ln_1.weight", "attn.c_attn.weight", "attn.c_proj.weight", "ln_2.weight",
                                           "mlp.c_fc.weight", "mlp.c_proj.weight"}
        taylor = sum(float((p * p.grad).detach().abs().sum()) for _, p in weights)
        assert row["taylor"] == pytest.approx(taylor, rel=1e-4)
        assert row["magnitude"] == pytest.approx(sum(float(p.detach().abs().sum()) for _, p in weights), rel=1e-6)


def test_taylor_by_hand():
    # logits (A, 0) + bias, A = Σa; targets alternate 1, 0, 1, 0 ... : with p0 = σ(A) and f0 the share of
    # target 0, ∂L/∂w = (p0 − f0, f0 − p0) for every block, and w = (a, 0): taylor = |a (p0 − f0)|.
    shifts = [0.5, -1.0, 2.0]
    tokens = torch.tensor([[0, 1, 0, 1, 0], [1, 0, 1, 0, 1]])
    table = block_taylor_scores(Additive(shifts), tokens, batch_size=1, progress=False)
    targets = tokens[:, 1:].reshape(-1)
    f0 = float((targets == 0).double().mean())  # 4 of 8
    p0 = 1 / (1 + math.exp(-sum(shifts)))
    # the loss is float32 (next_token_nll), hence rel=1e-4
    assert table["taylor"].tolist() == pytest.approx([abs(a * (p0 - f0)) for a in shifts], rel=1e-4)
    assert table["magnitude"].tolist() == pytest.approx([abs(a) for a in shifts], rel=1e-12)  # no bias
    nll = -(f0 * math.log(p0) + (1 - f0) * math.log(1 - p0))
    assert table.attrs["loss"] == pytest.approx(nll, rel=1e-4) and table.attrs["n_tokens"] == 8
    assert blocks_to_remove(table, 1, by="taylor") == ["layers.0"]


def test_taylor_refuses_bad_arguments():
    tokens = torch.zeros(2, 4, dtype=torch.long)
    with pytest.raises(TypeError, match="plus must be True or False"):
        block_taylor_scores(Additive([1.0, 2.0]), tokens, plus="yes", progress=False)
    with pytest.raises(ValueError, match="no predicted token"):
        block_taylor_scores(Additive([1.0, 2.0]), torch.zeros(2, 1, dtype=torch.long), progress=False)
    with pytest.raises(ValueError, match="no removable blocks"):
        block_taylor_scores(nn.Linear(2, 2), tokens, progress=False)


# --- the user's model is untouched ----------------------------------------------------------------------------

def _state(model):
    return {"values": {k: v.clone() for k, v in model.state_dict().items()},
            "grads": {n: None if p.grad is None else p.grad.clone() for n, p in model.named_parameters()},
            "requires_grad": {n: p.requires_grad for n, p in model.named_parameters()},
            "training": {n: m.training for n, m in model.named_modules()}}


@pytest.mark.parametrize("call", [
    lambda m, x: block_removal_loss(m, x, progress=False),
    lambda m, x: sleb_removal(m, x, 2, progress=False),
    lambda m, x: block_taylor_scores(m, x, progress=False),
], ids=["block_removal_loss", "sleb_removal", "block_taylor_scores"])
def test_model_weights_grads_flags_and_modes_untouched(call):
    model, tokens = tiny_llama(n_layers=4), calibration(n=2)
    model.train()
    model.model.layers[1].eval()
    model.model.layers[0].self_attn.q_proj.weight.requires_grad_(False)
    model.model.layers[2].mlp.up_proj.weight.grad = torch.full_like(model.model.layers[2].mlp.up_proj.weight, 0.5)
    before = _state(model)
    call(model, tokens)
    after = _state(model)
    assert before["requires_grad"] == after["requires_grad"] and before["training"] == after["training"]
    assert all(torch.equal(v, after["values"][k]) for k, v in before["values"].items())
    for name, grad in before["grads"].items():
        assert (grad is None and after["grads"][name] is None) or torch.equal(grad, after["grads"][name])


# --- blocks_to_remove(by="last") ------------------------------------------------------------------------------

def test_last_blocks_baseline():
    table = pd.DataFrame({"block": ["h.0", "h.1", "h.2", "h.3"], "removable": [True, True, True, False]})
    assert blocks_to_remove(table, 2, by="last") == ["h.1", "h.2"]  # no criterion or attrs needed
    assert blocks_to_remove(table, 1, by="last", removable=["h.0", "h.3"]) == ["h.0"]
    plain = pd.DataFrame({"block": ["h.0", "h.1", "h.2"]})
    assert blocks_to_remove(plain, 3, by="last") == ["h.0", "h.1", "h.2"]
    with pytest.raises(ValueError, match="cannot choose the last 4"):
        blocks_to_remove(plain, 4, by="last")
    with pytest.raises(ValueError, match="n must be a positive integer"):
        blocks_to_remove(plain, 0, by="last")
    with pytest.raises(ValueError, match="attrs\\['redundant_when'\\]"):
        blocks_to_remove(plain, 1, by="loss")
    scored = block_removal_loss(Additive([1.0, 2.0, 3.0]), torch.zeros(1, 3, dtype=torch.long), plus=False,
                                progress=False)
    assert blocks_to_remove(scored, 2, by="last") == ["layers.1", "layers.2"]

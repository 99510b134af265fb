"""Issue 20: the damage column and its signed correlations, the oriented rank correlations, the
last block's output convention, the warning for token-reduced captures, and LoRA healing."""
from __future__ import annotations

import copy
import importlib.util

import numpy as np
import pytest
import scipy.stats
import torch

from repgraph import (block_redundancy, capture_activations, damage_correlation, evaluate_lm, heal_lm,
                      layer_redundancy, oriented_rank_correlation, remove_layers)

transformers = pytest.importorskip("transformers")


def tiny_llama(n_layer: int = 4, seed: int = 0):
    config = transformers.LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=n_layer,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    torch.manual_seed(seed)
    model = transformers.LlamaForCausalLM(config).eval()
    with torch.no_grad():  # trained-looking norms: a per-feature scale, so the final norm is not a per-token scaling
        for module in model.modules():
            if isinstance(module, transformers.models.llama.modeling_llama.LlamaRMSNorm):
                module.weight.copy_(torch.rand(module.weight.shape) * 2 + 0.1)
    return model


def test_damage_correlation_is_scipy_spearman_signed_by_which_end_is_redundant():
    rng = np.random.default_rng(0)
    import pandas as pd
    table = pd.DataFrame({"bi": rng.normal(size=12), "cka": rng.normal(size=12), "loss": rng.normal(size=12)})
    table.loc[3, "bi"] = np.nan  # a block a criterion does not score
    damage = rng.normal(size=12)
    got = damage_correlation(table, damage, {"bi": "low", "cka": "high", "loss": "low"})
    defined = ~table["bi"].isna()
    assert got["bi"] == pytest.approx(scipy.stats.spearmanr(table["bi"][defined], damage[defined]).statistic, abs=1e-12)
    assert got["cka"] == pytest.approx(-scipy.stats.spearmanr(table["cka"], damage).statistic, abs=1e-12)
    # a criterion equal to the damage, read low = redundant, ranks exactly as the damage: +1
    assert damage_correlation(table.assign(loss=damage), "loss", {"loss": "low", "bi": "low"})["bi"] == got["bi"]
    assert damage_correlation(pd.DataFrame({"c": damage}), damage, {"c": "low"})["c"] == pytest.approx(1.0)
    assert damage_correlation(pd.DataFrame({"c": damage}), damage, {"c": "high"})["c"] == pytest.approx(-1.0)


def test_agreement_errors_name_the_argument():
    import pandas as pd
    table = pd.DataFrame({"bi": [1.0, 2.0, 3.0]})
    with pytest.raises(ValueError, match="one value per row of table"):
        damage_correlation(table, [1.0, 2.0], {"bi": "low"})
    with pytest.raises(ValueError, match="infinite"):
        damage_correlation(table, [1.0, np.inf, 2.0], {"bi": "low"})
    with pytest.raises(ValueError, match=r"redundant_when\['bi'\] must be 'low' or 'high'"):
        oriented_rank_correlation(table, {"bi": "small"})
    with pytest.raises(ValueError, match="no column"):
        oriented_rank_correlation(table, {"bi": "low"}, columns=["cka"])


def test_block_redundancy_damage_is_the_loss_without_each_block_alone():
    model = tiny_llama()
    torch.manual_seed(1)
    ids, evaluation = torch.randint(0, 64, (12, 16)), torch.randint(0, 64, (6, 24))
    table = block_redundancy(model, ids, n_max=2, damage=evaluation, progress=False)
    for row in table.itertuples():
        expected = evaluate_lm(remove_layers(model, [row.block]), evaluation, progress=False)
        assert row.damage_loss == pytest.approx(expected.nll, abs=1e-12)
        assert row.damage_perplexity == pytest.approx(expected.perplexity, rel=1e-12)
    assert table.attrs["damage"]["full_loss"] == pytest.approx(evaluate_lm(model, evaluation, progress=False).nll)
    orientation = table.attrs["redundant_when"]
    assert sorted(table.attrs["damage_correlation"]) == sorted(orientation)
    for column, value in table.attrs["damage_correlation"].items():
        both = table[[column, "damage_loss"]].dropna()  # the spans that run past the last block are NaN
        rho = scipy.stats.spearmanr(both[column], both["damage_loss"]).statistic if len(both) >= 3 else np.nan
        expected = rho if orientation[column] == "low" else -rho
        assert value == pytest.approx(expected, abs=1e-12, nan_ok=True), column


def test_damage_of_blocks_that_are_not_the_stack_is_refused():
    model = tiny_llama()
    ids = torch.randint(0, 64, (8, 16))
    with pytest.raises(ValueError, match="none of the table's blocks"):
        block_redundancy(model, ids, layers=["model.norm"], damage=ids, progress=False)


def test_final_norm_output_is_what_shortgpt_compares():
    model = tiny_llama()
    ids = torch.randint(0, 64, (10, 12), generator=torch.Generator().manual_seed(2))
    plain = block_redundancy(model, ids, progress=False)
    normed = block_redundancy(model, ids, last_block_output="final_norm", progress=False)
    assert plain.attrs["last_block_output"] == "block" and normed.attrs["last_block_output"] == "final_norm"
    # the oracle: the last block's input and the final norm of its output, from the model's own forward
    seen = {}
    last = model.model.layers[-1]
    handles = [last.register_forward_pre_hook(lambda m, a, k: seen.update(x=k.get("hidden_states", a[0] if a else None)),
                                              with_kwargs=True),
               model.model.norm.register_forward_hook(lambda m, a, out: seen.update(y=out))]
    with torch.no_grad():
        model(ids)
    for handle in handles:
        handle.remove()
    cos = torch.nn.functional.cosine_similarity(seen["x"].double(), seen["y"].double(), dim=-1)
    assert normed["block_influence"].iloc[-1] == pytest.approx(1 - cos.mean().item(), abs=1e-6)
    assert normed["block_influence"].iloc[-1] != pytest.approx(plain["block_influence"].iloc[-1], abs=1e-4)
    # every other row is the same
    np.testing.assert_allclose(normed["block_influence"].iloc[:-1], plain["block_influence"].iloc[:-1], atol=1e-12)


def test_last_block_output_choices_are_checked():
    model = tiny_llama()
    ids = torch.randint(0, 64, (6, 8))
    with pytest.raises(ValueError, match="last_block_output must be one of"):
        block_redundancy(model, ids, last_block_output="norm", progress=False)
    from repgraph.models.byte_gpt import byte_gpt
    gpt = byte_gpt(n_layer=2, n_embd=16, n_head=2, n_positions=16)
    assert block_redundancy(gpt, torch.randint(0, 256, (6, 8)), last_block_output="final_norm",
                            progress=False).attrs["last_block_output"] == "final_norm"  # GPT-2's ln_f is found
    cnn_like = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 4))
    with pytest.raises(ValueError, match="found no final norm"):
        block_redundancy(cnn_like, torch.randn(8, 4), layers=["0", "1"], last_block_output="final_norm",
                         progress=False)


def test_a_token_reduced_capture_warns_that_bi_is_not_token_level():
    model = tiny_llama(n_layer=2)
    ids = torch.randint(0, 64, (8, 10))
    reduced = capture_activations(model, ids, "blocks", inputs=True, reduce="last_token", progress=False)
    with pytest.warns(UserWarning, match=r"reduce='last_token'.*not every token.*reduce=None"):
        table = layer_redundancy(reduced, progress=False)
    assert table.attrs["reductions"]["block_influence"] == "last_token (at capture)"
    full = capture_activations(model, ids, "blocks", inputs=True, reduce=None, progress=False)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert layer_redundancy(full, progress=False).attrs["reductions"]["block_influence"] == "every_token"


needs_peft = pytest.mark.skipif(importlib.util.find_spec("peft") is None, reason="needs the optional peft package")


@needs_peft
def test_lora_adapters_merge_into_the_weights_they_adapt():
    from repgraph.pruning.lora_adapters import lora_adapters
    model = tiny_llama(n_layer=2)
    ids = torch.randint(0, 64, (3, 10))
    layer = model.model.layers[0].mlp.down_proj
    hooked = []
    layer.register_forward_hook(lambda m, a, out: hooked.append(1))
    w0 = layer.weight.detach().clone()
    with lora_adapters(model, {"r": 2, "lora_alpha": 6}) as params:
        assert params and all(p.requires_grad for p in params)
        assert not any(p.requires_grad for n, p in model.named_parameters() if "lora_" not in n)
        wrapped = model.model.layers[0].mlp.down_proj
        with torch.no_grad():
            wrapped.lora_B["default"].weight.normal_()
        a = wrapped.lora_A["default"].weight.detach().clone()
        b = wrapped.lora_B["default"].weight.detach().clone()
        with torch.no_grad():
            adapted = model(ids).logits
    assert model.model.layers[0].mlp.down_proj is layer  # the user's own module (and its hook) is back
    torch.testing.assert_close(layer.weight.detach(), w0 + (6 / 2) * b @ a, rtol=0, atol=1e-6)
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, adapted, rtol=0, atol=1e-5)
    assert hooked and all(p.requires_grad for p in model.parameters())
    assert not any("lora_" in n for n, _ in model.named_parameters())


@needs_peft
def test_heal_lm_with_lora_trains_only_the_linear_weights_and_lowers_the_loss():
    model = tiny_llama(n_layer=2)
    before = copy.deepcopy(model.state_dict())
    stream = torch.arange(2000) % 7  # a periodic text: learnable
    history = heal_lm(model, stream, steps=30, lr=1e-2, batch_size=4, seq_len=16, progress=False, lora=4)
    assert history["loss"].iloc[-5:].mean() < history["loss"].iloc[:5].mean() - 0.3
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.endswith("proj.weight") for k in changed)  # attention and MLP linears only
    assert "model.embed_tokens.weight" not in changed and "model.norm.weight" not in changed
    assert history.attrs["lora"]["r"] == 4 and history.attrs["lora"]["lora_alpha"] == 8
    assert set(after) == set(before)
    with pytest.raises(TypeError, match="lora must be None, True, a rank"):
        heal_lm(model, stream, steps=1, seq_len=16, progress=False, lora="big")
    with pytest.raises(ValueError, match="rank >= 1"):
        heal_lm(model, stream, steps=1, seq_len=16, progress=False, lora=0)


def test_unchained_layers_are_refused_with_their_names_instead_of_a_size_mismatch():
    # a plain CNN's ReLUs are not chained: each conv group changes the tensor between them
    cnn = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 8, 3, stride=2),
                              torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.LazyLinear(3))
    X = torch.randn(10, 1, 8, 8)
    cnn(X)
    with pytest.raises(ValueError, match=r"Layers '1' and '3' are not chained"):
        block_redundancy(cnn, X, layers=["1", "3"], n_max=2, progress=False)
    assert block_redundancy(cnn, X, layers=["1", "3"], n_max=1, progress=False)["block"].tolist() == ["1", "3"]


def test_the_chain_check_reads_the_streamed_batches_and_leaves_a_one_shot_iterator_whole():
    from repgraph.models.byte_gpt import byte_gpt
    model = byte_gpt(n_layer=3, n_embd=16, n_head=2, n_positions=16)
    ids = torch.randint(0, 256, (8, 16), generator=torch.Generator().manual_seed(3))
    whole = block_redundancy(model, ids, n_max=2, batch_size=4, progress=False)
    batches = block_redundancy(model, (part for part in (ids[:4], ids[4:])), n_max=2, progress=False)
    for column in ("block_influence", "relative_update_norm", "angular_distance_1", "angular_distance_2"):
        np.testing.assert_allclose(batches[column], whole[column], atol=1e-12, rtol=0, err_msg=column)

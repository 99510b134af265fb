"""A pruned transformer saved with save_pretrained and reloaded with from_pretrained is the pruned
model: the oracle is the pruned model's own logits in memory, compared with the reloaded copy's;
where transformers rebuilds a block from its index so that no config can carry the pruned model
over (GPT-2's scale_attn_by_inverse_layer_idx), remove_layers and save_pretrained warn."""
import warnings

import pytest
import torch

transformers = pytest.importorskip("transformers")
from transformers import (DeepseekV3Config, DeepseekV3ForCausalLM, GPT2Config, GPT2LMHeadModel,  # noqa: E402
                          LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM, Qwen2MoeConfig,
                          Qwen2MoeForCausalLM, SmolLM3Config, SmolLM3ForCausalLM)

from repgraph import remove_layers  # noqa: E402

V = 64
COMMON = dict(vocab_size=V, max_position_embeddings=32, bos_token_id=None, eos_token_id=None, pad_token_id=None)
DECODER = dict(hidden_size=32, intermediate_size=64, num_attention_heads=4, num_key_value_heads=2, **COMMON)


def _gpt2(n, **kw):
    return GPT2LMHeadModel(GPT2Config(n_layer=n, n_embd=32, n_head=4, vocab_size=V, n_positions=32,
                                      bos_token_id=None, eos_token_id=None, **kw))


BUILDERS = {  # (build n blocks, stack, removed blocks)
    "gpt2": (_gpt2, "transformer.h", [0, 2]),
    "llama": (lambda n: LlamaForCausalLM(LlamaConfig(num_hidden_layers=n, **DECODER)), "model.layers", [1]),
    # layer 0 full attention, 1-3 sliding: the layer_types list must be sliced
    "qwen2-sliding": (lambda n: Qwen2ForCausalLM(Qwen2Config(
        num_hidden_layers=n, use_sliding_window=True, sliding_window=3, max_window_layers=1, **DECODER)),
        "model.layers", [0, 2]),
    # experts in blocks 1 and 3 ((i + 1) % 2 == 0): the rule must become an explicit list
    "qwen2-moe": (lambda n: Qwen2MoeForCausalLM(Qwen2MoeConfig(
        num_hidden_layers=n, moe_intermediate_size=16, shared_expert_intermediate_size=16, num_experts=4,
        num_experts_per_tok=2, decoder_sparse_step=2, **DECODER)), "model.layers", [0]),
    # blocks 0-1 dense, 2-3 MoE: the dense prefix shrinks with the removed dense block
    "deepseek-v3": (lambda n: DeepseekV3ForCausalLM(DeepseekV3Config(
        num_hidden_layers=n, moe_intermediate_size=16, n_routed_experts=4, num_experts_per_tok=2, n_group=1,
        topk_group=1, first_k_dense_replace=2, kv_lora_rank=16, q_lora_rank=16, qk_rope_head_dim=8,
        qk_nope_head_dim=8, v_head_dim=8, **{**DECODER, "num_key_value_heads": 4})), "model.layers", [1]),
    # every second block without RoPE: no_rope_layers must be sliced
    "smollm3": (lambda n: SmolLM3ForCausalLM(SmolLM3Config(num_hidden_layers=n, no_rope_layer_interval=2,
                                                           **DECODER)), "model.layers", [0]),
}


def _built(name, n=4):
    build, _, _ = BUILDERS[name]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return build(n).eval()


def _no_warning_remove(model, names):
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        return remove_layers(model, names)


def _reloaded(pruned, path):
    pruned.save_pretrained(path)
    return type(pruned).from_pretrained(path).eval()


@pytest.mark.parametrize("name", list(BUILDERS))
def test_saved_pruned_model_reloads_as_itself(name, tmp_path):
    _, stack, removed = BUILDERS[name]
    model = _built(name)
    pruned = _no_warning_remove(model, [f"{stack}.{i}" for i in removed])
    x = torch.randint(0, V, (2, 8), generator=torch.Generator().manual_seed(1))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        reloaded = _reloaded(pruned, tmp_path)
    # the same blocks, each with the same kind of MLP, and all weights loaded
    assert [type(b.mlp if hasattr(b, "mlp") else b).__name__ for b in reloaded.get_submodule(stack)] == \
        [type(b.mlp if hasattr(b, "mlp") else b).__name__ for b in pruned.get_submodule(stack)]
    assert reloaded.state_dict().keys() == pruned.state_dict().keys()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(x).logits, pruned(x).logits, rtol=0, atol=1e-6)


def test_moe_placement_follows_the_kept_blocks():
    qwen = _no_warning_remove(_built("qwen2-moe"), ["model.layers.0"])
    # kept blocks 1, 2, 3 were MoE, dense, MoE
    assert [type(b.mlp).__name__ for b in qwen.model.layers] == [
        "Qwen2MoeSparseMoeBlock", "Qwen2MoeMLP", "Qwen2MoeSparseMoeBlock"]
    assert qwen.config.mlp_only_layers == [1] and qwen.config.decoder_sparse_step == 1
    deepseek = _no_warning_remove(_built("deepseek-v3"), ["model.layers.1"])
    assert deepseek.config.first_k_dense_replace == 1
    smol = _built("smollm3")
    assert smol.config.no_rope_layers == [1, 0, 1, 0]
    assert _no_warning_remove(smol, ["model.layers.0"]).config.no_rope_layers == [0, 1, 0]


def test_gpt2_inverse_layer_idx_scale_warns_at_removal_and_at_save(tmp_path):
    model = _gpt2(4, scale_attn_by_inverse_layer_idx=True).eval()
    with pytest.warns(UserWarning, match=r"save_pretrained/from_pretrained will not reproduce it.*"
                                         r"transformer\.h\.0\.attn\.scaling.*scale_attn_by_inverse_layer_idx=True"):
        pruned = remove_layers(model, ["transformer.h.0", "transformer.h.2"])
    # in memory each kept block keeps the scale of its original index (1 and 3), by hand
    head_dim = 32 // 4
    assert [b.attn.scaling for b in pruned.transformer.h] == [head_dim ** -0.5 / 2, head_dim ** -0.5 / 4]
    with pytest.warns(UserWarning, match="will not reproduce it"):
        reloaded = _reloaded(pruned, tmp_path)
    # the consequence the warning names: the reload rescales by the new index and the logits differ
    assert [b.attn.scaling for b in reloaded.transformer.h] == [head_dim ** -0.5 / 1, head_dim ** -0.5 / 2]
    x = torch.randint(0, V, (2, 8), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert not torch.allclose(reloaded(x).logits, pruned(x).logits, rtol=0, atol=1e-6)
    # the route the warning names keeps the pruned model whole
    torch.save(pruned, tmp_path / "whole.pt")
    whole = torch.load(tmp_path / "whole.pt", weights_only=False)
    with torch.no_grad():
        assert torch.equal(whole(x).logits, pruned(x).logits)
    # removing only the last block keeps every index: nothing to warn about
    _no_warning_remove(model, ["transformer.h.3"])
    assert "save_pretrained" not in vars(model)  # the user's model is not touched

"""Capture from transformers as their users expect: the block stack, dict batches with attention
masks, token reducers, structured outputs, block inputs and the batch axis.

Tiny randomly initialised Hugging Face models are built from configs (no download). The oracle is
the model's own ``output_hidden_states=True``: ``hidden_states[i]`` is the input of block i and
``hidden_states[i + 1]`` its output (except after the last block, which these models normalise).
"""
import numpy as np
import pytest
import torch
from torch import nn

from repgraph import capture_activations
from repgraph.hooks import select_layers

transformers = pytest.importorskip("transformers")
from transformers import BertConfig, BertModel, GPT2Config, GPT2Model, LlamaConfig, LlamaModel  # noqa: E402

V, N, T, LAYERS = 64, 7, 8, 3


def _bert():
    return BertModel(BertConfig(num_hidden_layers=LAYERS, hidden_size=32, intermediate_size=64, num_attention_heads=4,
                                vocab_size=V, max_position_embeddings=32))


def _gpt2():
    return GPT2Model(GPT2Config(n_layer=LAYERS, n_embd=32, n_head=4, vocab_size=V, n_positions=32,
                                bos_token_id=None, eos_token_id=None))


def _llama():
    return LlamaModel(LlamaConfig(num_hidden_layers=LAYERS, hidden_size=32, intermediate_size=64,
                                  num_attention_heads=4, num_key_value_heads=2, vocab_size=V,
                                  max_position_embeddings=32, bos_token_id=None, eos_token_id=None,
                                  pad_token_id=None))


CASES = [  # builder, the stack's entries, padding side
    (_bert, [f"encoder.layer.{i}" for i in range(LAYERS)], "right"),
    (_gpt2, [f"h.{i}" for i in range(LAYERS)], "right"),
    (_llama, [f"layers.{i}" for i in range(LAYERS)], "left"),
]


def _build(builder):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return builder().eval()


def _batch(side):
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, V, (N, T), generator=g)
    lengths = torch.tensor([8, 5, 3, 8, 6, 1, 7])
    positions = torch.arange(T)[None]
    mask = positions < lengths[:, None] if side == "right" else positions >= T - lengths[:, None]
    return {"input_ids": ids, "attention_mask": mask.long(), "labels": torch.arange(N) % 3}, lengths


@pytest.mark.parametrize("builder, blocks, side", CASES, ids=["bert", "gpt2", "llama"])
def test_blocks_are_the_stack_and_capture_matches_hidden_states(builder, blocks, side):
    model = _build(builder)
    assert select_layers(model, "blocks") == blocks
    assert select_layers(model, "modularity") == blocks
    data, lengths = _batch(side)
    with torch.no_grad():
        hidden = model(input_ids=data["input_ids"], attention_mask=data["attention_mask"],
                       output_hidden_states=True).hidden_states
    raw = capture_activations(model, data, layers="blocks", reduce=None, inputs=True, batch_size=3, progress=False)
    assert raw.layers == [k for b in blocks for k in (f"{b}:input", b)]
    np.testing.assert_array_equal(raw.labels, np.arange(N) % 3)  # "labels" was not passed to the model
    for i, block in enumerate(blocks):
        np.testing.assert_allclose(raw[f"{block}:input"], hidden[i].numpy(), atol=1e-5)
        if i < LAYERS - 1:
            np.testing.assert_allclose(raw[block], hidden[i + 1].numpy(), atol=1e-5)
    h = hidden[1].numpy()  # block 0's output
    reduced = {r: capture_activations(model, data, layers=blocks[:1], reduce=r, batch_size=3,
                                      progress=False)[blocks[0]] for r in ("token_mean", "first_token", "last_token")}
    for n in range(N):
        k = int(lengths[n])
        tokens = slice(0, k) if side == "right" else slice(T - k, T)
        np.testing.assert_allclose(reduced["token_mean"][n], h[n, tokens].mean(0), atol=1e-5)
        np.testing.assert_allclose(reduced["first_token"][n], h[n, tokens][0], atol=1e-5)
        np.testing.assert_allclose(reduced["last_token"][n], h[n, tokens][-1], atol=1e-5)


def test_model_output_of_a_submodule():
    model = _build(_bert)
    data, _ = _batch("right")
    with torch.no_grad():  # BERT's last_hidden_state is its encoder's output (no final norm)
        out = model(input_ids=data["input_ids"], attention_mask=data["attention_mask"])
    first = capture_activations(model, data, layers=["encoder"], reduce="first_token", progress=False)
    np.testing.assert_allclose(first["encoder"], out.last_hidden_state[:, 0].numpy(), atol=1e-5)
    keyed = capture_activations(model, data, layers=["encoder"], output="last_hidden_state",
                                reduce="first_token", progress=False)
    np.testing.assert_allclose(keyed["encoder"], first["encoder"])
    with pytest.raises(ValueError, match="output='logits' is not one of them"):
        capture_activations(model, data, layers=["encoder"], output="logits", progress=False)


class SeqEncoder(nn.Module):
    """A batch-first model around ``nn.TransformerEncoder``: inputs (N, T, D)."""

    def __init__(self, batch_first):
        super().__init__()
        layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=batch_first)
        self.batch_first = batch_first
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)

    def forward(self, x):
        if self.batch_first:
            return self.encoder(x)
        return self.encoder(x.transpose(0, 1)).transpose(0, 1)


def test_transformer_encoder_batch_first_both_ways():
    torch.manual_seed(0)
    seq_first = SeqEncoder(batch_first=False).eval()
    batch_first = SeqEncoder(batch_first=True).eval()
    batch_first.load_state_dict(seq_first.state_dict())  # the same weights: the same per-sample values
    x = torch.randn(30, 9, 16)
    assert select_layers(seq_first, "blocks") == ["encoder.layers.0", "encoder.layers.1"]
    with pytest.raises(ValueError, match=r"Layer 'encoder.layers.0' output has shape \(9, 30, 16\).*batch_axis"):
        capture_activations(seq_first, x, layers="blocks", progress=False)
    want = capture_activations(batch_first, x, layers="blocks", reduce="token_mean", batch_size=8, progress=False)
    got = capture_activations(seq_first, x, layers="blocks", batch_axis=1, reduce="token_mean", batch_size=8,
                              progress=False)
    assert got.n_samples == 30
    for name in want:
        np.testing.assert_allclose(got[name], want[name], atol=1e-5)
    with torch.no_grad():
        np.testing.assert_allclose(want["encoder.layers.1"], batch_first(x).mean(1).numpy(), atol=1e-5)


class Block(nn.Module):
    is_residual_block = True

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x):
        return x + self.conv(x)


class StagedCNN(nn.Module):
    """Residual blocks inside stages kept in an ``nn.ModuleList`` (a stack of 2 stages)."""

    def __init__(self):
        super().__init__()
        self.stages = nn.ModuleList([nn.Sequential(Block(), Block(), Block()) for _ in range(2)])

    def forward(self, x):
        for stage in self.stages:
            x = stage(x)
        return x


def test_blocks_of_a_cnn_with_stages_in_a_module_list_stay_its_residual_blocks():
    assert select_layers(StagedCNN(), "blocks") == [f"stages.{s}.{b}" for s in range(2) for b in range(3)]

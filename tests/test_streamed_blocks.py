"""The streamed block criteria (issue 20): block_redundancy's per-batch accumulators against the
unreduced path they replace.

Oracles: ``layer_redundancy`` on the unreduced capture (``capture_activations(..., inputs=True,
reduce=None)``, the former implementation of ``block_redundancy``) for BI, the update norm and the
angular distances, and on the vectors that ``capture_activations``' own reducers give (a separate
implementation of the token mean) for GBS, CKA and ΔQ; blocks worked by hand (identity,
negation, a block that negates only the last position, whose BI counts the real tokens); and the
bytes the accumulators hold, counted from their shapes.
"""
import math

import numpy as np
import pytest
import torch
from torch import nn

from repgraph import block_redundancy, capture_activations, layer_redundancy
from repgraph.analyzers.block_accumulators import BlockAccumulator
from repgraph.workflows.streamed_blocks import stream_blocks

transformers = pytest.importorskip("transformers")

SPANS = ["angular_distance_1", "angular_distance_2", "angular_distance_3"]
TOKEN_CRITERIA = ["block_influence", "relative_update_norm", *SPANS]


def tiny_gpt2(dtype=torch.float32):
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=4, n_embd=32, n_head=2, vocab_size=128, n_positions=64)
    return transformers.GPT2LMHeadModel(config).to(dtype).eval()


def padded_tokens(n=11, t=12, seed=0):
    """Token ids and a right-padding mask of varied lengths (3 … t tokens)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 128, (n, t), generator=g)
    lengths = torch.randint(3, t + 1, (n,), generator=g)
    lengths[0] = t
    mask = (torch.arange(t)[None, :] < lengths[:, None]).long()
    return ids, mask


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_token_criteria_match_the_unreduced_path(dtype):
    model = tiny_gpt2(dtype)
    ids, mask = padded_tokens()
    data = {"input_ids": ids, "attention_mask": mask}
    table = block_redundancy(model, data, n_max=3, batch_size=4, progress=False)  # batches of 4, 4, 3
    acts = capture_activations(model, data, "blocks", inputs=True, reduce=None, progress=False)
    oracle = layer_redundancy(acts, mask=mask, n_max=3, similarity_reduce="token_mean", progress=False)
    assert table["block"].tolist() == oracle["block"].tolist() == [f"transformer.h.{i}" for i in range(4)]
    for column in TOKEN_CRITERIA:
        np.testing.assert_allclose(table[column], oracle[column], atol=1e-6, rtol=0, err_msg=column)
    assert table["block_influence"].gt(1e-3).all()  # not a trivially zero comparison
    assert table.attrs["masked"]
    assert [table.attrs["best_spans"][n]["blocks"] for n in (1, 2, 3)] == [
        oracle.attrs["best_spans"][n]["blocks"] for n in (1, 2, 3)]


def test_similarities_match_layer_redundancy_on_the_capture_reducers_vectors():
    model = tiny_gpt2()
    ids, mask = padded_tokens(n=24, seed=1)
    labels = np.arange(24) % 3
    data = {"input_ids": ids, "attention_mask": mask}
    table = block_redundancy(model, data, labels, n_max=2, batch_size=5, modularity_k=3, progress=False)
    # the capture's own token_mean reducer (mask-aware), one (N, D) vector per sample and block side
    reduced = capture_activations(model, data, "blocks", inputs=True, reduce="token_mean", progress=False)
    with pytest.warns(UserWarning, match="captured with reduce='token_mean'.*not every token"):
        oracle = layer_redundancy(reduced, labels, n_max=2, similarity_reduce="flatten", modularity_k=3,
                                  progress=False)
    assert oracle.attrs["reductions"]["block_influence"] == "token_mean (at capture)"
    for column in ("gbs_in_out", "cka_in_out", "modularity", "delta_q"):
        np.testing.assert_allclose(table[column], oracle[column], atol=1e-5, rtol=0, err_msg=column)
    assert table.attrs["similarity_reduce"] == "token_mean"
    assert table.attrs["reductions"] == {
        "modularity": "token_mean", "delta_q": "token_mean", "block_influence": "every_token",
        "angular_distance_1": "last_token", "angular_distance_2": "last_token", "relative_update_norm": "every_token",
        "gbs_in_out": "token_mean", "cka_in_out": "token_mean"}


def test_flatten_stays_an_opt_in_and_gives_the_former_numbers():
    model = tiny_gpt2()
    ids = torch.randint(0, 128, (9, 8), generator=torch.Generator().manual_seed(2))
    table = block_redundancy(model, ids, n_max=2, batch_size=4, similarity_reduce="flatten", progress=False)
    acts = capture_activations(model, ids, "blocks", inputs=True, reduce=None, progress=False)
    oracle = layer_redundancy(acts, n_max=2, progress=False)  # layer_redundancy's default: flatten
    for column in ("gbs_in_out", "cka_in_out", "block_influence", "angular_distance_2"):
        np.testing.assert_allclose(table[column], oracle[column], atol=1e-5, rtol=0, err_msg=column)
    assert table.attrs["reductions"]["gbs_in_out"] == "flatten" and not table.attrs["masked"]


def test_a_resnet_streams_to_the_former_table():
    from repgraph.models import resnet20
    torch.manual_seed(0)
    model = resnet20(num_classes=4)
    X, y = torch.randn(20, 3, 16, 16), torch.arange(20) % 4
    table = block_redundancy(model, (X, y), n_max=2, batch_size=7, modularity_batch_size=20, progress=False)
    acts = capture_activations(model, (X, y), "blocks", inputs=True, reduce=None, progress=False)
    oracle = layer_redundancy(acts, n_max=2, modularity_batch_size=20, progress=False)
    assert table["shape_preserving"].tolist() == oracle["shape_preserving"].tolist()
    assert table.loc[~table["shape_preserving"], "block"].tolist() == ["layer2.0", "layer3.0"]
    for column in ("block_influence", "relative_update_norm", "angular_distance_1", "angular_distance_2",
                   "gbs_in_out", "cka_in_out", "modularity", "delta_q"):
        np.testing.assert_allclose(table[column], oracle[column], atol=1e-5, rtol=0, equal_nan=True, err_msg=column)
    assert table.attrs["reductions"]["gbs_in_out"] == "flatten"
    assert table.attrs["reductions"]["angular_distance_1"] == "token_mean"


# --- blocks worked by hand -----------------------------------------------------------------------

class Scale(nn.Module):
    def __init__(self, factor):
        super().__init__()
        self.factor = factor

    def forward(self, x):
        return self.factor * x


class NegateLast(nn.Module):
    """Negates the token at the last position T−1 and keeps the others."""

    def forward(self, x):
        y = x.clone()
        y[:, -1] = -y[:, -1]
        return y


def test_hand_worked_blocks_over_batches_and_a_mask():
    model = nn.Sequential(Scale(1.0), Scale(-1.0), Scale(1.5), NegateLast())
    x = torch.randn(10, 6, 4, generator=torch.Generator().manual_seed(3))
    lengths = torch.tensor([6, 6, 6, 2, 3, 4, 5, 6, 1, 6])
    mask = (torch.arange(6)[None, :] < lengths[:, None]).long()
    table = block_redundancy(model, x, layers=["0", "1", "2", "3"], mask=mask, n_max=2, batch_size=3,
                             progress=False)
    # identity: BI 0, no update; negation: cos −1 -> BI 2, update 2; 1.5·x: BI 0, update 0.5
    np.testing.assert_allclose(table["block_influence"][:3], [0.0, 2.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(table["relative_update_norm"][:3], [0.0, 2.0, 0.5], atol=1e-6)
    # the last position is real only in the 5 full-length samples: BI = 2·5 / 45 real tokens
    assert table["block_influence"][3] == pytest.approx(2 * 5 / int(lengths.sum()), abs=1e-12)
    # the angle at the last *real* token: π (distance 1) for the 5 full samples, 0 for the others
    assert table["angular_distance_1"][3] == pytest.approx(5 / 10, abs=1e-12)
    assert table["angular_distance_2"][0] == pytest.approx(1.0, abs=1e-12)  # identity then negation
    assert table["angular_distance_2"][1] == pytest.approx(1.0, abs=1e-7)  # −1.5·x (float32 sample vectors)
    assert math.isnan(table["angular_distance_2"][3])


def test_a_dataloader_of_dict_batches_masks_by_each_batchs_attention_mask():
    model = tiny_gpt2()
    ids, mask = padded_tokens(n=8, seed=4)
    loader = [{"input_ids": ids[i:i + 3], "attention_mask": mask[i:i + 3]} for i in range(0, 8, 3)]
    streamed = block_redundancy(model, loader, n_max=2, progress=False)
    whole = block_redundancy(model, {"input_ids": ids, "attention_mask": mask}, n_max=2, progress=False)
    assert streamed.attrs["masked"]
    for column in ("block_influence", "relative_update_norm", "angular_distance_2", "cka_in_out"):
        np.testing.assert_allclose(streamed[column], whole[column], atol=1e-6, err_msg=column)


# --- memory ------------------------------------------------------------------------------------

def test_the_accumulators_hold_the_same_bytes_whatever_the_sequence_length():
    model = tiny_gpt2()
    n, d = 8, 32
    held = {}
    for t in (16, 64):
        ids = torch.randint(0, 128, (n, t), generator=torch.Generator().manual_seed(t))
        accumulators, _, seen = stream_blocks(model, ids, "blocks", BlockAccumulator, batch_size=3, progress=False)
        assert seen == n and len(accumulators) == 4
        held[t] = [a.nbytes for a in accumulators.values()]
    # per block: last-token and token-mean vectors of the input and the output, (N, D) float32 each,
    # in buffers that double when full (at least N, fewer than 2·N rows), and four float64 sums
    # (Σ cos, Σ ‖Δ‖, Σ ‖x_in‖, count) — counted by hand, not from the code. A view of a batch kept
    # by mistake would count its whole (n, T, D) storage.
    assert held[16] == held[64]
    assert all(4 * n * d * 4 + 32 <= b < 4 * 2 * n * d * 4 + 32 for b in held[16])


def test_one_reduction_for_both_keeps_one_copy():
    acc = BlockAccumulator("b", angular_reduce="last_token", similarity_reduce="last_token")
    x = torch.randn(5, 7, 3)
    acc.update(x, 2 * x)  # one batch: buffers of exactly its 5 rows
    assert acc.nbytes == 2 * 5 * 3 * 4 + 4 * 8


# --- errors and the user's model ------------------------------------------------------------------

def test_errors_name_the_argument_before_the_pass():
    model = tiny_gpt2()
    ids = torch.randint(0, 128, (4, 6))
    with pytest.raises(ValueError, match="similarity_reduce='mean'"):
        block_redundancy(model, ids, similarity_reduce="mean", progress=False)
    with pytest.raises(ValueError, match="n_max must be an integer in 1..4"):
        block_redundancy(model, ids, n_max=5, progress=False)
    with pytest.raises(ValueError, match="blocks=.*'transformer.h.9'.*did not run"):
        block_redundancy(model, ids, blocks=["transformer.h.0", "transformer.h.9"], n_max=1, progress=False)
    with pytest.raises(ValueError, match="seen no batch"):
        BlockAccumulator("b").compute()
    with pytest.raises(ValueError, match="mask has shape"):
        block_redundancy(model, ids, mask=np.ones((4, 5)), progress=False)


def test_the_model_keeps_its_modes_and_hooks():
    model = tiny_gpt2().train()
    before = {name: (m.training, dict(m._forward_hooks), dict(m._forward_pre_hooks)) for name, m in model.named_modules()}
    ids = torch.randint(0, 128, (4, 6))
    block_redundancy(model, ids, n_max=1, progress=False)
    with pytest.raises(ValueError):
        block_redundancy(model, ids, mask=np.ones((4, 5)), progress=False)
    after = {name: (m.training, dict(m._forward_hooks), dict(m._forward_pre_hooks)) for name, m in model.named_modules()}
    assert after == before

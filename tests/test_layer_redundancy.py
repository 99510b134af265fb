"""layer_redundancy, its per-block criteria, blocks_to_remove and plot_layer_redundancy.

Expected values come from constructed blocks worked by hand (identity, negation, rotations of
every coordinate pair by a known angle, a block that turns only the last token), from the
one-token-at-a-time oracles in tests/oracles.py (BI, angular distance, GBS, CKA, modularity via
networkx) and from scipy.stats.spearmanr for the rank correlations.
"""
import math

import matplotlib
import numpy as np
import pandas as pd
import pytest
import scipy.stats

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from repgraph import (Activations, angular_distance, block_influence, blocks_to_remove,  # noqa: E402
                      layer_redundancy, relative_update_norm)
from repgraph.plotting import plot_layer_redundancy  # noqa: E402

from oracles import (cka_oracle, hsic_unbiased, naive_angular_distance, naive_block_influence,  # noqa: E402
                     naive_gbs, reference_modularity_curve)


def rotate_pairs(x, theta, axis=-1):
    """Rotate every coordinate pair (x_2i, x_2i+1) of the feature axis by theta. For any vector v
    this gives v·Rv = Σ_pairs ‖pair‖² cos θ = ‖v‖² cos θ and ‖Rv‖ = ‖v‖: each token's cosine is
    exactly cos θ, its angle θ and its update ‖Rv − v‖ = 2 sin(θ/2)‖v‖. Rotations compose:
    R(a)R(b) = R(a+b)."""
    x = np.moveaxis(np.asarray(x, dtype=np.float64), axis, -1)
    y = x.copy()
    c, s = math.cos(theta), math.sin(theta)
    y[..., 0::2] = c * x[..., 0::2] - s * x[..., 1::2]
    y[..., 1::2] = s * x[..., 0::2] + c * x[..., 1::2]
    return np.moveaxis(y, -1, axis)


def chain(x, *blocks):
    """{"b0:input": x, "b0": f0(x), "b1:input": f0(x), ...} for block functions f0, f1, ..."""
    acts = {}
    for i, f in enumerate(blocks):
        acts[f"b{i}:input"], x = x, f(x)
        acts[f"b{i}"] = x
    return acts


@pytest.fixture
def hidden(rng):
    return rng.normal(size=(12, 5, 8))  # (N, T, D) hidden states


def test_identity_negation_and_known_rotations(hidden):
    acts = chain(hidden, lambda x: x, lambda x: -x, lambda x: rotate_pairs(x, math.pi / 3),
                 lambda x: rotate_pairs(x, math.pi / 2), lambda x: 2.0 * x)
    table = layer_redundancy(acts, n_max=1, progress=False)
    assert table["block"].tolist() == ["b0", "b1", "b2", "b3", "b4"]
    assert table["shape_preserving"].all()
    # identity: cos 1 -> BI 0, angle 0, no update;
    # negation: cos −1 -> BI 2, angle π -> 1, ‖−x − x‖ = 2‖x‖;
    # rotation by π/3: BI 1 − 1/2, angle 1/3, update 2 sin(π/6) = 1; by π/2: BI 1, angle 1/2, update √2;
    # doubling: direction kept (BI 0, angle 0), update ‖2x − x‖/‖x‖ = 1
    np.testing.assert_allclose(table["block_influence"], [0.0, 2.0, 0.5, 1.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(table["angular_distance_1"], [0.0, 1.0, 1 / 3, 0.5, 0.0], atol=1e-6)
    np.testing.assert_allclose(table["relative_update_norm"], [0.0, 2.0, 1.0, math.sqrt(2), 1.0], atol=1e-6)
    assert table["block_influence"][0] == 0.0 and table["angular_distance_1"][0] == 0.0  # exact, not ≈
    assert table["angular_distance_1"][1] == 1.0
    # the one-function forms agree
    x, y = acts["b2:input"], acts["b2"]
    assert block_influence(x, y) == pytest.approx(0.5, abs=1e-6)
    assert angular_distance(x, y) == pytest.approx(1 / 3, abs=1e-6)
    assert relative_update_norm(x, y) == pytest.approx(1.0, abs=1e-6)


def test_spans_compose_rotations_and_pick_the_best_start(hidden):
    angles = [math.pi / 6, math.pi / 4, math.pi / 12]
    acts = chain(hidden, *[lambda x, a=a: rotate_pairs(x, a) for a in angles])
    table = layer_redundancy(acts, n_max=3, progress=False)
    # span of n blocks from ℓ turns every vector by the sum of their angles; distance = angle/π
    expected = {1: [1 / 6, 1 / 4, 1 / 12], 2: [5 / 12, 1 / 3, np.nan], 3: [1 / 2, np.nan, np.nan]}
    for n, values in expected.items():
        np.testing.assert_allclose(table[f"angular_distance_{n}"], values, atol=1e-6)
    best = table.attrs["best_spans"]
    assert [best[n]["blocks"] for n in (1, 2, 3)] == [["b2"], ["b1", "b2"], ["b0", "b1", "b2"]]
    assert best[2]["angular_distance"] == pytest.approx(1 / 3, abs=1e-6)
    assert blocks_to_remove(table, 2, by="angular_distance") == ["b1", "b2"]
    # BI = 1 − cos θ: 0.134, 0.293, 0.034 -> the two lowest are b2 and b0
    assert blocks_to_remove(table, 2, by="block_influence") == ["b0", "b2"]
    assert blocks_to_remove(table, 2, by="angular_distance", removable=["b0", "b1"]) == ["b0", "b1"]


def test_last_token_and_padding_mask():
    # unit token vectors; the block turns only the last token by π/2 (cos 0) and keeps the others
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 4, 6))
    x /= np.linalg.norm(x, axis=-1, keepdims=True)
    y = x.copy()
    y[:, -1] = rotate_pairs(x[:, -1], math.pi / 2)
    acts = {"b:input": x, "b": y}
    row = layer_redundancy(acts, n_max=1, progress=False).iloc[0]
    assert row["block_influence"] == pytest.approx(1 - 3 / 4, abs=1e-6)      # 3 of 4 tokens with cos 1
    assert row["angular_distance_1"] == pytest.approx(0.5, abs=1e-6)        # the last token: π/2
    assert row["relative_update_norm"] == pytest.approx(math.sqrt(2) / 4, abs=1e-6)  # ‖Rv − v‖ = √2
    # right padding: samples 4..7 have 2 real tokens, so their turned last position is padding
    mask = np.ones((8, 4), dtype=int)
    mask[4:, 2:] = 0
    row = layer_redundancy(acts, n_max=1, mask=mask, progress=False).iloc[0]
    # real tokens: 4·4 + 4·2 = 24, cosines sum to 4·3 + 4·2 = 20
    assert row["block_influence"] == pytest.approx(1 - 20 / 24, abs=1e-6)
    # last real token: turned by π/2 in samples 0..3, untouched in 4..7
    assert row["angular_distance_1"] == pytest.approx((4 * 0.5 + 4 * 0.0) / 8, abs=1e-6)
    assert row["relative_update_norm"] == pytest.approx(4 * math.sqrt(2) / 24, abs=1e-6)
    # the token mean of a negated sequence is negated too
    assert angular_distance(x, -x, reduce="token_mean") == pytest.approx(1.0, abs=1e-6)


def test_random_blocks_match_the_token_by_token_oracles(rng):
    x = rng.normal(size=(10, 7, 6))
    y = x + 0.7 * rng.normal(size=x.shape)
    mask = (rng.random((10, 7)) < 0.8).astype(int)
    mask[:, 0] = 1
    assert block_influence(x, y) == pytest.approx(naive_block_influence(x, y), abs=1e-6)
    assert block_influence(x, y, mask=mask) == pytest.approx(naive_block_influence(x, y, mask), abs=1e-6)
    assert angular_distance(x, y) == pytest.approx(naive_angular_distance(x, y), abs=1e-6)
    # feature_axis moves the hidden axis: (N, D, T) gives the same numbers
    assert block_influence(x.transpose(0, 2, 1), y.transpose(0, 2, 1), feature_axis=1) == pytest.approx(
        naive_block_influence(x, y), abs=1e-6)


def test_feature_maps_use_each_position_as_a_token(rng):
    x = np.abs(rng.normal(size=(10, 4, 3, 3)))  # (N, C, H, W), non-negative like a ReLU output
    x[:, :, 0, 0] = 0.0  # a dead position: identical zero vectors count as unchanged
    scale = 1.0 + np.arange(9).reshape(1, 1, 3, 3)  # each position scaled by its own positive factor
    down = np.abs(rng.normal(size=(10, 8, 2, 2)))
    acts = chain(x, lambda v: v, lambda v: v * scale, lambda v: rotate_pairs(v, math.pi / 3, axis=1),
                 lambda v: down)
    table = layer_redundancy(acts, n_max=2, progress=False)
    # per-position cosines: identity 1; a positive per-position scale keeps every C-vector's direction
    # (BI 0) although the flattened map turns; rotating the channel pairs by π/3 gives cos 1/2 at the
    # 8 live positions and cos 1 at the dead one (zero in, zero out): BI = 1 − (8·1/2 + 1)/9 = 4/9
    np.testing.assert_allclose(table["block_influence"][:3], [0.0, 0.0, 4 / 9], atol=1e-6)
    # angular distance on the spatial mean (token_mean): a rotation of the channels rotates the mean by
    # π/3; the per-position scale does turn the mean (positions weigh differently), by arccos of
    u, w = x.mean(axis=(2, 3)), (x * scale).mean(axis=(2, 3))
    turned = np.mean(np.arccos(np.clip((u * w).sum(1) / np.linalg.norm(u, axis=1) / np.linalg.norm(w, axis=1),
                                       -1, 1))) / math.pi
    assert turned > 0.001
    np.testing.assert_allclose(table["angular_distance_1"][:3], [0.0, turned, 1 / 3], atol=1e-6)
    norms = np.linalg.norm(x, axis=1)  # (N, H, W)
    expected_update = ((scale[0, 0] - 1.0) * norms).sum() / norms.sum()
    assert table["relative_update_norm"][1] == pytest.approx(expected_update, rel=1e-6)
    # the last block changes the shape: no token-wise criteria, no span through it; GBS/CKA still defined
    assert table["shape_preserving"].tolist() == [True, True, True, False]
    last = table.iloc[3]
    assert np.isnan([last["block_influence"], last["angular_distance_1"], last["relative_update_norm"]]).all()
    assert np.isnan(table["angular_distance_2"][2]) and not np.isnan(table["angular_distance_2"][1])
    assert np.isfinite(last["gbs_in_out"]) and np.isfinite(last["cka_in_out"])


def test_graph_columns_equal_their_oracles(rng):
    n = 40
    labels = np.repeat([0, 1, 2, 3], n // 4)
    centres = rng.normal(size=(4, 30))
    x = (centres[labels] + 1.5 * rng.normal(size=(n, 30))).reshape(n, 5, 6)
    acts = chain(x, lambda v: v + 0.8 * rng.normal(size=v.shape), lambda v: np.tanh(v) + 0.3 * v,
                 lambda v: rotate_pairs(v, 0.4))
    table = layer_redundancy(Activations(acts, labels), progress=False)
    flat = {name: np.asarray(a, dtype=np.float32).reshape(n, -1).astype(np.float64) for name, a in acts.items()}
    curve = dict((name, q) for name, q, _ in reference_modularity_curve(flat, labels, 3, n, 1))
    for _, row in table.iterrows():
        b = row["block"]
        xi, yo = flat[f"{b}:input"], flat[b]
        assert row["gbs_in_out"] == pytest.approx(naive_gbs(xi, yo, None), abs=1e-6)
        assert row["cka_in_out"] == pytest.approx(cka_oracle(xi @ xi.T, yo @ yo.T, hsic_unbiased), abs=1e-5)
        assert row["modularity"] == pytest.approx(curve[b], abs=1e-6)
        assert row["delta_q"] == pytest.approx(curve[b] - curve[f"{b}:input"], abs=1e-6)
    assert table.attrs["redundant_when"]["delta_q"] == "low" and table.attrs["cka_debiased"] is True
    # without labels there is no ΔQ
    assert "delta_q" not in layer_redundancy(acts, progress=False).columns


def test_similarity_reductions_respect_the_mask(rng):
    x = rng.normal(size=(12, 5, 6))
    y = np.tanh(x) + 0.5 * rng.normal(size=x.shape)
    mask = np.ones((12, 5), dtype=int)
    mask[::2, 3:] = 0  # padding at the end of every other sequence
    acts = {"b:input": x, "b": y}
    flat = layer_redundancy(acts, mask=mask, progress=False).iloc[0]
    # "flatten": padded tokens are zeroed, then each sequence is one vector of T·D numbers
    zeroed = [np.where(mask[..., None] == 1, a, 0.0).reshape(12, -1) for a in (x, y)]
    assert flat["gbs_in_out"] == pytest.approx(naive_gbs(*zeroed, None), abs=1e-6)
    # "token_mean": the mean over each sequence's real tokens
    mean = layer_redundancy(acts, mask=mask, similarity_reduce="token_mean", progress=False).iloc[0]
    means = [(a * mask[..., None]).sum(1) / mask.sum(1, keepdims=True) for a in (x, y)]
    assert mean["cka_in_out"] == pytest.approx(
        cka_oracle(means[0] @ means[0].T, means[1] @ means[1].T, hsic_unbiased), abs=1e-5)
    # "last_token": the last real token
    last = layer_redundancy(acts, mask=mask, similarity_reduce="last_token", progress=False).iloc[0]
    ends = [np.where((np.arange(12) % 2 == 0)[:, None], a[:, 2], a[:, 4]) for a in (x, y)]
    assert last["gbs_in_out"] == pytest.approx(naive_gbs(*ends, None), abs=1e-6)


def test_rank_correlations_equal_scipy_spearman_oriented_by_which_end_is_redundant(rng):
    x = rng.normal(size=(16, 4, 6))
    blocks = [lambda v, a=a, s=s: rotate_pairs(v, a) * s + 0.2 * rng.normal(size=v.shape)
              for a, s in [(0.1, 1.0), (0.9, 1.2), (0.3, 0.7), (1.4, 1.0), (0.05, 2.0), (0.6, 0.9)]]
    table = layer_redundancy(chain(x, *blocks), n_max=3, progress=False)
    rho = table.attrs["rank_correlation"]
    columns = ["block_influence", "angular_distance_1", "angular_distance_2", "angular_distance_3",
               "relative_update_norm", "gbs_in_out", "cka_in_out"]
    assert sorted(rho) == sorted(columns)
    # +1 when a high value means redundant (GBS, CKA), -1 when a low one does (the rest)
    sign = {c: 1 if c in ("gbs_in_out", "cka_in_out") else -1 for c in columns}
    for a in columns:
        for b in columns:
            both = table[[a, b]].dropna()
            expected = scipy.stats.spearmanr(both[a], both[b]).statistic * sign[a] * sign[b]
            assert rho[a][b] == pytest.approx(expected, abs=1e-12), (a, b)
    assert rho["block_influence"]["cka_in_out"] > 0  # they agree here: both follow the rotation angle


def test_pairing_and_bad_input(hidden):
    acts = chain(hidden, lambda x: x, lambda x: -x)
    with pytest.raises(ValueError, match=r"no input for \['stem'\]"):
        layer_redundancy({**acts, "stem": hidden}, progress=False)
    with pytest.raises(ValueError, match=r"no output for \['head:input'\]"):
        layer_redundancy({**acts, "head:input": hidden}, progress=False)
    # choosing blocks ignores the unpaired ones; a chosen block must be paired
    assert layer_redundancy({**acts, "stem": hidden}, blocks=["b1"], progress=False)["block"].tolist() == ["b1"]
    with pytest.raises(ValueError, match=r"lacks \['stem:input'\]"):
        layer_redundancy({**acts, "stem": hidden}, blocks=["stem"], progress=False)
    with pytest.raises(ValueError, match="n_max must be an integer in 1..2"):
        layer_redundancy(acts, n_max=3, progress=False)
    with pytest.raises(ValueError, match="similarity_reduce"):
        layer_redundancy(acts, similarity_reduce="mean", progress=False)
    with pytest.raises(ValueError, match="same samples"):
        layer_redundancy({**acts, "b1": -hidden[:5]}, progress=False)
    with pytest.raises(ValueError, match="mask has shape"):
        layer_redundancy(acts, mask=np.ones((12, 4)), progress=False)
    with pytest.raises(ValueError, match="no real token"):
        layer_redundancy(acts, mask=np.zeros((12, 5)), progress=False)
    with pytest.raises(ValueError, match="NaN or Inf"):
        block_influence(hidden, np.full_like(hidden, np.nan))
    with pytest.raises(ValueError, match="keep the shape"):
        block_influence(hidden, hidden[:, :3])
    with pytest.raises(ValueError, match="feature_axis=0"):
        block_influence(hidden, hidden, feature_axis=0)
    with pytest.raises(ValueError, match="zero at every token"):
        relative_update_norm(np.zeros((3, 2, 4)), np.ones((3, 2, 4)))
    with pytest.raises(TypeError, match="non-empty"):
        layer_redundancy({}, progress=False)


def _table():
    table = pd.DataFrame({"block": ["h.0", "h.1", "h.2", "h.3"],
                          "block_influence": [0.4, 0.1, np.nan, 0.1],
                          "gbs_in_out": [0.2, 0.9, 0.5, 0.8],
                          "angular_distance_2": [0.3, 0.2, 0.2, np.nan]})
    table.attrs.update({"redundant_when": {"block_influence": "low", "gbs_in_out": "high",
                                           "angular_distance_2": "low"}, "n_max": 2})
    return table


def test_blocks_to_remove_orientation_ties_and_limits():
    table = _table()
    assert blocks_to_remove(table, 1) == ["h.1"]                    # tie 0.1 / 0.1 -> the earlier block
    assert blocks_to_remove(table, 2) == ["h.1", "h.3"]
    assert blocks_to_remove(table, 3) == ["h.0", "h.1", "h.3"]      # NaN is never chosen
    assert blocks_to_remove(table, 2, by="gbs_in_out") == ["h.1", "h.3"]  # high = redundant
    assert blocks_to_remove(table, 2, by="gbs_in_out", removable=["h.0", "h.2", "h.3"]) == ["h.2", "h.3"]
    assert blocks_to_remove(table, 2, by="angular_distance") == ["h.1", "h.2"]  # tie 0.2 / 0.2 -> earlier
    with pytest.raises(ValueError, match="Only 3 removable blocks"):
        blocks_to_remove(table, 4)
    with pytest.raises(ValueError, match="n_max=2"):
        blocks_to_remove(table, 3, by="angular_distance")
    with pytest.raises(ValueError, match="Unknown criterion 'bi'"):
        blocks_to_remove(table, 1, by="bi")
    with pytest.raises(ValueError, match="positive integer"):
        blocks_to_remove(table, 0)


def test_plot_layer_redundancy():
    table = _table()
    ax = plot_layer_redundancy(table)
    shown = ax.images[0].get_array()
    assert shown.shape == (3, 4)
    # colour = 1 − (rank − 1)/(defined − 1), rank 1 = most redundant, ties share the best rank:
    # BI 0.4, 0.1, NaN, 0.1 -> ranks 3, 1, -, 1
    np.testing.assert_allclose(shown[0].filled(np.nan), [0.0, 1.0, np.nan, 1.0])
    np.testing.assert_allclose(shown[1], [0.0, 1.0, 1 / 3, 2 / 3])  # GBS: high = redundant
    assert [t.get_text() for t in ax.get_yticklabels()] == ["Block Influence", "GBS in/out", "angular n=2"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "1", "2", "3"]  # "h." prefix dropped
    assert len(ax.texts) == 10  # one value per defined cell
    plt.close("all")
    with pytest.raises(ValueError, match="Unknown criteria"):
        plot_layer_redundancy(table, criteria=["delta_q"])


# --- the workflow on real models ---------------------------------------------------------------

def test_block_redundancy_of_a_gpt2_matches_its_own_hidden_states():
    pytest.importorskip("transformers")
    import torch

    from repgraph import block_redundancy
    from repgraph.models.byte_gpt import byte_gpt
    model = byte_gpt(n_layer=3, n_embd=16, n_head=2, n_positions=16)
    ids = torch.randint(0, 256, (10, 12), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[5:, 8:] = 0  # right padding in half the sequences
    table = block_redundancy(model, {"input_ids": ids, "attention_mask": mask}, n_max=2, progress=False)
    assert table["block"].tolist() == ["transformer.h.0", "transformer.h.1", "transformer.h.2"]
    assert table.attrs["masked"] and table.attrs["angular_reduce"] == ["last_token"]
    # transformers' own hidden_states[i] is block i's input; hidden_states[i + 1] its output for i < L − 1
    # (the last entry has ln_f applied)
    with torch.no_grad():
        hs = [h.numpy() for h in model(ids, attention_mask=mask, output_hidden_states=True).hidden_states]
    m = mask.numpy()
    last = m.shape[1] - 1 - np.argmax(m[:, ::-1], axis=1)
    for i in range(2):
        assert table["block_influence"][i] == pytest.approx(naive_block_influence(hs[i], hs[i + 1], m), abs=1e-5)
        at_last = [h[np.arange(len(h)), last][:, None] for h in (hs[i], hs[i + 1])]
        assert table["angular_distance_1"][i] == pytest.approx(naive_angular_distance(*at_last), abs=1e-5)
    at_last = [h[np.arange(len(h)), last][:, None] for h in (hs[0], hs[2])]
    assert table["angular_distance_2"][0] == pytest.approx(naive_angular_distance(*at_last), abs=1e-5)


def test_block_redundancy_of_a_resnet_with_labels():
    import torch

    from repgraph import block_redundancy
    from repgraph.models import resnet20
    torch.manual_seed(0)
    model = resnet20(num_classes=4)
    X, y = torch.randn(24, 3, 16, 16), torch.arange(24) % 4
    table = block_redundancy(model, (X, y), n_max=2, modularity_batch_size=24, progress=False)
    assert len(table) == 9 and table.attrs["angular_reduce"] == ["token_mean"]
    assert table.loc[~table["shape_preserving"], "block"].tolist() == ["layer2.0", "layer3.0"]
    assert table["delta_q"].notna().all() and table["gbs_in_out"].notna().all()
    # block layer1.1 by hand: its input and output from forward hooks, each position's channel vector a token
    seen = {}
    block = model.layer1[1]
    handles = [block.register_forward_pre_hook(lambda m, a: seen.__setitem__("in", a[0].detach())),
               block.register_forward_hook(lambda m, a, o: seen.__setitem__("out", o.detach()))]
    with torch.no_grad():
        model.eval()(X)
    for h in handles:
        h.remove()
    tokens = [seen[k].flatten(2).transpose(1, 2).numpy() for k in ("in", "out")]  # (N, H·W, C)
    assert table["block_influence"][1] == pytest.approx(naive_block_influence(*tokens), abs=1e-5)

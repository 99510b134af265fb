"""Issue 23 A5: the snags a BERT user meets. The capture's default on masked token states (it keeps
the padding, so it warns that the default becomes the mask-aware token mean), ``first_token``
([CLS]) in the block criteria, streamed and unreduced alike, and the CKA estimator each table
names in its ``attrs``.

Tiny randomly initialised BERTs are built from configs (no download). Oracles: the hidden states
of the unreduced capture (``reduce=None``) read at position 0, and ``layer_redundancy`` on that
capture for the streamed ``block_redundancy``."""
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from repgraph import block_redundancy, capture_activations, layer_redundancy
from repgraph.analyzers.block_criteria import sample_vectors
from repgraph.execution.runner import InProcessRunner
from repgraph.hooks.sharded_capture import capture_shards

transformers = pytest.importorskip("transformers")

V, N, T = 64, 11, 8


def tiny_bert(layers=3):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return transformers.BertModel(transformers.BertConfig(
            num_hidden_layers=layers, hidden_size=32, intermediate_size=64, num_attention_heads=4, vocab_size=V,
            max_position_embeddings=32)).eval()


def padded(side="right", seed=0):
    """A dict batch of N sequences of 2 … T real tokens, half of the positions padding or so."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, V, (N, T), generator=g)
    lengths = torch.randint(2, T + 1, (N,), generator=g)
    lengths[0] = T
    positions = torch.arange(T)[None]
    mask = positions < lengths[:, None] if side == "right" else positions >= T - lengths[:, None]
    return {"input_ids": ids, "attention_mask": mask.long(), "labels": torch.arange(N) % 3}


def _future(record):
    return [w for w in record if issubclass(w.category, FutureWarning)]


# --- the capture's default on masked token states ---------------------------------------------

def test_the_default_on_masked_token_states_warns_once_at_the_users_line_naming_reduce():
    model, data = tiny_bert(), padded()
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        acts = capture_activations(model, data, batch_size=4, progress=False)  # 3 batches, 3 blocks
    (warning,) = _future(record)
    message = str(warning.message)
    assert "'encoder.layer.0'" in message and "attention_mask" in message and "padded ones included" in message
    assert "reduce='token_mean'" in message and "reduce='flatten'" in message and "next release" in message
    assert warning.filename == __file__  # the user's line, not torch's hook caller
    # today's numbers are flatten's, and a store of either spelling is the same capture
    flat = capture_activations(model, data, reduce="flatten", batch_size=4, progress=False)
    assert acts.meta["reduce"] == "flatten" and acts.layers == flat.layers
    for name in acts:
        np.testing.assert_array_equal(acts[name], flat[name])
    assert acts[acts.layers[0]].shape == (N, T * 32)


@pytest.mark.parametrize("reduce", ["flatten", "token_mean", "first_token", None])
def test_an_explicit_reduce_is_silent(reduce):
    model, data = tiny_bert(1), padded()
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        capture_activations(model, data, reduce=reduce, progress=False)


def test_no_warning_without_a_mask_or_without_token_states():
    model, data = tiny_bert(1), padded()
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        capture_activations(model, {"input_ids": data["input_ids"]}, progress=False)  # no mask: no padding
        capture_activations(nn.Sequential(nn.Conv2d(1, 2, 3)), torch.randn(4, 1, 6, 6), layers=["0"],
                            progress=False)


def test_the_default_keeps_reusing_flatten_stores_and_warns_in_a_sharded_capture(tmp_path):
    model, data = tiny_bert(1), padded()
    store = tmp_path / "acts"
    with pytest.warns(FutureWarning, match="reduce='token_mean'"):
        sharded = capture_shards(model, data, store=store, batch_size=4, progress=False, runner=InProcessRunner())
    reused = capture_activations(model, data, reduce="flatten", store=store, batch_size=4, progress=False)
    assert reused.meta["reduce"] == sharded.meta["reduce"] == "flatten"
    np.testing.assert_array_equal(reused["encoder.layer.0"], sharded["encoder.layer.0"])


# --- first_token ([CLS]) in the block criteria --------------------------------------------------

def test_first_token_is_position_0_of_a_right_padded_batch_and_the_capture_reducers_token():
    model = tiny_bert(2)
    for side in ("right", "left"):
        data = padded(side, seed=1)
        raw = capture_activations(model, data, reduce=None, progress=False)
        cls = capture_activations(model, data, reduce="first_token", progress=False)
        for name in raw:
            got = sample_vectors(raw[name], "first_token", mask=data["attention_mask"]).numpy()
            np.testing.assert_array_equal(got, cls[name])
            if side == "right":
                np.testing.assert_array_equal(got, raw[name][:, 0])
            else:  # left padding: the first real position, as the capture's reducer
                assert not np.allclose(got, raw[name][:, 0])


def test_streamed_first_token_equals_layer_redundancy_on_the_unreduced_capture():
    model, data = tiny_bert(4), padded(seed=2)
    labels = data["labels"].numpy()
    options = {"angular_reduce": "first_token", "similarity_reduce": "first_token", "n_max": 3}
    table = block_redundancy(model, data, batch_size=4, modularity_batch_size=N, modularity_k=2, progress=False,
                             **options)
    acts = capture_activations(model, data, "blocks", inputs=True, reduce=None, batch_size=4, progress=False)
    oracle = layer_redundancy(acts, labels, mask=data["attention_mask"], modularity_batch_size=N, modularity_k=2,
                              progress=False, **options)
    assert table["block"].tolist() == oracle["block"].tolist() == [f"encoder.layer.{i}" for i in range(4)]
    criteria = ["delta_q", "modularity", "block_influence", "angular_distance_1", "angular_distance_2",
                "angular_distance_3", "relative_update_norm", "gbs_in_out", "cka_in_out"]
    for column in criteria:
        np.testing.assert_allclose(table[column], oracle[column], atol=1e-6, rtol=0, equal_nan=True, err_msg=column)
    assert table["angular_distance_1"].gt(1e-3).all()  # not a trivially zero comparison
    assert table.attrs["reductions"]["gbs_in_out"] == table.attrs["reductions"]["angular_distance_2"] == "first_token"
    assert table.attrs["similarity_reduce"] == "first_token" and table.attrs["angular_reduce"] == ["first_token"]
    # and it differs from the token mean: the [CLS] vector is its own reading
    mean = block_redundancy(model, data, batch_size=4, n_max=1, similarity_reduce="token_mean", progress=False)
    assert not np.allclose(mean["cka_in_out"], table["cka_in_out"])


def test_an_unknown_reduction_lists_first_token():
    with pytest.raises(ValueError, match="similarity_reduce='cls'.*first_token|first_token.*similarity_reduce='cls'"):
        block_redundancy(tiny_bert(1), padded(), similarity_reduce="cls", progress=False)


# --- which CKA estimator each table uses ------------------------------------------------------

def test_each_cka_table_names_its_estimator_and_the_redundancy_tables_are_debiased_cka_matrix():
    from repgraph import cka_matrix, layer_similarity
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 5, 16))  # features (80) outnumber samples (12): the biased CKA is inflated
    acts = {"b0:input": x, "b0": np.tanh(x @ rng.normal(size=(16, 16)))}
    table = layer_redundancy(acts, n_max=1, progress=False)
    assert table.attrs["cka_estimator"] == "debiased (unbiased HSIC)" and table.attrs["cka_debiased"] is True
    flat = {name: a.reshape(len(a), -1) for name, a in acts.items()}
    debiased = cka_matrix(flat, debiased=True, progress=False)
    biased = cka_matrix(flat, progress=False)  # the contract: biased by default
    assert biased.attrs["cka_estimator"] == "biased" and debiased.attrs["cka_estimator"] == "debiased (unbiased HSIC)"
    assert table["cka_in_out"][0] == pytest.approx(debiased.loc["b0:input", "b0"], abs=1e-6)
    assert biased.loc["b0:input", "b0"] > table["cka_in_out"][0] + 0.05
    assert layer_similarity(flat, measure="cka").equals(biased)
    assert layer_similarity(flat, measure="cka").attrs["cka_estimator"] == "biased"
    assert layer_redundancy(acts, n_max=1, cka_debiased=False, progress=False).attrs["cka_estimator"] == "biased"
    assert cka_matrix(flat, batch_size=6, progress=False).attrs["cka_estimator"] == "debiased (minibatch unbiased HSIC)"
    streamed = block_redundancy(tiny_bert(2), padded(), n_max=1, progress=False)
    assert streamed.attrs["cka_estimator"] == "debiased (unbiased HSIC)"

"""Workflows (model + data): filter scores from the criteria registry, the per-layer filter report,
repgraph scores inside Torch-Pruning's own pruners, and the shared settings they run under."""
import numpy as np
import pandas as pd
import pytest
import scipy.stats
import torch
import torch_pruning as tp

import repgraph as rg
from repgraph._arrays import prune_count, resolve_device, row_chunk
from repgraph.analyzers.topology import entropy_ranking_scores
from repgraph.datasets import digits
from repgraph.models import small_cnn, vgg11
from repgraph.workflows import criteria_names, get_criterion, unregister_criterion


@pytest.fixture(scope="module")
def cnn_and_data():
    torch.manual_seed(0)
    model = small_cnn(num_classes=10, in_channels=1).eval()
    test = digits("test", size=8)
    return model, test


def _relu1_maps(model, X):
    """conv1's post-ReLU maps, computed here by calling the modules (not through capture)."""
    with torch.no_grad():
        return model.relu1(model.bn1(model.conv1(X))).numpy()


def test_map_criteria_score_each_convs_post_relu_maps(cnn_and_data):
    model, test = cnn_and_data
    x = test.data[:1]
    maps = _relu1_maps(model, test.data[:40])
    labels = test.targets[:40].numpy()
    hrank = rg.filter_scores(model, "hrank", convs=["conv1"], data=test, example_input=x, max_samples=40,
                             progress=False)
    np.testing.assert_allclose(hrank["conv1"], rg.hrank_scores(maps))
    chip = rg.filter_scores(model, "chip", convs=["conv1"], data=test, example_input=x, max_samples=40,
                            progress=False)
    np.testing.assert_allclose(chip["conv1"], rg.chip_scores(maps), rtol=1e-6)
    entropy = rg.filter_scores(model, "entropy", convs=["conv1"], data=test, example_input=x, max_samples=40,
                               progress=False)
    expected = entropy_ranking_scores(rg.class_feature_entropy(rg.birth_points(maps), labels))
    np.testing.assert_allclose(entropy["conv1"], expected)
    central = rg.filter_scores(model, "central_filter", convs=["conv1"], data=test, example_input=x,
                               max_samples=40, ratio=0.25, progress=False)
    reference = rg.central_filters(rg.filter_similarity(maps), 0.25)
    selection = central.selections["conv1"]
    assert (selection.kept, selection.pruned) == (reference.kept, reference.pruned)
    assert central["conv1"].tolist() == [0.0 if f in reference.pruned else 1.0 for f in range(model.conv1.out_channels)]


def test_weight_criteria_and_default_convs(cnn_and_data):
    model, test = cnn_and_data
    x = test.data[:1]
    l1 = rg.filter_scores(model, "l1", example_input=x, progress=False)
    assert sorted(l1) == ["conv1", "conv2"]  # no residual coupling in this CNN: every conv is uncoupled
    by_hand = model.conv2.weight.detach().abs().sum(dim=(1, 2, 3)).double().numpy()
    np.testing.assert_allclose(l1["conv2"], by_hand)
    first = rg.filter_scores(model, "random", example_input=x, seed=3)
    again = rg.filter_scores(model, "random", example_input=x, seed=3)
    other = rg.filter_scores(model, "random", example_input=x, seed=4)
    assert np.array_equal(first["conv1"], again["conv1"]) and not np.array_equal(first["conv1"], other["conv1"])
    clp = rg.filter_scores(model, "clp", example_input=x)
    np.testing.assert_allclose(clp["conv1"], rg.clp_scores(model, example_input=x)["conv1"])


def test_user_criteria_plug_in(cnn_and_data):
    model, test = cnn_and_data
    seen = {}

    @rg.register_criterion("mean_activation", needs_maps=True, description="mean post-ReLU value")
    def mean_activation(inputs):
        seen.update(shapes={c: m.shape for c, m in inputs.maps.items()}, labels=inputs.labels)
        return {c: m.mean(axis=(0, 2, 3)) for c, m in inputs.maps.items()}

    try:
        assert "mean_activation" in criteria_names()
        scores = rg.filter_scores(model, "mean_activation", convs=["conv1"], data=test, example_input=test.data[:1],
                                  max_samples=12, progress=False)
        np.testing.assert_allclose(scores["conv1"], _relu1_maps(model, test.data[:12]).mean(axis=(0, 2, 3)),
                                   rtol=1e-6)
        assert seen["shapes"] == {"conv1": (12, 16, 8, 8)}
        assert seen["labels"].tolist() == test.targets[:12].tolist()
        with pytest.raises(ValueError, match="registered already"):
            rg.register_criterion("mean_activation", needs_maps=False)(lambda inputs: {})
    finally:
        unregister_criterion("mean_activation")
    assert "mean_activation" not in criteria_names()


def test_filter_scores_bad_input(cnn_and_data):
    model, test = cnn_and_data
    with pytest.raises(ValueError, match=r"Unknown filter criterion 'hrnak'.*Did you mean hrank"):
        rg.filter_scores(model, "hrnak", example_input=test.data[:1])
    with pytest.raises(ValueError, match="reads feature maps: pass data="):
        rg.filter_scores(model, "chip", example_input=test.data[:1])
    with pytest.raises(ValueError, match="Unknown filter criterion"):
        get_criterion(None)


def test_layer_filter_report_columns_agree_with_each_criterion(cnn_and_data):
    model, test = cnn_and_data
    table = rg.layer_filter_report(model, test, "relu1", max_samples=40, ratio=0.25, progress=False)
    maps = _relu1_maps(model, test.data[:40])
    assert table.attrs["conv"] == "conv1" and table.attrs["n_images"] == 40 and table.attrs["measure"]
    assert list(table["filter"]) == list(range(16))
    np.testing.assert_allclose(table["hrank"], rg.hrank_scores(maps))
    np.testing.assert_allclose(table["l1"], model.conv1.weight.detach().abs().sum(dim=(1, 2, 3)).double())
    np.testing.assert_allclose(table["clp"], rg.clp_scores(model, example_input=test.data[:1])["conv1"])
    selection = rg.central_filters(rg.filter_similarity(maps), 0.25)
    assert np.flatnonzero(table["cf_pruned"]).tolist() == selection.pruned
    expected = rg.class_feature_entropy(rg.birth_points(maps), test.targets[:40].numpy())["ineffectiveness"]
    np.testing.assert_allclose(table["ineffectiveness"], expected)
    rho = scipy.stats.spearmanr(table["hrank"], table["l1"]).statistic
    assert table.attrs["rank_correlation"].loc["hrank", "l1"] == pytest.approx(rho)
    with pytest.raises(ValueError, match="not \\(C, ...\\) channel maps"):
        rg.layer_filter_report(model, test, "fc", max_samples=8, progress=False)
    with pytest.raises(ValueError, match=r"conv='bn1' is not a convolution of SmallCNN; its convs are \['conv1'"):
        rg.layer_filter_report(model, test, "relu1", conv="bn1", max_samples=8, progress=False)


def test_prune_experiment_refuses_a_model_without_flops():
    from torch import nn
    model = nn.Sequential(nn.Flatten(), nn.Identity())
    with pytest.raises(ValueError, match="0 FLOPs counted"):
        rg.prune_experiment(model, lambda m: m, (torch.zeros(4, 2), torch.zeros(4, dtype=torch.long)),
                            (torch.zeros(4, 2), torch.zeros(4, dtype=torch.long)), example_input=torch.zeros(1, 2),
                            progress=False)


def test_scores_importance_drives_torch_prunings_own_pruner():
    torch.manual_seed(0)
    model = vgg11(num_classes=10, in_channels=3)
    x = torch.zeros(1, 3, 32, 32)
    original = model.features[0].weight.detach().clone()
    scores = {"features.0": np.array([5.0, 1.0, 7.0] + [0.5] * 60 + [9.0])}  # 64 filters, scored by hand
    pruner = tp.pruner.MetaPruner(model, x, importance=rg.ScoresImportance(scores, model=model), pruning_ratio=0.5,
                                  ignored_layers=[model.classifier])
    pruner.step()
    # only the scored group is pruned; it keeps its 32 best: 9.0 (63), 7.0 (2), 5.0 (0), 1.0 (1), and 28 of
    # the tied 0.5s — Torch-Pruning's sort decides which tied ones, so compare the scored ones exactly
    kept = model.features[0].weight.detach()
    assert kept.shape[0] == 32 and model.features[4].out_channels == 128  # the unscored convs are untouched
    rows = {int(torch.nonzero((original == w).flatten(1).all(1))[0]) for w in kept}
    assert {0, 1, 2, 63} <= rows and len(rows) == 32
    with pytest.raises(ValueError, match="now has 32"):
        rg.ScoresImportance(scores, model=model)(tp.DependencyGraph().build_dependency(model, example_inputs=x)
                                           .get_pruning_group(model.features[0], tp.prune_conv_out_channels,
                                                              idxs=[0]))


def test_scores_importance_bad_input():
    model = vgg11()
    with pytest.raises(ValueError, match="Unknown layer 'nope'"):
        rg.ScoresImportance({"nope": np.ones(3)}, model=model)
    with pytest.raises(ValueError, match="NaN or Inf"):
        rg.ScoresImportance({"features.0": np.full(64, np.nan)}, model=model)


def test_criterion_importance_equals_scores_of_the_criterion():
    model = vgg11()
    x = torch.zeros(1, 3, 32, 32)
    imp = rg.criterion_importance(model, "l1", example_input=x)
    assert set(imp.scores) == {n for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)}
    np.testing.assert_allclose(imp.scores["features.0"], rg.l1_scores(model)["features.0"])


def test_one_ratio_rule():
    # ceil(C·ratio), with float error forgiven: 10 × 0.3 = 3.0000000000000004 in floating point
    assert [prune_count(10, r) for r in (0.0, 0.05, 0.3, 0.31, 0.5)] == [0, 1, 3, 4, 5]
    assert prune_count(16, 0.25) == 4 and prune_count(64, 0.5) == 32
    with pytest.raises(ValueError, match=r"ratio must be a fraction in \[0, 1\), got 1.0"):
        prune_count(10, 1.0)
    with pytest.raises(ValueError, match=r"fraction in \(0, 1\)"):
        prune_count(10, 0.0, allow_zero=False)
    with pytest.raises(ValueError, match="would prune all 3 filters"):
        prune_count(3, 0.9)


def test_working_memory_budget_sizes_every_chunk():
    with rg.config_context(working_memory=1):  # 1 MiB: float32 rows of 1024 values -> 256 rows per chunk
        assert row_chunk(10_000, 4 * 1024) == 256
        assert rg.get_config()["working_memory"] == 1
    assert rg.get_config()["working_memory"] == 256
    assert row_chunk(10, 4 * 1024) == 10 and row_chunk(10, 2**40) == 1
    with pytest.raises(ValueError, match="working_memory must be a positive"):
        rg.set_config(working_memory=0)
    # results do not depend on the budget: a kNN graph built in 1-row chunks equals the default one
    X = np.random.default_rng(0).normal(size=(60, 9))
    with rg.config_context(working_memory=1):
        small = rg.knn_graph(X, k=3).toarray()
    np.testing.assert_allclose(small, rg.knn_graph(X, k=3).toarray())


def test_one_device_resolver():
    assert resolve_device(None) == torch.device("cpu")
    assert resolve_device(None, like=torch.zeros(2)) == torch.device("cpu")
    assert resolve_device(None, like=vgg11()) == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device is available"):
            resolve_device("cuda")
    with pytest.raises(ValueError, match="is not a device"):
        resolve_device("gpu0")


def test_every_table_says_what_it_measures(cnn_and_data):
    model, test = cnn_and_data
    acts = rg.capture_activations(model, test, layers=["relu1", "relu2"], progress=False)
    tables = [rg.modularity_curve(acts, batch_size=90, progress=False), rg.cka_matrix(acts, progress=False),
              rg.gbs_matrix(acts, progress=False), rg.list_layers(model, test.data[:1]),
              rg.feature_entropy(np.array([[1, 0], [2, 3]])),
              rg.redundant_layers(pd.DataFrame({"layer": ["a", "b"], "modularity": [0.1, 0.2]}))]
    for table in tables:
        assert {"measure", "reference"} <= set(table.attrs), table.attrs

"""transformation_complexity (Ren et al., ICML 2022) and plot_complexity_next_to_modularity, on
gating patterns whose entropies are worked out by hand."""
import math

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from repgraph import transformation_complexity  # noqa: E402
from repgraph.plotting import plot_complexity_next_to_modularity  # noqa: E402

# four samples, four different patterns (each once) in "a"; "b" on for the first two samples only
A = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 1.0], [0.0, 0.0]])
B = np.array([[1.0], [1.0], [0.0], [0.0]])


def test_four_equally_frequent_patterns_have_entropy_log_4():
    bits = transformation_complexity({"a": A})
    nats = transformation_complexity({"a": A}, base=math.e)
    assert bits.loc[0, "complexity"] == pytest.approx(2.0, abs=1e-12)
    assert nats.loc[0, "complexity"] == pytest.approx(math.log(4), abs=1e-12)
    assert bits.loc[0, "n_patterns"] == 4 and bits.loc[0, "n_units"] == 2


def test_unequal_frequencies_and_the_joint_patterns_of_the_first_layers():
    # "c": patterns 1, 1, 0, 2 -> p = (1/2, 1/4, 1/4): H = 1/2·1 + 2·(1/4·2) = 1.5 bits
    c = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 0.0], [0.0, 1.0]])
    table = transformation_complexity({"b": B, "c": c})
    assert table["layer"].tolist() == ["b", "c"] and table["depth"].tolist() == [0, 1]
    assert table["complexity"].tolist() == pytest.approx([1.0, 1.5], abs=1e-12)
    # joint (b, c): (1, 10), (1, 10), (0, 00), (0, 01): three patterns with p = (1/2, 1/4, 1/4)
    assert table["cumulative_complexity"].tolist() == pytest.approx([1.0, 1.5], abs=1e-12)
    joint = transformation_complexity({"a": A, "b": B})
    assert joint["cumulative_complexity"].tolist() == pytest.approx([2.0, 2.0], abs=1e-12)


def test_label_information_is_entropy_minus_the_class_conditional_entropy():
    labels = np.array([0, 0, 1, 1])
    table = transformation_complexity({"a": A, "b": B}, labels)
    # "b" is the label: I = H = 1 bit. "a": H = 2, each class holds two patterns (H | y = 1): I = 1
    assert table["label_information"].tolist() == pytest.approx([1.0, 1.0], abs=1e-12)
    assert table["cumulative_label_information"].tolist() == pytest.approx([1.0, 1.0], abs=1e-12)


def test_activations_booleans_and_torch_give_the_same_gates():
    maps = torch.tensor(A).reshape(4, 2, 1, 1)  # feature maps (N, C, H, W) flatten to the same patterns
    for value in (A > 0, torch.tensor(A), maps, -np.abs(A) + (A > 0) * 5):
        assert transformation_complexity({"a": value}).loc[0, "complexity"] == pytest.approx(2.0, abs=1e-12)


def test_kernel_estimate_matches_the_hand_computed_density():
    # two samples, patterns 10 and 01: Hamming distance 2, D = 2, variance λ·D = 0.5·2 = 1
    # each sample's density (1/2)(1 + exp(−2/(2·1))) = (1 + e^{-1})/2, H = −log2 of it
    gates = np.array([[True, False], [False, True]])
    table = transformation_complexity({"g": gates}, estimator="kde", bandwidth=0.5)
    assert table.loc[0, "complexity"] == pytest.approx(-math.log2((1 + math.exp(-1)) / 2), rel=1e-12)
    # a tiny bandwidth makes the kernel estimate the plug-in entropy of distinct patterns
    sharp = transformation_complexity({"a": A}, estimator="kde", bandwidth=1e-3)
    assert sharp.loc[0, "complexity"] == pytest.approx(2.0, abs=1e-9)
    assert sharp.attrs["estimator"] == "kde" and sharp.attrs["bandwidth"] == 1e-3


def test_kernel_default_bandwidth_is_the_authors_per_shape():
    gates = np.array([[True, False], [False, True]])
    flat = transformation_complexity({"g": gates}, estimator="kde")  # λ = 0.01, variance 0.02
    expected = -math.log2((1 + math.exp(-2 / 0.04)) / 2)
    assert flat.loc[0, "complexity"] == pytest.approx(expected, rel=1e-12)
    maps = transformation_complexity({"g": gates.reshape(2, 2, 1, 1)}, estimator="kde")  # λ = 0.04
    assert maps.loc[0, "complexity"] == pytest.approx(-math.log2((1 + math.exp(-2 / 0.16)) / 2), rel=1e-12)


def test_errors_name_the_argument():
    with pytest.raises(TypeError, match="acts_or_gates"):
        transformation_complexity({})
    with pytest.raises(ValueError, match="estimator"):
        transformation_complexity({"a": A}, estimator="plugin")
    with pytest.raises(ValueError, match="different numbers of samples"):
        transformation_complexity({"a": A, "b": B[:3]})
    with pytest.raises(ValueError, match="bandwidth"):
        transformation_complexity({"a": A}, estimator="kde", bandwidth=0.0)
    with pytest.raises(ValueError, match="base"):
        transformation_complexity({"a": A}, base=1.0)
    with pytest.raises(ValueError, match="NaN"):
        transformation_complexity({"a": np.array([[np.nan], [1.0]])})
    with pytest.raises(ValueError, match="labels"):
        transformation_complexity({"a": A}, [0, 1])


def test_plot_next_to_modularity_matches_layers_by_name():
    curve = pd.DataFrame({"layer": ["a", "x", "b"], "depth": [0, 1, 2], "modularity": [0.1, 0.2, 0.4]})
    table = transformation_complexity({"b": B, "a": A})
    ax = plot_complexity_next_to_modularity(curve, table)
    (line,) = ax.right_ax.get_lines()
    assert line.get_xdata().tolist() == [0, 2] and line.get_ydata().tolist() == pytest.approx([2.0, 1.0])
    assert "bits" in ax.right_ax.get_ylabel()
    with pytest.raises(ValueError, match="share no layer"):
        plot_complexity_next_to_modularity(curve.assign(layer=["p", "q", "r"]), table)
    with pytest.raises(ValueError, match="column"):
        plot_complexity_next_to_modularity(curve, table, column="entropy")

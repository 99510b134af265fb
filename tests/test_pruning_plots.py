"""The figures of pruning results: texts, positions and limits read back from the Axes, with the
expected values worked out by hand (networkx for the shortest-path closeness)."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import networkx as nx  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from repgraph import central_filters, closeness_centrality  # noqa: E402
from repgraph.plotting import plot_accuracy_before_after, plot_filter_closeness, plot_perplexity_change  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def equal_budget_rows():
    """Five criteria that removed the same FLOPs: in a FLOPs-vs-accuracy scatter they share one x."""
    return pd.DataFrame({"name": ["central_filter", "hrank", "chip", "entropy", "random"],
                         "flops_reduction": [0.247] * 5,
                         "accuracy_pruned": [0.90, 0.42, 0.61, 0.55, 0.30],
                         "accuracy_finetuned": [0.97, 0.96, 0.975, 0.965, 0.955]})


def test_accuracy_bars_give_every_network_its_own_row_in_table_order():
    table = equal_budget_rows()
    ax = plot_accuracy_before_after(table, reference=0.98, title="t")
    ticks = sorted(((t.get_position()[1], t.get_text()) for t in ax.get_yticklabels()), reverse=True)
    assert [name for _, name in ticks] == table["name"].tolist()  # first row on top
    assert len({y for y, _ in ticks}) == 5
    bars = sorted(((p.get_y() + p.get_height() / 2, p.get_width()) for p in ax.patches), reverse=True)
    # top to bottom: each row's fine-tuned bar (y + 0.2) above its pruned bar (y − 0.2), widths in %
    expected = [w for pruned, tuned in zip([90, 42, 61, 55, 30], [97, 96, 97.5, 96.5, 95.5]) for w in (tuned, pruned)]
    assert [w for _, w in bars] == pytest.approx(expected)
    assert sorted(t.get_text() for t in ax.texts) == sorted(f"{v:.1f}" for v in expected)
    low, high = ax.get_xlim()
    assert low == 0 and high >= 100
    line = [l for l in ax.get_lines() if l.get_linestyle() == "--"]
    assert len(line) == 1 and line[0].get_xdata()[0] == pytest.approx(98.0)
    assert ax.get_xlabel() == "test accuracy (%)" and ax.get_title() == "t"


def test_accuracy_bars_name_the_missing_column():
    with pytest.raises(ValueError, match=r"\['accuracy_finetuned'\].*label=, before=, after="):
        plot_accuracy_before_after(equal_budget_rows().drop(columns="accuracy_finetuned"))
    with pytest.raises(TypeError, match="DataFrame"):
        plot_accuracy_before_after([0.5, 0.9])


def test_perplexity_points_on_a_log_axis_with_every_value_inside():
    rows = pd.DataFrame({"criterion": ["BI", "angular", "last 2"], "perplexity removed": [12.0, 30.0, 9000.0],
                         "perplexity healed": [9.0, 11.0, 60.0]})
    ax = plot_perplexity_change(rows, reference=8.0)
    assert ax.get_xscale() == "log"
    assert not ax.patches  # no bar: on a log axis a bar's length would show the axis's start
    removed, healed = (np.asarray(c.get_offsets()) for c in ax.collections if c.get_label() != "_nolegend_"
                       and len(c.get_offsets()) == 3)
    assert removed[:, 0].tolist() == [12.0, 30.0, 9000.0] and healed[:, 0].tolist() == [9.0, 11.0, 60.0]
    low, high = ax.get_xlim()
    span = np.log(9000.0) - np.log(8.0)  # the reference 8 and the largest value 9000 span the data
    assert np.log(8.0) - np.log(low) == pytest.approx(0.08 * span)
    assert np.log(high) - np.log(9000.0) == pytest.approx(0.08 * span)
    ticks = sorted(((t.get_position()[1], t.get_text()) for t in ax.get_yticklabels()), reverse=True)
    assert [name for _, name in ticks] == ["BI", "angular", "last 2"]


def test_perplexity_points_close_together_fill_the_axis_with_labelled_ticks():
    """Healed perplexities within a few percent (a small model's block removal) on a log axis: no
    decade tick falls inside, so plain values label the ticks."""
    rows = pd.DataFrame({"criterion": ["BI", "ΔQ"], "perplexity removed": [10.84, 11.18],
                         "perplexity healed": [10.71, 10.76]})
    ax = plot_perplexity_change(rows, reference=10.73)
    low, high = ax.get_xlim()
    assert 10.5 < low < 10.71 and 11.18 < high < 11.5
    ax.figure.canvas.draw()
    labels = [t.get_text() for t in ax.get_xticklabels() if low <= t.get_position()[0] <= high]
    assert len(labels) >= 2 and all(label.replace(".", "").isdigit() for label in labels), labels


def test_perplexity_points_refuse_a_value_a_log_axis_cannot_show():
    rows = pd.DataFrame({"criterion": ["a"], "perplexity removed": [0.0], "perplexity healed": [3.0]})
    with pytest.raises(ValueError, match="positive and finite"):
        plot_perplexity_change(rows)


def four_filters():
    """Filters 0–2 similar (0.9, 0.8, 0.7), filter 3 alike to none (0.1): at a threshold between
    0.1 and 0.7 the graph is a triangle on 0–2 and an isolated 3."""
    S = np.array([[1.0, 0.9, 0.8, 0.1],
                  [0.9, 1.0, 0.7, 0.1],
                  [0.8, 0.7, 1.0, 0.1],
                  [0.1, 0.1, 0.1, 1.0]])
    return S, central_filters(S, ratio=0.5)  # threshold 0.55: filter 0 central, 1 and 2 its delegates


def test_filter_closeness_bars_equal_networkx_and_carry_the_roles():
    S, selection = four_filters()
    t = selection.threshold
    assert 0.1 <= t < 0.7  # the graph described above
    ax = plot_filter_closeness(closeness_centrality(S, threshold=t), selection, kind="shortest_path")
    G = nx.Graph()
    G.add_nodes_from(range(4))
    G.add_weighted_edges_from((i, j, 1 - S[i, j]) for i in range(4) for j in range(i + 1, 4) if S[i, j] > t)
    expected = nx.closeness_centrality(G, distance="weight")
    assert [p.get_height() for p in ax.patches] == pytest.approx([expected[i] for i in range(4)])
    colours = [matplotlib.colors.to_hex(p.get_facecolor()) for p in ax.patches]
    role = {matplotlib.colors.to_hex(c): name for c, name in
            (("tab:red", "central"), ("tab:gray", "pruned"), ("tab:blue", "kept"))}
    assert [role[c] for c in colours] == [
        "central" if i in selection.delegates else "pruned" if i in selection.pruned else "kept" for i in range(4)]
    assert [x.get_text() for x in ax.texts] == ["isolated"] and ax.texts[0].get_position()[0] == 3


def test_cf_local_bars_show_the_mean_neighbour_similarity_visibly():
    S, selection = four_filters()
    scores = closeness_centrality(S, kind="cf_local", threshold=selection.threshold)
    ax = plot_filter_closeness(scores, selection, kind="cf_local")
    # by hand: filter 0's neighbours 0.9 and 0.8, filter 1's 0.9 and 0.7, filter 2's 0.8 and 0.7
    assert [p.get_height() for p in ax.patches] == pytest.approx([0.85, 0.8, 0.75, 0.0])
    assert ax.get_ylim() == (0.0, 1.0)  # the raw scores (≈ 1/1024 each) would be invisible here
    assert "1024 − 1/cf_local" in ax.get_ylabel()


def test_filter_closeness_rejects_an_unknown_kind():
    S, selection = four_filters()
    with pytest.raises(ValueError, match="kind must be"):
        plot_filter_closeness(np.zeros(4), selection, kind="betweenness")


def test_filter_closeness_names_scores_that_do_not_fit_the_selection():
    S, selection = four_filters()
    with pytest.raises(ValueError, match=r"one finite, non-negative value per filter \(4\)"):
        plot_filter_closeness(np.ones(3), selection)
    with pytest.raises(ValueError, match="closeness_centrality"):
        plot_filter_closeness(np.array([0.5, np.nan, 0.1, 0.0]), selection)

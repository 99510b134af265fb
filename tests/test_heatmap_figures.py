"""plot_similarity_heatmap as a paper figure: axis titles, tick labels, a colour range fitted to the
data, annotated values and the measure on the colour bar. Expected values are worked out by hand
from the small matrices written here."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from repgraph.plotting import plot_similarity_heatmap  # noqa: E402

NAMES = ["conv1", "layer1.0", "layer1.1"]


def _gbs_like():
    """A full-graph GBS table as gbs_matrix lays it out (index "layer", columns "layer2", attrs)."""
    M = pd.DataFrame([[1.0, 0.98, 0.955], [0.98, 1.0, 0.97], [0.955, 0.97, 1.0]],
                     index=pd.Index(NAMES, name="layer"), columns=pd.Index(NAMES, name="layer2"))
    M.attrs.update({"measure": "GBS", "k": "full"})
    return M


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _texts(labels):
    return [t.get_text() for t in labels]


def test_defaults_fit_the_colours_to_the_data_and_annotate_a_small_matrix(tmp_path):
    ax = plot_similarity_heatmap(_gbs_like())
    assert ax.images[0].get_clim() == (0.955, 1.0)  # the smallest and largest value, not 0..1
    # 3 × 3 ≤ 12 × 12 cells: every value written, row by row from the bottom row (origin="lower")
    assert _texts(ax.texts) == ["1.000", "0.980", "0.955", "0.980", "1.000", "0.970", "0.955", "0.970", "1.000"]
    assert [(t.get_position()) for t in ax.texts[:2]] == [(0, 0), (1, 0)]
    # the analyzers' "layer"/"layer2" placeholders both read "layer"
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("layer", "layer")
    assert _texts(ax.get_xticklabels()) == ["conv1", "1.0", "1.1"]
    assert {t.get_fontsize() for t in ax.get_xticklabels() + ax.get_yticklabels()} == {7}
    bar = ax.figure.axes[-1]
    assert bar.get_ylabel() == "GBS" and ax.get_title() == "GBS (full graph)"
    ax.figure.savefig(tmp_path / "gbs.png", dpi=80)
    assert (tmp_path / "gbs.png").stat().st_size > 0


def test_options_set_titles_ticks_range_and_format():
    ax = plot_similarity_heatmap(_gbs_like(), None, 0.0, 1.0, xlabel="model B", ylabel="model A",
                                 tick_size=11, tick_rotation=45, short_names=False, fmt=".2f")
    assert ax.images[0].get_clim() == (0.0, 1.0)  # explicit ends respected (positional, as before)
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("model B", "model A")
    assert _texts(ax.get_xticklabels()) == NAMES and _texts(ax.get_yticklabels()) == NAMES
    assert {t.get_fontsize() for t in ax.get_xticklabels() + ax.get_yticklabels()} == {11}
    assert {t.get_rotation() for t in ax.get_xticklabels()} == {45}
    assert _texts(ax.texts)[:3] == ["1.00", "0.98", "0.95"]  # format(0.955, ".2f") rounds the binary 0.95499…
    # one end given: the other still fits the data
    assert plot_similarity_heatmap(_gbs_like(), vmin=0.9).images[0].get_clim() == (0.9, 1.0)


def test_axis_titles_default_to_the_frames_own_names():
    M = _gbs_like().rename_axis(index="seed 0", columns="seed 1")
    ax = plot_similarity_heatmap(M)
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("seed 1", "seed 0")
    bare = pd.DataFrame(np.eye(2))
    ax = plot_similarity_heatmap(bare)
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("layer", "layer")
    assert ax.figure.axes[-1].get_ylabel() == ""  # no measure in attrs: an unlabelled colour bar


def test_annotation_follows_the_cell_count_and_skips_masked_cells():
    def matrix(n):
        return pd.DataFrame(np.linspace(0, 1, n * n).reshape(n, n))

    assert len(plot_similarity_heatmap(matrix(12)).texts) == 144
    assert len(plot_similarity_heatmap(matrix(13)).texts) == 0
    assert len(plot_similarity_heatmap(matrix(13), annotate=True).texts) == 169
    assert len(plot_similarity_heatmap(matrix(3), annotate=False).texts) == 0
    ax = plot_similarity_heatmap(_gbs_like(), half=True)  # the upper triangle is hidden and unwritten
    assert _texts(ax.texts) == ["1.000", "0.980", "1.000", "0.955", "0.970", "1.000"]
    assert ax.images[0].get_clim() == (0.955, 1.0)


def test_annotations_stay_readable_on_dark_and_light_cells():
    ax = plot_similarity_heatmap(pd.DataFrame([[0.0, 1.0]]), cmap="gray")  # black cell, white cell
    assert [t.get_color() for t in ax.texts] == ["white", "black"]


def test_a_reversed_range_is_refused_naming_the_arguments():
    with pytest.raises(ValueError, match="vmin=1 lies above vmax=0.5"):
        plot_similarity_heatmap(_gbs_like(), vmin=1.0, vmax=0.5)

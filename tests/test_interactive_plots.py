"""The plotly backend (repgraph.plotting_interactive), read from each figure's JSON
(``fig.to_dict()``): the traces hold the result's values, the hover templates and customdata name
the layers and the values, the axis titles and the colour range are those of the matplotlib plots
they mirror. Without plotly, the import error says how to install it."""
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import repgraph as rg

plotly = pytest.importorskip("plotly")


def _similarity():
    M = pd.DataFrame([[1.0, 0.97, 0.95], [0.97, 1.0, 0.99], [0.95, 0.99, 1.0]],
                     index=pd.Index(["layer1.0", "layer2.0", "layer3.0"], name="seed 0"),
                     columns=pd.Index(["layer1.0", "layer2.0", "layer3.0"], name="seed 1"))
    M.attrs.update(measure="CKA", estimator="biased HSIC")
    return M


def test_heatmap_traces_hover_axes_and_colour_range():
    fig = rg.interactive_heatmap(_similarity())
    assert isinstance(fig, plotly.graph_objects.Figure)
    (trace,) = fig.to_dict()["data"]
    assert trace["type"] == "heatmap"
    assert list(trace["x"]) == list(trace["y"]) == ["layer1.0", "layer2.0", "layer3.0"]
    np.testing.assert_array_equal(np.array(trace["z"], dtype=float), _similarity().to_numpy())
    assert (trace["zmin"], trace["zmax"]) == (0.95, 1.0)  # fitted to the data
    assert trace["hovertemplate"] == "seed 0: %{y}<br>seed 1: %{x}<br>CKA: %{z:.4f}<extra></extra>"
    assert trace["colorbar"]["title"]["text"] == "CKA"
    layout = fig.to_dict()["layout"]
    assert layout["xaxis"]["title"]["text"] == "seed 1" and layout["yaxis"]["title"]["text"] == "seed 0"
    assert layout["xaxis"]["type"] == "category" and layout["title"]["text"] == "CKA (biased HSIC)"


def test_heatmap_options_and_the_analyzers_placeholder_names():
    M = rg.cka_matrix({"a": np.eye(6)[:, :3], "b": np.arange(18.0).reshape(6, 3) ** 2}, progress=False)
    fig = rg.interactive_heatmap(M, vmin=0, vmax=1, half=True, xlabel="model B")
    trace, layout = fig.to_dict()["data"][0], fig.to_dict()["layout"]
    assert (trace["zmin"], trace["zmax"]) == (0.0, 1.0)
    assert trace["z"][0][1] is None and trace["z"][1][0] == pytest.approx(M.loc["b", "a"])  # upper triangle left out
    assert layout["xaxis"]["title"]["text"] == "model B" and layout["yaxis"]["title"]["text"] == "layer"
    same = rg.interactive_heatmap(M).to_dict()  # both titles "layer" ("layer2" is a placeholder): told apart
    assert same["data"][0]["hovertemplate"].startswith("layer (row): %{y}<br>layer (column): %{x}<br>CKA: ")
    with pytest.raises(ValueError, match="vmin=2 lies above vmax=1"):
        rg.interactive_heatmap(M, vmin=2, vmax=1)
    with pytest.raises(TypeError, match="matrix must be a DataFrame"):
        rg.interactive_heatmap(M.to_numpy())


def _curve(shift=0.0):
    return pd.DataFrame({"layer": ["layer1.0", "layer2.0", "layer3.0"], "depth": [0, 1, 2],
                         "modularity": [0.1 + shift, 0.3 + shift, 0.6 + shift], "std": [0.0, 0.02, 0.05],
                         "n_samples": 100})


def test_curve_traces_hover_and_std_band():
    fig = rg.interactive_curve({"seed 0": _curve(), "seed 1": _curve(0.05)})
    data = fig.to_dict()["data"]
    assert [t.get("fill") for t in data] == ["toself", None, "toself", None]  # each band before its line
    band, line = data[0], data[1]
    np.testing.assert_allclose(band["y"], [0.1, 0.32, 0.65, 0.55, 0.28, 0.1])  # q + std, then q - std reversed
    assert band["hoverinfo"] == "skip" and band["showlegend"] is False
    assert list(line["x"]) == [0, 1, 2] and list(line["y"]) == [0.1, 0.3, 0.6] and line["name"] == "seed 0"
    assert [list(row) for row in line["customdata"]] == [["layer1.0", 0.0], ["layer2.0", 0.02], ["layer3.0", 0.05]]
    assert line["hovertemplate"] == ("layer: %{customdata[0]}<br>depth: %{x}<br>modularity: %{y:.4f}"
                                     "<br>std: %{customdata[1]:.4f}<extra>seed 0</extra>")
    assert data[3]["name"] == "seed 1" and list(data[3]["y"]) == pytest.approx([0.15, 0.35, 0.65])
    layout = fig.to_dict()["layout"]
    assert layout["xaxis"]["title"]["text"] == "layer (execution order)"
    assert list(layout["xaxis"]["ticktext"]) == ["1.0", "2.0", "3.0"] and list(layout["xaxis"]["tickvals"]) == [0, 1, 2]
    assert layout["yaxis"]["title"]["text"] == "modularity Q of the class partition"


def test_curve_without_std_and_errors():
    bare = _curve().drop(columns="std")
    (line,) = rg.interactive_curve([bare]).to_dict()["data"]  # no band without a std
    assert line["name"] == "run 0" and [row[1] for row in line["customdata"]] == [None, None, None]
    assert len(rg.interactive_curve(_curve(), show_std=False).data) == 1
    with pytest.raises(ValueError, match="lacks column"):
        rg.interactive_curve(bare.drop(columns="depth"))
    with pytest.raises(ValueError, match="interactive_curve needs at least one curve"):
        rg.interactive_curve([])


def _redundancy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 6, 8))
    acts = {"b0:input": x, "b0": x, "b1:input": x, "b1": -x, "b2:input": -x, "b2": 0.5 * x - x}
    return rg.layer_redundancy(acts, n_max=2, progress=False)


def test_redundancy_heatmap_values_ranks_and_hover():
    table = _redundancy()
    fig = rg.interactive_redundancy(table, criteria=["block_influence", "angular_distance_2", "cka_in_out"])
    (trace,) = fig.to_dict()["data"]
    assert list(trace["x"]) == ["b0", "b1", "b2"] and list(trace["y"]) == ["Block Influence", "angular n=2",
                                                                           "CKA in/out"]
    values = np.array(trace["customdata"], dtype=float)
    np.testing.assert_allclose(values[0], table["block_influence"], atol=1e-12)
    np.testing.assert_allclose(values[2], table["cka_in_out"], atol=1e-12)
    assert trace["customdata"][1][2] is None and trace["z"][1][2] is None  # the span past the last block
    assert trace["z"][0][0] == 1.0  # b0 (identity) has the lowest BI: the most redundant
    assert (trace["zmin"], trace["zmax"]) == (0.0, 1.0)
    assert trace["hovertemplate"].startswith("block: %{x}<br>criterion: %{y}<br>value: %{customdata:.4g}")
    assert trace["text"][0][1] == f"{table['block_influence'][1]:.3g}" and trace["text"][1][2] == ""
    layout = fig.to_dict()["layout"]
    assert layout["xaxis"]["title"]["text"] == "block" and layout["yaxis"]["title"]["text"] == "criterion"
    every = rg.interactive_redundancy(table).data[0]
    assert len(every.y) == len(table.attrs["redundant_when"])
    with pytest.raises(ValueError, match=r"Unknown criteria \['gbs'\]"):
        rg.interactive_redundancy(table, criteria=["gbs"])
    with pytest.raises(TypeError, match="table must be the DataFrame returned by layer_redundancy"):
        rg.interactive_redundancy(_similarity())


def test_imports_plotly_only_when_drawing_and_says_how_to_install_it():
    code = ("import sys, builtins\nimport repgraph.plotting_interactive as pi\n"
            "assert 'plotly' not in sys.modules\n"
            "real = builtins.__import__\n"
            "def no_plotly(name, *args, **kwargs):\n"
            "    if name.startswith('plotly'):\n"
            "        raise ImportError('No module named ' + repr(name))\n"
            "    return real(name, *args, **kwargs)\n"
            "builtins.__import__ = no_plotly\n"
            "import pandas as pd\n"
            "try:\n"
            "    pi.interactive_heatmap(pd.DataFrame([[1.0]]))\n"
            "except ImportError as error:\n"
            "    print(error)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "pip install plotly" in out and "repgraph[plotly]" in out

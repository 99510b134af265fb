import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from repgraph.cli import main
from repgraph.models.checkpoint import SHIPPED_CHECKPOINT  # noqa: E402
from repgraph.plotting import plot_modularity_curve  # noqa: E402


def test_plot_modularity_curve_returns_labelled_axes():
    a = pd.DataFrame({"layer": ["conv1", "layer1.0"], "depth": [0, 1], "modularity": [0.2, 0.5], "std": [0.01, 0.02]})
    ax = plot_modularity_curve({"trained": a, "untrained": a.assign(modularity=[0.2, 0.1])})
    assert len(ax.lines) == 2 and ax.get_ylabel() and ax.get_xlabel()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["conv1", "1.0"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["trained", "untrained"]
    plt.close("all")
    with pytest.raises(ValueError, match="lacks column"):
        plot_modularity_curve(pd.DataFrame({"x": [1]}))


def test_layers_command(capsys):
    assert main(["layers", "--model", "resnet56", "--only-preset"]) == 0
    out = capsys.readouterr().out
    assert "layer3.8" in out and "conv1" in out


@pytest.mark.skipif(not SHIPPED_CHECKPOINT.is_file(), reason="shipped checkpoint absent")
def test_demo_on_the_shipped_checkpoint(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    table = pd.read_csv(tmp_path / "modularity.csv")
    assert set(table["model"]) == {"trained", "untrained"}
    assert (tmp_path / "modularity.png").stat().st_size > 10_000
    trained = table[table["model"] == "trained"]["modularity"].to_numpy()
    untrained = table[table["model"] == "untrained"]["modularity"].to_numpy()
    assert len(trained) == 10  # stem conv + 9 blocks of ResNet-20
    assert trained[-1] > trained[0]  # rises with depth
    assert trained[-1] > untrained[-1] + 0.05
    assert "test accuracy 0.9" in out and "plateau" in out
    assert not list(tmp_path.glob("*.part"))


def test_cli_reports_bad_input(tmp_path, capsys):
    for argv in (["demo", "--out", str(tmp_path), "--k", "0", "--no-progress"], ["layers", "--size", "0"]):
        with pytest.raises(SystemExit) as exit_:  # refused when parsed, before any work
            main(argv)
        assert exit_.value.code == 2 and "must be an integer >= 1, got '0'" in capsys.readouterr().err
    assert main(["layers", "--model", "resnet21"]) == 2
    assert "Unknown model 'resnet21'" in capsys.readouterr().err
    assert main(["prune", "--method", "filters", "--criterion", "hrnak", "--out", str(tmp_path),
                 "--finetune-epochs", "0", "--no-progress"]) == 2
    assert "Unknown filter criterion 'hrnak'" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse's own error for a preset that does not exist
        main(["layers", "--preset", "everything"])
    assert "invalid choice" in capsys.readouterr().err


def test_plot_similarity_heatmap():
    import numpy as np

    from repgraph.plotting import plot_similarity_heatmap
    M = pd.DataFrame(np.eye(3), index=pd.Index(["conv1", "layer1.0", "layer1.1"], name="layer"),
                     columns=pd.Index(["conv1", "layer1.0", "layer1.1"], name="layer2"))
    M.attrs.update({"measure": "CKA", "estimator": "biased HSIC"})
    ax = plot_similarity_heatmap(M, half=True)
    shown = ax.images[0].get_array()
    assert np.ma.is_masked(shown[0, 2]) or np.isnan(shown[0, 2])  # upper triangle hidden
    assert [t.get_text() for t in ax.get_yticklabels()] == ["conv1", "1.0", "1.1"]
    assert "CKA" in ax.get_title() and ax.get_xlabel() == "layer"  # the "layer2" placeholder reads "layer"
    plt.close("all")
    with pytest.raises(ValueError, match="square"):
        plot_similarity_heatmap(M.iloc[:2], half=True)


@pytest.mark.skipif(not SHIPPED_CHECKPOINT.is_file(), reason="shipped checkpoint absent")
def test_prune_command_removes_plateau_blocks(tmp_path, capsys):
    assert main(["prune", "--out", str(tmp_path), "--finetune-epochs", "1", "--no-progress"]) == 0
    row = pd.read_csv(tmp_path / "prune.csv").iloc[0]
    assert row["params_after"] < row["params_before"] and row["flops_after"] < row["flops_before"]
    assert "plateau blocks" in row["name"]
    assert "after 1 fine-tuning epochs" in capsys.readouterr().out

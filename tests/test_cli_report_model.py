"""``repgraph report --model PATH --data SOURCE`` (issue 23, A3): the report of a model of one's own.

Every number read back from the page is compared with the library calls made here, on the same
model and on data built here (not through the command line's ``--data`` reader): the modularity
curve (``capture_activations`` + ``modularity_curve``) and the filter criteria
(``layer_filter_report``). The layer lists are written out by hand for models whose layers are
known (a SmallCNN's two convs, three conv groups, GPT-2's three blocks).
"""
from collections import OrderedDict
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import repgraph as rg
from repgraph.cli import main
from repgraph.datasets import digits
from repgraph.models import small_cnn

K, BATCH = 3, 270  # the command's defaults: --k, --batch-size


class _Tables(HTMLParser):
    """The page's tables, each under the text of the <h2> before it, as lists of rows of cell texts."""

    def __init__(self):
        super().__init__()
        self.tables, self.heading, self._cell, self._in_h2 = {}, None, None, False

    def handle_starttag(self, tag, attrs):
        if tag == "h2":
            self._in_h2, self.heading = True, ""
        elif tag == "table":
            self.tables[self.heading] = []
        elif tag == "tr":
            self.tables[self.heading].append([])
        elif tag in ("td", "th"):
            self._cell = ""

    def handle_endtag(self, tag):
        if tag == "h2":
            self._in_h2 = False
        elif tag in ("td", "th"):
            self.tables[self.heading][-1].append(self._cell.strip())
            self._cell = None

    def handle_data(self, data):
        if self._in_h2:
            self.heading += data
        elif self._cell is not None:
            self._cell += data


def _page(path):
    """``(tables, text)``: the page's tables as DataFrames (the first column their index) by heading."""
    parser = _Tables()
    text = path.read_text(encoding="utf-8")
    parser.feed(text)
    frames = {}
    for heading, rows in parser.tables.items():
        header, *body = rows
        frames[heading] = pd.DataFrame([r[1:] for r in body], index=[r[0] for r in body], columns=header[1:])
    return frames, text


def _expected_curve(model, X, y, layers):
    acts = rg.capture_activations(model, (X, y), layers=layers, progress=False)
    return rg.modularity_curve(acts, k=K, batch_size=min(BATCH, len(X)), progress=False)


def _assert_curve(table, expected):
    assert table["layer"].tolist() == expected["layer"].tolist()
    np.testing.assert_allclose(table["modularity"].astype(float), expected["modularity"], atol=5.1e-5, rtol=0)
    np.testing.assert_allclose(table["std"].astype(float), expected["std"], atol=5.1e-5, rtol=0)


@pytest.fixture
def saved_cnn(tmp_path):
    torch.manual_seed(0)
    model = small_cnn(num_classes=10, in_channels=1).eval()
    torch.save(model, tmp_path / "cnn.pt")
    return model, tmp_path / "cnn.pt"


def test_report_of_a_pickled_cnn_on_digits_holds_the_library_numbers(saved_cnn, tmp_path, capsys):
    model, path = saved_cnn
    out = tmp_path / "run"
    argv = ["report", "--model", str(path), "--trust-pickle", "--data", "digits", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    assert f"Wrote {out / 'report.html'}" in capsys.readouterr().out
    tables, text = _page(out / "report.html")
    test = digits("test", size=16, seed=0)  # --size 16 and --seed 0 by default
    X, y = test.tensors
    _assert_curve(tables["Modularity per layer"], _expected_curve(model, X, y, ["conv1", "conv2"]))
    # the filters: those of relu1, the first ReLU after a conv, over the first 128 digits
    criteria = rg.layer_filter_report(model, (X, y), "relu1", max_samples=128, progress=False)
    shown = tables["Filter criteria of relu1"]
    assert shown.columns.tolist() == criteria.columns.tolist() and len(shown) == 16
    for column in ("hrank", "chip", "l1", "cf_local", "closeness"):
        np.testing.assert_allclose(shown[column].astype(float), criteria[column], atol=5.1e-5, rtol=0)
    assert shown["cf_pruned"].tolist() == [str(v) for v in criteria["cf_pruned"]]
    assert text.count('src="data:image/png;base64,') == 3
    assert sorted(p.name for p in out.iterdir()) == ["filters.png", "modularity.png", "report.html",
                                                     "similarity.png"]
    params = tables["Parameters"]["value"]
    assert (params["model"], params["data"], params["samples"]) == (str(path), "digits", str(len(X)))
    assert params["layers"] == "conv1, conv2" and params["filter layer"] == "relu1"


def test_report_reads_the_layers_the_other_commands_read_on_a_tensors_file(tmp_path):
    """Three conv groups (the "modularity" preset's convs, named as their groups, as demo and prune
    name them) on a ``{'X': X, 'y': y}`` file."""
    def group(c_in, c_out, stride=1):
        return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU())

    torch.manual_seed(0)
    model = nn.Sequential(OrderedDict(
        features=nn.Sequential(group(1, 4), group(4, 4), group(4, 8, 2)),
        head=nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3)))).eval()
    X, y = torch.randn(30, 1, 8, 8), torch.arange(30) % 3
    torch.save(model, tmp_path / "model.pt")
    torch.save({"X": X, "y": y}, tmp_path / "data.pt")
    common = ["--model", str(tmp_path / "model.pt"), "--trust-pickle", "--data", str(tmp_path / "data.pt"),
              "--no-progress"]
    assert main(["report", *common, "--out", str(tmp_path / "report")]) == 0
    assert main(["demo", *common, "--out", str(tmp_path / "demo")]) == 0
    tables, _ = _page(tmp_path / "report" / "report.html")
    expected = _expected_curve(model, X, y, ["features.0", "features.1", "features.2"])
    _assert_curve(tables["Modularity per layer"], expected)
    assert pd.read_csv(tmp_path / "demo" / "modularity.csv")["layer"].tolist() == expected["layer"].tolist()
    assert "Filter criteria of features.0.2" in tables  # the first group's ReLU


def test_report_of_a_hugging_face_folder_on_a_text_file(tmp_path):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=3, n_embd=16, n_head=2, vocab_size=256, n_positions=64,
                                     bos_token_id=0, eos_token_id=0)
    model = transformers.GPT2LMHeadModel(config).eval()
    model.save_pretrained(tmp_path / "gpt")
    text = b"repgraph reads the layers of a model as graphs of its samples. " * 30
    (tmp_path / "corpus.txt").write_bytes(text)
    out = tmp_path / "run"
    assert main(["report", "--model", str(tmp_path / "gpt"), "--data", f"text:{tmp_path / 'corpus.txt'}",
                 "--out", str(out), "--no-progress"]) == 0
    tokens = torch.tensor(list(text))
    n = len(text) // 65
    windows = tokens[:n * 65].reshape(n, 65)  # 64 tokens, labelled with the byte that follows
    tables, page = _page(out / "report.html")
    # architectures ["GPT2LMHeadModel"] names no ...ForCausalLM class, so the folder loads as
    # AutoModel: the GPT2Model inside, whose blocks are h.0, h.1, h.2
    _assert_curve(tables["Modularity per layer"],
                  _expected_curve(model.transformer, windows[:, :64], windows[:, 64], ["h.0", "h.1", "h.2"]))
    # a transformer has no conv filters: the page says so instead of a filter section
    assert "no filters to study" in page and not any(h.startswith("Filter criteria") for h in tables)
    assert page.count('src="data:image/png;base64,') == 2
    assert sorted(p.name for p in out.iterdir()) == ["modularity.png", "report.html", "similarity.png"]


def _error(argv, capsys):
    code = main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


def test_report_refuses_bad_models_and_data_naming_the_option(saved_cnn, tmp_path, capsys):
    model, path = saved_cnn
    out = tmp_path / "out"
    text = tmp_path / "corpus.txt"
    text.write_bytes(b"abc" * 100)
    cases = [
        (["--model", str(tmp_path / "missing.pt"), "--trust-pickle", "--data", "digits"],
         ["--model", "missing.pt", "neither", "existing file or folder"]),
        (["--model", "vgg11", "--data", "digits"], ["--model 'vgg11'", "resnet20"]),
        (["--model", str(path), "--data", "digits"], ["--trust-pickle"]),
        (["--model", str(path), "--trust-pickle"], ["needs --data"]),
        (["--model", str(path), "--trust-pickle", "--data", f"text:{text}"],
         [f"--data text:{text}", "(64,) torch.int64", "expects images (N, 1, H, W) of floats"]),
        (["--model", str(path), "--trust-pickle", "--data", "digits", "--store", str(tmp_path / "s")],
         ["--store apply to the digits ResNet-20 only"]),
        (["--data", "digits"], ["--data goes with --model"]),
    ]
    for options, words in cases:
        code, err = _error(["report", *options, "--out", str(out), "--no-progress"], capsys)
        assert code == 2 and err.startswith("repgraph report: error: "), options
        assert all(w in err for w in words), (options, err)
    assert not out.exists()  # nothing was written by a refused run


def test_a_hugging_face_model_refuses_image_data_naming_its_token_ids(tmp_path, capsys):
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=300, n_positions=64,
                                     bos_token_id=0, eos_token_id=0)
    transformers.GPT2LMHeadModel(config).save_pretrained(tmp_path / "gpt")
    code, err = _error(["report", "--model", str(tmp_path / "gpt"), "--data", "digits", "--out",
                        str(tmp_path / "out"), "--no-progress"], capsys)
    assert code == 2 and "--data digits" in err and "expects token ids (N, L): integers below 300" in err


def test_report_keeps_runs_apart(saved_cnn, tmp_path, monkeypatch, capsys):
    _, path = saved_cnn
    argv = ["report", "--model", str(path), "--trust-pickle", "--data", "digits", "--size", "8", "--no-progress"]
    out = tmp_path / "mine"
    assert main([*argv, "--out", str(out)]) == 0
    before = (out / "report.html").stat().st_mtime_ns, (out / "report.html").read_bytes()
    code, err = _error([*argv, "--out", str(out)], capsys)
    assert code == 2 and "--out" in err and "already holds files" in err and "--overwrite" in err
    assert ((out / "report.html").stat().st_mtime_ns, (out / "report.html").read_bytes()) == before
    assert main([*argv, "--out", str(out), "--overwrite"]) == 0
    assert (out / "report.html").stat().st_mtime_ns != before[0]  # written anew
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 0 and main(argv) == 0
    runs = sorted((tmp_path / "results" / "report").iterdir())
    assert len(runs) == 2 and all((r / "report.html").is_file() for r in runs)


def test_report_help_offers_the_user_model_options(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["report", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert exit_.value.code == 0
    assert "--model MODEL a model of your own" in shown and "--trust-pickle" in shown and "--data DATA" in shown
    assert "--overwrite" in shown


def test_the_filter_layer_is_the_first_relu_on_square_conv_maps():
    from repgraph.models import cnn1d
    from repgraph.workflows.user_model import filter_layer

    torch.manual_seed(0)
    assert filter_layer(small_cnn(num_classes=10, in_channels=1).eval(), torch.zeros(1, 1, 16, 16)) == "relu1"
    # a ReLU before any conv, then one on non-square maps (birth points need square ones), then one on square maps
    model = nn.Sequential(nn.ReLU(), nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.ReLU())
    assert filter_layer(model, torch.zeros(1, 1, 8, 6)) == "4"
    assert filter_layer(cnn1d(num_classes=10, in_channels=1).eval(), torch.zeros(1, 1, 40)) is None  # 1-D maps

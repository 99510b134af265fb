import re
import shutil
import subprocess
import tempfile

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from repgraph.cli import main
from repgraph.models.checkpoint import SHIPPED_CHECKPOINT  # noqa: E402
from repgraph.report import write_report  # noqa: E402

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _chromium():
    """Debian's headless Chromium (``make test`` installs it where it can); the test skips without it."""
    path = shutil.which("chromium")
    if path is None:
        pytest.skip("headless Chromium is not installed (make test installs it where apt-get is allowed)")
    return path


def _render(chromium, page, screenshot=None):
    profile = tempfile.mkdtemp()
    base = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}"]
    dom = subprocess.run(base + ["--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    if screenshot is not None:
        subprocess.run(base + ["--window-size=1200,2600", f"--screenshot={screenshot}", page.as_uri()],
                       capture_output=True, timeout=120)
    shutil.rmtree(profile, ignore_errors=True)
    return dom


def test_write_report_is_self_contained(tmp_path):
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    page = write_report(tmp_path / "r.html", "t", [("a figure", fig), ("a table", pd.DataFrame({"x": [1.5]})),
                                                   ("a note", "<b>escaped</b>")], {"k": 3})
    plt.close(fig)
    text = page.read_text()
    assert text.count("data:image/png;base64,") == 1 and "&lt;b&gt;escaped" in text
    assert "torch" in text and "<td>3</td>" in text
    assert not list(tmp_path.glob("*.part"))


@pytest.mark.skipif(not SHIPPED_CHECKPOINT.is_file(), reason="shipped checkpoint absent")
def test_report_renders_in_headless_chromium_with_every_image_loaded(tmp_path):
    chromium = _chromium()
    assert main(["report", "--out", str(tmp_path), "--no-progress"]) == 0
    page = tmp_path / "report.html"
    n_images = page.read_text().count("<img ")
    assert n_images == 3  # modularity curves, similarity heatmaps, filter graph + birth points
    dom = _render(chromium, page, screenshot=tmp_path / "report.png")
    loaded = re.search(r'data-images-loaded="(\d+)/(\d+)"', dom)
    assert loaded is not None, "the page's load handler did not run"
    assert loaded.groups() == (str(n_images), str(n_images))
    assert (tmp_path / "report.png").stat().st_size > 50_000

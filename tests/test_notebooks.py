"""The notebooks are committed executed at their full settings (so GitHub and the docs show their
figures), and every one still runs top to bottom on a fresh install with small settings."""
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
EXPECTED = {"01_modularity_curves", "02_gbs_vs_cka", "03_redundant_layers_and_pruning", "04_filters_and_topology",
            "05_mnist1d_dynamics", "06_transformer_layers", "07_similarity_benchmark"}


def outputs(nb):
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]


def progress_widgets(nb):
    """The widget outputs (tqdm.auto's bars), which a saved notebook shows as a frozen "0%"."""
    return [o for o in outputs(nb) if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]


def settings_line(nb) -> str:
    """What the setup cell printed about its settings (each notebook prints ``settings: ...``)."""
    text = "".join(o.get("text", "") for o in outputs(nb) if o.output_type == "stream")
    lines = [line for line in text.splitlines() if line.startswith("settings:")]
    assert len(lines) == 1, f"expected one 'settings:' line, got {lines}"
    return lines[0]


def test_every_notebook_is_there():
    missing = EXPECTED - {p.stem for p in NOTEBOOKS}
    assert not missing, f"notebooks missing: {sorted(missing)}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_committed_executed_at_full_settings(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code" and c.source.strip()]
    # one run, top to bottom: the cells were executed in order, each once
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1)), path.name
    assert settings_line(nb) == "settings: full", path.name
    assert not [o for o in outputs(nb) if o.output_type == "error"], path.name
    stderr = "".join(o.get("text", "") for o in outputs(nb) if o.output_type == "stream" and o.get("name") == "stderr")
    assert "Warning" not in stderr and "%|" not in stderr, f"{path.name} printed to stderr: {stderr[:300]}"
    assert not progress_widgets(nb), f"{path.name} saved progress-bar widgets (pass progress=False)"
    images = sum("image/png" in o.get("data", {}) for o in outputs(nb))
    assert images >= 2, f"{path.name} holds {images} figures"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes(path, tmp_path, monkeypatch):
    monkeypatch.setenv("REPGRAPH_NOTEBOOK_SMALL", "1")
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:  # a fresh copy: none of the committed outputs can pass for this run's
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    assert settings_line(nb) == "settings: small (CI)"
    errors = [o for o in outputs(nb) if o.output_type == "error"]
    assert not errors
    assert not progress_widgets(nb), f"{path.name} shows progress bars (pass progress=False)"
    images = sum("image/png" in o.get("data", {}) for o in outputs(nb))
    assert images >= 2, f"{path.name} drew {images} figures"

"""Every notebook runs top to bottom on a fresh install (small settings, outputs not saved)."""
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
EXPECTED = {"01_modularity_curves", "02_gbs_vs_cka", "03_redundant_layers_and_pruning", "04_filters_and_topology",
            "05_mnist1d_dynamics", "06_transformer_layers", "07_similarity_benchmark"}


def test_notebooks_are_committed_without_outputs():
    missing = EXPECTED - {p.stem for p in NOTEBOOKS}
    assert not missing, f"notebooks missing: {sorted(missing)}"
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        assert all(not cell.get("outputs") for cell in nb.cells if cell.cell_type == "code"), path.name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes(path, tmp_path, monkeypatch):
    monkeypatch.setenv("REPGRAPH_NOTEBOOK_SMALL", "1")
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    images = sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert images >= 2, f"{path.name} drew {images} figures"

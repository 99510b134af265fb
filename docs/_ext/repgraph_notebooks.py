"""Sphinx extension: the notebooks in ``notebooks/`` as example pages, without running them.

When the build starts, each notebook becomes a MyST Markdown page in ``docs/examples``
(git-ignored): its Markdown cells as they are, its code cells as highlighted code, and any saved
outputs (text and PNG images: the notebooks are committed executed at their full settings) after
their cell. The notebook itself is offered as a download. Nothing is executed: the test suite
checks the committed outputs and re-runs a copy of every notebook with small settings
(``tests/test_notebooks.py``), and the docs build stays fast. Only the
standard library is needed (no pandoc, no Jupyter).
"""
from __future__ import annotations

import base64
import json
import re
import shutil
from pathlib import Path

OUT = "examples"
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _text(value) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def _fence(body: str, language: str) -> str:
    ticks = "`" * max(3, max((len(m) for m in re.findall(r"`+", body)), default=0) + 1)
    return f"{ticks}{language}\n{body.rstrip()}\n{ticks}\n"


def _lexer() -> str:
    """``ipython3`` where IPython's Pygments lexer is installed (it knows ``%matplotlib``), else python."""
    try:
        from pygments.lexers import get_lexer_by_name

        get_lexer_by_name("ipython3")
        return "ipython3"
    except Exception:  # noqa: BLE001
        return "python"


def _outputs(cell: dict, stem: str, folder: Path, counter: list[int]) -> list[str]:
    parts = []
    for output in cell.get("outputs", []):
        kind = output.get("output_type")
        if kind == "stream":
            parts.append(_fence(_ANSI.sub("", _text(output.get("text", ""))), "text"))
        elif kind == "error":
            parts.append(_fence(_ANSI.sub("", "\n".join(output.get("traceback", []))), "text"))
        elif kind in ("execute_result", "display_data"):
            data = output.get("data", {})
            if "image/png" in data:
                counter[0] += 1
                image = f"{stem}_{counter[0]}.png"
                (folder / image).write_bytes(base64.b64decode(_text(data["image/png"])))
                parts.append(f"![output {counter[0]}]({image})\n")
            elif "text/plain" in data:
                parts.append(_fence(_text(data["text/plain"]), "text"))
    return parts


def page(notebook: Path, folder: Path) -> str:
    """The MyST Markdown page of one notebook (PNG outputs are written into ``folder``)."""
    nb = json.loads(notebook.read_text())
    language = _lexer()
    note = (":::{note}\n"
            f"This page shows `notebooks/{notebook.name}` as committed: executed at its full settings, "
            "outputs saved (the test suite re-runs a copy with small settings). Download it: "
            f"{{download}}`{notebook.name} <{notebook.name}>`, and run it from `notebooks/` with "
            "`.venv/bin/pip install jupyterlab && .venv/bin/jupyter lab`.\n:::\n")
    parts, titled, counter = [], False, [0]
    for cell in nb.get("cells", []):
        source = _text(cell.get("source", ""))
        if cell.get("cell_type") == "markdown":
            if not titled:
                first, _, rest = source.partition("\n")
                if first.startswith("# "):
                    parts += [first + "\n", note, rest.strip() + "\n"]
                else:
                    parts += [f"# {notebook.stem}\n", note, source.strip() + "\n"]
                titled = True
            else:
                parts.append(source.strip() + "\n")
        elif cell.get("cell_type") == "code":
            if not titled:
                parts += [f"# {notebook.stem}\n", note]
                titled = True
            if source.strip():
                parts.append(_fence(source, language))
            parts += _outputs(cell, notebook.stem, folder, counter)
    return "\n".join(parts)


def _write(path: Path, data: bytes) -> None:
    """Write only when the bytes change, so an unchanged page is not read again by Sphinx."""
    if not path.is_file() or path.read_bytes() != data:
        path.write_bytes(data)


def generate(app) -> None:
    srcdir = Path(app.srcdir)
    notebooks = sorted((srcdir.parent / "notebooks").glob("*.ipynb"))
    folder = srcdir / OUT
    staging = folder.with_name(folder.name + ".new")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for notebook in notebooks:
        shutil.copyfile(notebook, staging / notebook.name)
        (staging / f"{notebook.stem}.md").write_text(page(notebook, staging))
    entries = "\n".join(nb.stem for nb in notebooks)
    (staging / "index.md").write_text(
        "# Examples\n\nThe notebooks in `notebooks/` with the outputs of their committed run at full "
        "settings. The tests re-run a copy of each one with small settings "
        "(`REPGRAPH_NOTEBOOK_SMALL=1`).\n\n"
        f"```{{toctree}}\n:maxdepth: 1\n\n{entries}\n```\n")
    folder.mkdir(parents=True, exist_ok=True)
    wanted = {p.name for p in staging.iterdir()}
    for stale in folder.iterdir():
        if stale.name not in wanted:
            stale.unlink()
    for new in staging.iterdir():
        _write(folder / new.name, new.read_bytes())
    shutil.rmtree(staging)


def setup(app):
    app.connect("builder-inited", generate)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}

"""Sphinx extension: the API pages, generated from ``repgraph.__all__`` when the build starts, so a
name added to the package cannot be missing from the documentation.

Each public name goes on the page of the subpackage it is exported from (``repgraph._WHERE``, else
the module that defines it); each page opens with the subpackage's summary and a table of its
names, then documents each one with autodoc (numpydoc renders the sections). The pages are written
to ``docs/api`` (git-ignored), only when their text changes. One more page documents every public
function of ``repgraph.plotting``, the matplotlib figures, which are a module of their own.
"""
from __future__ import annotations

import importlib
import inspect
from pathlib import Path

OUT = "api"


def _group(name: str, obj, where: dict[str, str]) -> str:
    """The subpackage a public name belongs to: ``analyzers``, ``pruning``, ``_config``, ..."""
    module = where.get(name)
    if module is not None:
        return module.lstrip(".").split(".")[0]
    defined = getattr(obj, "__module__", "") or ""
    parts = defined.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "repgraph" else "other"


def _directive(name: str, obj) -> str:
    if inspect.isclass(obj):
        return f".. autoclass:: repgraph.{name}\n   :members:\n"
    if callable(obj):
        return f".. autofunction:: repgraph.{name}\n"
    return f".. autodata:: repgraph.{name}\n"


def _summary(module: str) -> str:
    """First paragraph of a subpackage's docstring, as plain text (one line)."""
    try:
        doc = inspect.getdoc(importlib.import_module(module)) or ""
    except Exception:  # noqa: BLE001 — a page title is not worth failing the build for
        doc = ""
    return " ".join(doc.split("\n\n")[0].split())


TITLES = {"_config": "Configuration", "execution": "Execution", "hooks": "Capture (hooks)",
          "builders": "Graph builders", "analyzers": "Analyzers", "pruning": "Pruning",
          "workflows": "Workflows", "distributed": "Distributed (Dask)",
          "plotting_interactive": "Interactive plots (plotly)"}


def pages(package) -> dict[str, str]:
    """``{file name: reStructuredText}`` of the API pages of ``package`` (``repgraph``)."""
    where = getattr(package, "_WHERE", {})
    groups: dict[str, list[tuple[str, object]]] = {}
    for name in package.__all__:
        obj = getattr(package, name)
        groups.setdefault(_group(name, obj, where), []).append((name, obj))
    out = {}
    index = ["API reference", "=============", "",
             f"Every public name of ``repgraph`` ({len(package.__all__)} names, ``repgraph.__all__``), "
             "importable as ``import repgraph as rg; rg.<name>``. The pages are generated from "
             "``repgraph.__all__`` at build time, grouped by the subpackage each name lives in.", "",
             ".. toctree::", "   :maxdepth: 1", ""]
    for group in groups:
        index.append(f"   {group.lstrip('_')}")
    index.append("   plotting")  # the matplotlib figures: a module of its own, not in __all__
    index += ["", "All names", "---------", "", ".. currentmodule:: repgraph", "", ".. autosummary::", ""]
    index += [f"   {name}" for name in sorted(package.__all__, key=str.lower)]
    index.append("")
    for group, members in groups.items():
        module = f"repgraph.{group}"
        # a private module (``_config``) is no import path to show: its names are imported from repgraph
        title = TITLES.get(group, group) if group.startswith("_") else f"{TITLES.get(group, group)}: ``{module}``"
        lines = [title, "=" * len(title), ""]
        summary = _summary(module)
        if summary:
            lines += [summary, ""]
        lines += [".. currentmodule:: repgraph", "", ".. autosummary::", ""]
        lines += [f"   {name}" for name, _ in members]
        lines.append("")
        for name, obj in members:
            lines += [_directive(name, obj), ""]
        out[f"{group.lstrip('_')}.rst"] = "\n".join(lines)
    plots = plotting_functions()
    title = "Plots: ``repgraph.plotting``"
    lines = [title, "=" * len(title), "", _summary("repgraph.plotting"), "",
             "Import the module: ``from repgraph import plotting``.", "",
             ".. currentmodule:: repgraph.plotting", "", ".. autosummary::", ""]
    lines += [f"   {name}" for name in plots] + [""]
    lines += [f".. autofunction:: repgraph.plotting.{name}\n" for name in plots]
    out["plotting.rst"] = "\n".join(lines)
    out["index.rst"] = "\n".join(index)
    return out


def plotting_functions() -> list[str]:
    """The public functions that ``repgraph.plotting`` defines (matplotlib, not in ``repgraph.__all__``)."""
    module = importlib.import_module("repgraph.plotting")
    return [name for name, obj in vars(module).items() if inspect.isfunction(obj) and not name.startswith("_")
            and obj.__module__ == module.__name__]


def generate(app) -> None:
    import repgraph

    folder = Path(app.srcdir) / OUT
    folder.mkdir(parents=True, exist_ok=True)
    wanted = pages(repgraph)
    for stale in set(p.name for p in folder.glob("*.rst")) - set(wanted):
        (folder / stale).unlink()
    for name, text in wanted.items():
        path = folder / name
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)


def setup(app):
    app.connect("builder-inited", generate)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}

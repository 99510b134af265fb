"""Sphinx configuration of repgraph's documentation site: ``make docs`` builds it into
``docs/_build/html`` with warnings as errors.

Docstrings are numpydoc (``tests/test_docstrings.py`` enforces the sections), rendered by the
``numpydoc`` extension; the user guide is the README (MyST Markdown, ``guide.md``); the API pages
are generated at build time from ``repgraph.__all__`` (``_ext/repgraph_api.py``) and the notebooks
are rendered, without running them, as example pages (``_ext/repgraph_notebooks.py``).
"""
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))  # the checkout's repgraph, also when it is not installed
sys.path.insert(0, str(DOCS / "_ext"))

import repgraph  # noqa: E402

project = "repgraph"
author = "the repgraph developers"
copyright = "repgraph developers, MIT licence"
version = release = repgraph.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "numpydoc",
    "myst_parser",
    "repgraph_api",
    "repgraph_notebooks",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

# numpydoc renders the Parameters/Returns/Examples/References sections; the members of the two or
# three public classes are listed by autodoc (``:members:``) instead of numpydoc's autosummary
# tables, which would want a stub page per method.
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
autosummary_generate = False
autodoc_default_options = {"member-order": "bysource"}
autodoc_typehints = "signature"
autodoc_preserve_defaults = True

myst_enable_extensions = ["colon_fence"]
myst_heading_anchors = 3

html_theme = "alabaster"
html_title = f"repgraph {release}"
html_static_path = []
html_show_sourcelink = False  # no _sources/ copies: every page is built from files in this repository
html_copy_source = False
html_theme_options = {"description": "graph-theoretic analysis of neural-network representations",
                      "fixed_sidebar": False, "page_width": "1140px"}

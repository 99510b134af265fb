"""The documentation site builds with warnings as errors (as ``make docs`` does), documents every name
of ``repgraph.__all__`` on an API page, links only to files inside the built site, and renders in
headless Chromium (where ``chromium`` is installed: ``make test`` installs it where apt-get may run).

The build takes about 15 s; it skips, saying why, where Sphinx, numpydoc or myst-parser is missing
(the ``test`` and ``docs`` extras install them)."""
from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
import tempfile
import types
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

import repgraph

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _load_extension(name: str):
    spec = importlib.util.spec_from_file_location(name, DOCS / "_ext" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Page(HTMLParser):
    """The ids of documented objects and every href/src of one HTML page."""

    def __init__(self):
        super().__init__()
        self.objects: set[str] = set()
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "dt" and "sig-object" in (attrs.get("class") or "") and attrs.get("id"):
            self.objects.add(attrs["id"])
        for key in ("href", "src"):
            if attrs.get(key):
                self.links.append(attrs[key])


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    for module in ("sphinx", "numpydoc", "myst_parser"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed (pip install -c constraints.txt -e '.[docs]', or make docs)")
    out = tmp_path_factory.mktemp("docs")
    build = subprocess.run([sys.executable, "-m", "sphinx", "-E", "-b", "html", "-W", "--keep-going", "-q",
                            "-d", str(out / "doctrees"), str(DOCS), str(out / "html")],
                           cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, f"the docs build failed or warned:\n{build.stderr[-6000:]}"
    return out / "html"


def test_api_pages_are_generated_from_all():
    """The generator puts every exported name on a page, so a new name cannot be left out."""
    api = _load_extension("repgraph_api")

    def new_function():
        """A summary."""

    class NewClass:
        """A summary."""

    package = types.SimpleNamespace(__all__=["new_function", "NewClass", "unlisted"],
                                    _WHERE={"new_function": ".analyzers", "NewClass": ".pruning"},
                                    new_function=new_function, NewClass=NewClass, unlisted=new_function)
    pages = api.pages(package)
    # unlisted: not under repgraph; plotting: the module page, whatever the package exports
    assert set(pages) == {"index.rst", "analyzers.rst", "pruning.rst", "other.rst", "plotting.rst"}
    assert ".. autofunction:: repgraph.new_function" in pages["analyzers.rst"]
    assert ".. autoclass:: repgraph.NewClass" in pages["pruning.rst"]
    assert ".. autofunction:: repgraph.unlisted" in pages["other.rst"]
    real = api.pages(repgraph)
    text = "\n".join(real.values())
    missing = [n for n in repgraph.__all__ if not re.search(rf"^\.\. auto\w+:: repgraph\.{n}$", text, re.M)]
    assert not missing


def test_every_public_name_is_documented_on_an_api_page(site):
    documented = set()
    for path in (site / "api").glob("*.html"):
        documented |= _parse(path).objects
    missing = sorted(set(f"repgraph.{name}" for name in repgraph.__all__) - documented)
    assert not missing, f"names of repgraph.__all__ without an entry on an API page: {missing}"


def test_every_plot_function_is_documented(site):
    """repgraph.plotting is not in __all__ (``from repgraph import plotting``); its page has each of
    its public functions, found here from the module itself."""
    import inspect

    import repgraph.plotting as plotting

    functions = {f"repgraph.plotting.{n}" for n, f in vars(plotting).items()
                 if inspect.isfunction(f) and not n.startswith("_") and f.__module__ == plotting.__name__}
    assert "repgraph.plotting.plot_perplexity_change" in functions
    missing = sorted(functions - _parse(site / "api" / "plotting.html").objects)
    assert not missing, f"plot functions without an entry on api/plotting.html: {missing}"


def test_examples_and_guide_are_built(site):
    examples = sorted(p.stem for p in (site / "examples").glob("0*.html"))
    assert examples == sorted(p.stem for p in (ROOT / "notebooks").glob("*.ipynb"))
    for stem in examples:  # the committed outputs are on the page: every figure as an image file
        figures = [src for src in _parse(site / "examples" / f"{stem}.html").links if src.endswith(".png")]
        assert len(figures) >= 2, f"examples/{stem}.html shows {figures}"
    guide = (site / "guide.html").read_text(encoding="utf-8")

    def words(heading: str) -> str:
        return re.sub(r"\W+", " ", re.sub(r"<[^>]+>|&#\d+;|[`'’]", "", heading)).strip()

    built = {words(h) for h in re.findall(r"<h2>(.*?)</h2>", guide, re.S)}
    sections = [words(h) for h in re.findall(r"^## (.+)$", (ROOT / "README.md").read_text(), re.M)]
    assert sections and not [s for s in sections if s not in built], (sections, built)


def test_no_page_links_outside_the_site(site):
    """Every relative href/src resolves to a file of the built site; no file: URL, no absolute path,
    and no page cites a design document the repository does not hold."""
    bad = []
    for path in site.rglob("*.html"):
        for link in _parse(path).links:
            parts = urlsplit(link)
            if parts.scheme in ("http", "https", "mailto"):
                continue
            if parts.scheme or parts.netloc or parts.path.startswith("/"):
                bad.append(f"{path.relative_to(site)}: {link}")
                continue
            if not parts.path:  # a fragment of the same page
                continue
            target = (path.parent / unquote(parts.path)).resolve()
            if not target.is_relative_to(site.resolve()) or not target.exists():
                bad.append(f"{path.relative_to(site)}: {link}")
        if "DESIGN §" in path.read_text(encoding="utf-8"):
            bad.append(f"{path.relative_to(site)}: cites DESIGN §, which is not in the repository")
    assert not bad, "pages referencing files outside the site:\n" + "\n".join(bad[:30])


def test_sources_cite_no_design_document_outside_the_repository():
    texts = {p: p.read_text(encoding="utf-8") for p in [ROOT / "README.md", *sorted((ROOT / "repgraph").rglob("*.py"))]}
    citing = [str(p.relative_to(ROOT)) for p, text in texts.items() if re.search(r"DESIGN\s*§|\.\./shared", text)]
    assert not citing, f"these point at a DESIGN document or ../shared outside the repository: {citing}"
    assert "make docs" in repgraph.__doc__ and "docs/_build/html/index.html" in repgraph.__doc__


def test_api_page_renders_in_headless_chromium(site, tmp_path):
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("headless Chromium is not installed (make test installs it where apt-get is allowed)")
    from PIL import Image  # matplotlib's dependency

    page = site / "api" / "analyzers.html"
    shot = tmp_path / "api.png"
    profile = tempfile.mkdtemp()
    try:
        subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--window-size=1200,1600",
                        f"--screenshot={shot}", page.as_uri()], capture_output=True, timeout=120)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    assert shot.is_file(), "Chromium wrote no screenshot"
    image = Image.open(shot).convert("L")
    assert image.size == (1200, 1600)
    histogram = image.histogram()
    dark = sum(histogram[:128]) / (image.size[0] * image.size[1])  # text, code, table rules
    assert dark > 0.01, f"the API page renders (nearly) blank: {dark:.2%} dark pixels"
    assert sum(1 for count in histogram if count) > 32, "the screenshot has almost no distinct shades"

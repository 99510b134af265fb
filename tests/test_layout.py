"""The house rules that no other test sees: DESIGN §1's one-way imports, read from every module's
source (module-level and function-level imports alike), and an instant command line."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "repgraph"

# Which top-level parts of repgraph each part must never import (DESIGN §1): the store's format
# (storage) lies below everything that reads or writes stores; execution (runners, sources) below
# capture, builders and analyzers, which never import the Dask runner (distributed provides it and
# registers it with execution, as joblib's register_parallel_backend does); capture and builders
# know nothing of the analyses; analyzers are pure functions on arrays and never run a model;
# pruning consumes analyzer results; plotting (and its optional plotly backend,
# plotting_interactive, which draws with plotting's helpers) only reads results; nothing imports
# the CLI.
PLOTS = {"plotting", "plotting_interactive"}
ABOVE_EXECUTION = {"hooks", "builders", "analyzers", "pruning", "workflows", "report", "cli",
                   "distributed", "models", "datasets"} | PLOTS
FORBIDDEN = {
    "storage": ABOVE_EXECUTION | {"execution"},
    "execution": ABOVE_EXECUTION,
    "hooks": {"builders", "analyzers", "pruning", "workflows", "report", "cli", "distributed"} | PLOTS,
    "builders": {"hooks", "analyzers", "pruning", "workflows", "report", "cli", "distributed"} | PLOTS,
    "analyzers": {"hooks", "pruning", "workflows", "report", "cli", "distributed"} | PLOTS,
    "pruning": {"workflows", "report", "cli", "distributed"} | PLOTS,
    "workflows": {"cli", "distributed"},
    "plotting": {"hooks", "analyzers", "pruning", "workflows", "report", "cli", "distributed", "plotting_interactive"},
    "plotting_interactive": {"hooks", "analyzers", "pruning", "workflows", "report", "cli", "distributed"},
    "report": {"hooks", "builders", "analyzers", "pruning", "workflows", "cli", "distributed"} | PLOTS,
    "models": {"hooks", "builders", "analyzers", "pruning", "workflows", "report", "cli", "distributed"} | PLOTS,
    "datasets": {"hooks", "builders", "analyzers", "pruning", "workflows", "report", "cli", "distributed"} | PLOTS,
    "distributed": {"hooks", "builders", "analyzers", "pruning", "workflows", "report", "cli"} | PLOTS,
}
# The one allowed exception, as pandas' DataFrame.plot: a convenience method that imports plotting
# when it is called (analyzers/central_filters.py, CentralFilters.plot).
ALLOWED = {("analyzers/central_filters.py", "plotting")}
# The shared floor: top-level private modules that every part may import, private names included.
SHARED_FLOOR = {"_arrays", "_config", "_lazy", "_results", "_warnings"}


def _part(rel: str) -> str:
    """The top-level part of the module at ``rel`` (its path in repgraph)."""
    return rel.split("/")[0].removesuffix(".py")


def _imports(path: Path) -> list[tuple[list[str], bool]]:
    """The repgraph modules that ``path`` imports (absolute or relative imports), each as its path
    inside repgraph (``["distributed", "context"]``) and whether the import sits inside a function."""
    return _imports_in(path.read_text(), path.relative_to(PACKAGE).parent.parts)


def _imports_in(source: str, package: tuple) -> list[tuple[list[str], bool]]:
    """``_imports`` of the module text ``source`` lying in the folder ``package`` of repgraph."""
    tree = ast.parse(source)
    found = []

    def visit(node, lazy):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(package[:len(package) - (node.level - 1)])
                target = base + (node.module.split(".") if node.module else [])
                names = [target] if target else [[alias.name] for alias in node.names]
            elif node.module and node.module.split(".")[0] == "repgraph":
                rest = node.module.split(".")[1:]
                names = [rest] if rest else [[alias.name] for alias in node.names]
            else:
                names = []
            found.extend((parts, lazy) for parts in names if parts)
        elif isinstance(node, ast.Import):
            found.extend((a.name.split(".")[1:], lazy) for a in node.names
                         if a.name.startswith("repgraph.") and len(a.name.split(".")) > 1)
        inside = lazy or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        for child in ast.iter_child_nodes(node):
            visit(child, inside)

    visit(tree, False)
    return found


def _imported_parts(path: Path) -> set[str]:
    """The top-level repgraph parts that ``path`` imports."""
    return {parts[0] for parts, _ in _imports(path)}


MODULES = sorted(p for p in PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=[str(p.relative_to(PACKAGE)) for p in MODULES])
def test_imports_run_one_way(path):
    rel = str(path.relative_to(PACKAGE))
    bad = _violations(rel, _imports(path))
    assert not bad, f"{rel} ({_part(rel)}) imports {sorted(bad)}, against DESIGN §1's one-way imports"


def _violations(rel: str, imports) -> set[str]:
    """The imports (``_imports``) of the module ``rel`` (its path in repgraph) that break the rules;
    an import inside a function counts as one at the top."""
    forbidden = FORBIDDEN.get(_part(rel), set())
    return {".".join(target) for target, _ in imports
            if target[0] in forbidden and (rel, target[0]) not in ALLOWED}


def test_an_import_inside_a_function_breaks_the_rules_too():
    top = "from ..distributed.runner import ClusterRunner\n"
    lazy = "def f(client):\n    from ..distributed.runner import ClusterRunner\n"
    for source in (top, lazy):
        assert _violations("analyzers/modularity.py", _imports_in(source, ("analyzers",))) == {"distributed.runner"}
    assert _violations("distributed/runner.py", _imports_in("from ..execution.runner import resolved\n",
                                                             ("distributed",))) == set()


def test_the_active_client_context_imports_nothing_of_repgraph():
    # the premise of letting every floor use it
    assert _imported_parts(PACKAGE / "execution" / "context.py") == set()


# --- the import graph: no circles, no private names across subpackages ----------------------------
def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_graph(sources: dict[str, tuple[str, bool]]) -> dict[str, set[str]]:
    """Module -> the repgraph modules it imports (inside functions too), for ``sources`` = module
    name (``"analyzers.cka"``, ``""`` for the package root) -> (source text, is a package). A
    ``from package import name`` imports the submodule ``package.name`` when there is one; importing
    ``a.b.c`` also runs the package ``a.b`` (``a``'s ``__init__``), which counts as an edge."""
    graph = {}
    for module, (text, is_package) in sources.items():
        folder = tuple(module.split(".")) if is_package else tuple(module.split(".")[:-1])
        folder = tuple(p for p in folder if p)
        targets = set()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = list(folder[:len(folder) - (node.level - 1)])
                    target = base + (node.module.split(".") if node.module else [])
                elif node.module and node.module.split(".")[0] == "repgraph":
                    target = node.module.split(".")[1:]
                else:
                    continue
                for alias in node.names:
                    sub = ".".join(target + [alias.name])
                    targets.add(sub if sub in sources else ".".join(target))
            elif isinstance(node, ast.Import):
                targets |= {".".join(a.name.split(".")[1:]) for a in node.names if a.name.startswith("repgraph.")}
        for target in list(targets):
            parts = target.split(".")
            targets |= {".".join(parts[:i]) for i in range(1, len(parts))}  # the packages it runs
        graph[module] = {t for t in targets if t in sources and t and t != module
                         and not module.startswith(t + ".")}  # a package's own parents run first anyway
    return graph


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _package_sources() -> dict[str, tuple[str, bool]]:
    return {_module_name(p): (p.read_text(), p.name == "__init__.py") for p in MODULES}


def test_no_import_circles():
    circles = _circles(_import_graph(_package_sources()))
    assert circles == [], f"import circles: {circles}"


def test_the_circle_finder_finds_circles_through_packages_and_functions():
    # a checker that found nothing would pass every tree: show it finds a circle through a lazy
    # import and one through a package's __init__
    sources = {"a.x": ("from ..b.y import f\n", False), "b": ("", True),
               "b.y": ("def f():\n    from ..a.x import g\n", False), "c": ("from .d import h\n", True),
               "c.d": ("", False), "e": ("from ..c.d import h\n", False)}
    assert _circles(_import_graph(sources)) == [["a.x", "b.y"]]
    sources["c.d"] = ("from ..e import z\n", False)
    assert _circles(_import_graph(sources)) == [["a.x", "b.y"], ["c", "c.d", "e"]]


def _private_imports(graph_sources: dict[str, tuple[str, bool]]) -> list[str]:
    """``module: name from other`` for every name starting with ``_`` imported from a module of
    another subpackage (the shared floor's modules excepted)."""
    found = []
    for module, (text, is_package) in graph_sources.items():
        folder = tuple(p for p in (module.split(".") if is_package else module.split(".")[:-1]) if p)
        for node in ast.walk(ast.parse(text)):
            if not isinstance(node, ast.ImportFrom):
                continue
            if node.level:
                target = list(folder[:len(folder) - (node.level - 1)]) + (node.module.split(".") if node.module else [])
            elif node.module and node.module.split(".")[0] == "repgraph":
                target = node.module.split(".")[1:]
            else:
                continue
            if not target or target[0] in SHARED_FLOOR or target[0] == (folder[0] if folder else ""):
                continue
            found += [f"{module}: {alias.name} from {'.'.join(target)}" for alias in node.names
                      if alias.name.startswith("_") and not alias.name.startswith("__")]
    return found


def test_no_private_names_cross_subpackages():
    assert _private_imports(_package_sources()) == []


def test_the_private_import_finder_sees_them():
    sources = {"distributed.x": ("from ..analyzers.cka import _normalise, cka\nfrom .._arrays import _scale\n"
                                 "from .runner import _Deferred\n", False)}
    assert _private_imports(sources) == ["distributed.x: _normalise from analyzers.cka"]


def test_the_rule_checker_sees_relative_and_absolute_imports():
    # a checker that found nothing would pass every module: show it finds both forms
    sample = PACKAGE / "analyzers" / "central_filters.py"
    assert "plotting" in _imported_parts(sample) and "builders" in _imported_parts(sample)
    assert _imported_parts(PACKAGE / "workflows" / "filter_scores.py") >= {"hooks", "pruning"}
    # and tells an import inside a function from one at the top
    sample = ("from ..execution.context import active_client\n"
              "def f():\n    from ..distributed.runner import ClusterRunner\n")
    assert _imports_in(sample, ("analyzers",)) == [(["execution", "context"], False),
                                                   (["distributed", "runner"], True)]


def test_help_imports_neither_torch_nor_matplotlib():
    code = ("import sys\nfrom repgraph.cli import build_parser\nbuild_parser().format_help()\n"
            "heavy = sorted(m for m in ('torch', 'matplotlib', 'pandas') if m in sys.modules)\n"
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == ""


def test_import_repgraph_is_lazy_but_complete():
    code = ("import sys, repgraph as rg\nassert 'torch' not in sys.modules\n"
            "missing = [n for n in rg.__all__ if getattr(rg, n, None) is None]\nprint(missing)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def _plain_tqdm_imports(sources: dict) -> list:
    """Modules importing ``tqdm`` itself rather than ``tqdm.auto`` (a text bar in Jupyter)."""
    found = []
    for module, (source, _) in sources.items():
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ImportFrom) and node.module == "tqdm" and node.level == 0:
                found.append(f"{module}: from tqdm import {', '.join(a.name for a in node.names)}")
            elif isinstance(node, ast.Import):
                found += [f"{module}: import {a.name}" for a in node.names if a.name == "tqdm"]
    return found


def test_progress_bars_come_from_tqdm_auto():
    """tqdm.auto draws a widget in Jupyter (ipywidgets is in the notebooks extra) and text elsewhere;
    plain tqdm writes text bars into every notebook cell's stderr."""
    assert _plain_tqdm_imports(_package_sources()) == []


def test_the_tqdm_finder_sees_both_forms():
    sources = {"a": ("from tqdm import tqdm\nfrom tqdm.auto import tqdm as t\n", False),
               "b": ("import tqdm\n", False)}
    assert _plain_tqdm_imports(sources) == ["a: from tqdm import tqdm", "b: import tqdm"]

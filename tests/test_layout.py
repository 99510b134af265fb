"""The house rules that no other test sees: DESIGN §1's one-way imports, read from every module's
source (module-level and function-level imports alike), and an instant command line."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "repgraph"

# Which top-level parts of repgraph each part must never import (DESIGN §1): capture and builders
# know nothing of the analyses; analyzers are pure functions on arrays and never run a model;
# pruning consumes analyzer results; plotting only reads results; nothing imports the CLI;
# distributed runs capture and the analyses on a cluster, nothing above them, and capture,
# builders and analyzers know nothing of it but the exceptions below.
FORBIDDEN = {
    "hooks": {"builders", "analyzers", "pruning", "workflows", "plotting", "report", "cli", "distributed"},
    "builders": {"hooks", "analyzers", "pruning", "workflows", "plotting", "report", "cli", "distributed"},
    "analyzers": {"hooks", "pruning", "workflows", "plotting", "report", "cli", "distributed"},
    "pruning": {"workflows", "plotting", "report", "cli"},
    "workflows": {"cli"},
    "plotting": {"hooks", "pruning", "workflows", "report", "cli"},
    "report": {"hooks", "builders", "analyzers", "pruning", "workflows", "plotting", "cli"},
    "models": {"hooks", "builders", "analyzers", "pruning", "workflows", "plotting", "report", "cli"},
    "datasets": {"hooks", "builders", "analyzers", "pruning", "workflows", "plotting", "report", "cli"},
    "distributed": {"pruning", "workflows", "plotting", "report", "cli"},
}
# The one allowed exception, as pandas' DataFrame.plot: a convenience method that imports plotting
# when it is called (analyzers/central_filters.py, CentralFilters.plot).
ALLOWED = {("analyzers/central_filters.py", "plotting")}
# The public analyses and capture take client= (DESIGN §3). Any module may import
# repgraph.distributed.context (active_client), which imports nothing of repgraph; these modules
# may import the rest of repgraph.distributed only inside a function (their client branch, which
# hands the call to the distributed implementation; dask is an optional extra), never at the top.
LAZY_ALLOWED = {
    ("analyzers/modularity.py", "distributed"),  # modularity_curve(client=)
    ("analyzers/gbs.py", "distributed"),  # gbs_matrix(client=)
    ("analyzers/cka.py", "distributed"),  # cka_matrix(client=)
    ("analyzers/criteria.py", "distributed"),  # hrank_scores, chip_scores(client=)
    ("analyzers/topology.py", "distributed"),  # birth_points, feature_entropy(client=)
    ("builders/filter_graph.py", "distributed"),  # filter_similarity(client=)
    ("hooks/capture.py", "distributed"),  # capture_activations(client=)
}
CONTEXT = ["distributed", "context"]


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
    """The imports (``_imports``) of the module ``rel`` (its path in repgraph) that break the rules."""
    forbidden = FORBIDDEN.get(_part(rel), set())
    return {".".join(target) for target, lazy in imports
            if target[0] in forbidden and (rel, target[0]) not in ALLOWED
            and target[:2] != CONTEXT and not (lazy and (rel, target[0]) in LAZY_ALLOWED)}


def test_the_distributed_implementation_is_imported_only_lazily_and_only_where_listed():
    top = "from ..distributed.modularity import modularity_curve\n"
    lazy = "def f(client):\n    from ..distributed.modularity import modularity_curve\n"
    context = "from ..distributed.context import active_client\n"
    assert _violations("analyzers/modularity.py", _imports_in(top, ("analyzers",))) == {"distributed.modularity"}
    assert _violations("analyzers/modularity.py", _imports_in(lazy + context, ("analyzers",))) == set()
    assert _violations("analyzers/closeness.py", _imports_in(lazy, ("analyzers",))) == {"distributed.modularity"}
    assert _violations("analyzers/closeness.py", _imports_in(context, ("analyzers",))) == set()


def test_the_client_context_imports_nothing_of_repgraph():
    # the premise of letting every part import it
    assert _imported_parts(PACKAGE / "distributed" / "context.py") == set()


def test_the_rule_checker_sees_relative_and_absolute_imports():
    # a checker that found nothing would pass every module: show it finds both forms
    sample = PACKAGE / "analyzers" / "central_filters.py"
    assert "plotting" in _imported_parts(sample) and "builders" in _imported_parts(sample)
    assert _imported_parts(PACKAGE / "workflows" / "filter_scores.py") >= {"hooks", "pruning"}
    # and tells an import inside a function from one at the top
    sample = ("from ..distributed.context import active_client\n"
              "def f():\n    from ..distributed.modularity import modularity_curve\n")
    assert _imports_in(sample, ("analyzers",)) == [(["distributed", "context"], False),
                                                   (["distributed", "modularity"], True)]


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

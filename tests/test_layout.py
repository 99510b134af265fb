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
# distributed runs capture and the analyses on a cluster, nothing above them.
FORBIDDEN = {
    "hooks": {"builders", "analyzers", "pruning", "workflows", "plotting", "report", "cli"},
    "builders": {"hooks", "analyzers", "pruning", "workflows", "plotting", "report", "cli"},
    "analyzers": {"hooks", "pruning", "workflows", "plotting", "report", "cli"},
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


def _part(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0].removesuffix(".py")


def _imported_parts(path: Path) -> set[str]:
    """The top-level repgraph parts that ``path`` imports (absolute or relative imports)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = path.relative_to(PACKAGE).parent.parts
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(package[:len(package) - (node.level - 1)])
                target = base + (node.module.split(".") if node.module else [])
                names = [target] if target else [[alias.name] for alias in node.names]
            elif node.module and node.module.split(".")[0] == "repgraph":
                rest = node.module.split(".")[1:]
                names = [rest] if rest else [[alias.name] for alias in node.names]
            else:
                continue
            found.update(parts[0] for parts in names if parts)
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names
                         if a.name.startswith("repgraph.") and len(a.name.split(".")) > 1)
    return found


MODULES = sorted(p for p in PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=[str(p.relative_to(PACKAGE)) for p in MODULES])
def test_imports_run_one_way(path):
    part = _part(path)
    rel = str(path.relative_to(PACKAGE))
    bad = {p for p in _imported_parts(path) & FORBIDDEN.get(part, set()) if (rel, p) not in ALLOWED}
    assert not bad, f"{rel} ({part}) imports {sorted(bad)}, against DESIGN §1's one-way imports"


def test_the_rule_checker_sees_relative_and_absolute_imports(tmp_path):
    # a checker that found nothing would pass every module: show it finds both forms
    sample = PACKAGE / "analyzers" / "central_filters.py"
    assert "plotting" in _imported_parts(sample) and "builders" in _imported_parts(sample)
    assert _imported_parts(PACKAGE / "workflows" / "filter_scores.py") >= {"hooks", "pruning"}


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

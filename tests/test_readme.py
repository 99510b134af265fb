"""The README's ten-line example runs as written, twice in a row into one store (the second run
reuses it), and every file the README names exists in the repository."""
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _api_example() -> str:
    section = README.split("## The API in ten lines", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_ten_line_example_runs_twice_into_one_store(tmp_path):
    code = _api_example()
    published = []
    for _ in range(2):
        run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stderr[-3000:]
        manifest = (tmp_path / "acts" / "manifest.json").stat()
        published.append((manifest.st_ino, manifest.st_mtime_ns))
    assert published[0] == published[1]  # the second run reused the store: nothing was written again


def test_every_path_the_readme_names_exists():
    named = set(re.findall(r"`((?:repgraph|benchmarks|notebooks|tests|docs)/[\w./-]+)`", README))
    named |= set(re.findall(r"\]\(((?:docs|notebooks)/[\w./-]+)\)", README))
    assert named, "the README names no repository paths: the check would pass vacuously"
    missing = sorted(p for p in named if not (ROOT / p.rstrip("/")).exists()
                     and not list(ROOT.glob(p.rstrip("/") + "*")))
    assert not missing, f"README names paths that do not exist: {missing}"
    assert "../" not in README, "README points outside the repository"

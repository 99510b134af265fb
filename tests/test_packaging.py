"""A normal (non-editable) install carries everything the demo needs: the shipped checkpoint is
package data, so ``repgraph demo`` runs from the installed copy without training."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _source_copy(folder: Path) -> Path:
    """The files git knows (tracked, or new and not ignored) copied to ``folder``: a build from
    there cannot pick up stale build/ or egg-info leftovers of the working tree."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        if (ROOT / name).is_file():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, folder / name)
    return folder


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """repgraph installed from a built wheel into a fresh folder (its dependencies come from the
    running environment), and the environment that puts that copy first."""
    target = tmp_path_factory.mktemp("site")
    source = _source_copy(tmp_path_factory.mktemp("source"))
    build = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                            "--target", str(target), str(source)], capture_output=True, text=True, timeout=600)
    if build.returncode != 0:
        pytest.fail(f"pip could not install repgraph from {ROOT}:\n{build.stderr[-2000:]}")
    env = dict(os.environ, PYTHONPATH=str(target))
    return target, env


def test_the_installed_copy_is_not_the_source_tree(installed, tmp_path):
    target, env = installed
    where = subprocess.run([sys.executable, "-c", "import repgraph; print(repgraph.__file__)"], env=env,
                           cwd=tmp_path, capture_output=True, text=True, check=True).stdout.strip()
    assert Path(where).is_relative_to(target)
    assert (target / "repgraph" / "data" / "resnet20_digits.pt").is_file()


def test_demo_runs_from_the_installed_copy_without_training(installed, tmp_path):
    _, env = installed
    run = subprocess.run([sys.executable, "-m", "repgraph.cli", "demo", "--out", str(tmp_path / "demo"),
                          "--no-progress"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "checkpoint resnet20_digits.pt" in run.stdout and "Training" not in run.stdout
    curves = pd.read_csv(tmp_path / "demo" / "modularity.csv")
    assert set(curves["model"]) == {"trained", "untrained"} and len(curves) == 20

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run tests marked slow")


def pytest_collection_modifyitems(config, items):
    skip_slow = pytest.mark.skip(reason="slow: pass --runslow to run")
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "slow" in item.keywords and not config.getoption("--runslow"):
            item.add_marker(skip_slow)
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_gpu)


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture(scope="session")
def load_benchmark():
    """``load(name)``: the module ``benchmarks/<name>.py``, loaded from its file (benchmarks/ is
    not a package); each call loads it afresh."""
    def load(name):
        spec = importlib.util.spec_from_file_location(f"_bench_{name}", BENCHMARKS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    return load


@pytest.fixture(scope="session")
def mnist1d_generated():
    """Generate MNIST-1D once (about 10-20 s on a loaded CPU, cached in the process), so a
    benchmark smoke test's time is its own run."""
    from repgraph.workflows.mnist1d import mnist1d_splits

    mnist1d_splits()


@pytest.fixture
def restore_torch_threads():
    """Benchmarks set torch's thread count (--threads); put it back after the test."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)

"""What every notebook shares: the switch to small settings that CI sets."""
from __future__ import annotations

import os

SMALL_ENV = "REPGRAPH_NOTEBOOK_SMALL"  # CI runs the notebooks with small settings when this is "1"


def small_settings() -> bool:
    """True when the notebooks should run with small settings (``REPGRAPH_NOTEBOOK_SMALL=1``):
    tiny training runs and subsets, so each notebook executes in CI within a minute."""
    return os.environ.get(SMALL_ENV) == "1"

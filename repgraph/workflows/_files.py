"""Writing result files so that no half-written file is ever left under its final name."""
from __future__ import annotations

import os
from pathlib import Path


def atomic_write(path: Path, write) -> None:
    """``write(tmp)`` to a temporary file beside ``path``, then rename it: no half-written result
    is ever left under ``path``."""
    tmp = path.with_name(path.name + ".part")
    write(tmp)
    os.replace(tmp, path)

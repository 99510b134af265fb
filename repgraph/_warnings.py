"""Warnings that point at the user's line: the first caller outside repgraph."""
from __future__ import annotations

import sys
import warnings


def _inside_repgraph(frame) -> bool:
    name = frame.f_globals.get("__name__", "")
    return name == "repgraph" or name.startswith("repgraph.")


def warn_user(message: str, category: type[Warning] = UserWarning) -> None:
    """``warnings.warn(message, category)`` attributed to the first frame outside the repgraph
    package, however deep inside repgraph (or through a ``client=`` hand-off) it is raised, so the
    warning names the line of the user's code that caused it."""
    frame, level = sys._getframe(1), 2  # stacklevel 2: the caller of warn_user
    while frame is not None and _inside_repgraph(frame):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)

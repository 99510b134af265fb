"""Helpers shared by ``filter_criteria_budget.py`` and ``mask_methods_sparsity.py``: ``mean ± std``
cells, Markdown tables and a JSON cache of one result per file (so an interrupted run resumes)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd


def mean_std(values, scale: float = 1.0, digits: int = 2) -> str:
    """``mean ± std`` (sample std, ddof = 1) of ``values`` times ``scale``; the value alone for one,
    "n/a" for none."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=np.float64) * scale
    if len(v) == 0:
        return "n/a"
    if len(v) == 1:
        return f"{v[0]:.{digits}f}"
    return f"{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f}"


def markdown(frame: pd.DataFrame) -> str:
    """``frame`` as a GitHub Markdown table (its index is not written)."""
    cells = [[str(c) for c in frame.columns]] + [[str(v) for v in row] for row in frame.itertuples(index=False)]
    lines = ["| " + " | ".join(row) + " |" for row in cells]
    lines.insert(1, "|" + "|".join("---" for _ in frame.columns) + "|")
    return "\n".join(lines)


def cached(path: Path, settings: dict, compute) -> tuple[dict, bool]:
    """The result stored at ``path`` when it was computed with the same ``settings``, else
    ``compute()`` (a JSON-able dict), written atomically beside its settings. Returns (result,
    whether it came from the cache)."""
    path = Path(path)
    if path.is_file():
        stored = json.loads(path.read_text())
        if stored.get("settings") == settings:
            return stored["result"], True
    result = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"settings": settings, "result": result}, indent=1))
    os.replace(tmp, path)
    return result, False

"""Helpers shared by the benchmark scripts: ``mean ± std`` cells, Markdown tables and a JSON cache
of one result per file (so an interrupted run resumes)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd


def mean_std(values, scale: float = 1.0, digits: int = 3) -> str:
    """``mean ± std`` (sample std, ddof = 1) of ``values`` times ``scale``; the value alone for one,
    "n/a" for none. Missing values (None, NaN) are left out and said: ``"… (2 of 3)"``."""
    values = list(values)
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=np.float64) * scale
    if len(v) == 0:
        return "n/a"
    cell = f"{v[0]:.{digits}f}" if len(v) == 1 else f"{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f}"
    return cell if len(v) == len(values) else f"{cell} ({len(v)} of {len(values)})"


def markdown(frame: pd.DataFrame, digits: int | None = None) -> str:
    """``frame`` as a GitHub Markdown table (its index is not written); floats with ``digits``
    decimals when given, else as ``str`` writes them."""
    def cell(v):
        return f"{v:.{digits}f}" if digits is not None and isinstance(v, float) else str(v)
    cells = [[str(c) for c in frame.columns]] + [[cell(v) for v in row] for row in frame.itertuples(index=False)]
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

"""The one convention for tabular results: every DataFrame repgraph returns says in ``attrs`` what
it measures (``measure``), after whom (``reference``) and with which parameters."""
from __future__ import annotations

import pandas as pd


def described(frame: pd.DataFrame, measure: str, reference: str | None, **parameters) -> pd.DataFrame:
    """``frame`` with ``attrs`` = ``{"measure": measure, "reference": reference, **parameters}``."""
    frame.attrs.update({"measure": measure, "reference": reference, **parameters})
    return frame

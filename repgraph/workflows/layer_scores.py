"""Per-conv filter scores with what a criterion found besides them (CLP's outlier flags, a
Central-Filter selection)."""
from __future__ import annotations

import numpy as np

from ..analyzers.central_filters import CentralFilters


class LayerScores(dict):
    """dict conv name -> (C_out,) scores (higher = keep), as every criterion returns them, with
    ``flagged``: conv name -> boolean outlier mask (CLP), and ``selections``: conv name ->
    ``CentralFilters`` (central_filter; its scores are the selection, kept 1.0, pruned 0.0);
    both empty for criteria that only rank."""

    def __init__(self, scores=(), *, flagged=None, selections=None):
        super().__init__(scores)
        self.flagged = dict(flagged or {})
        self.selections = dict(selections or {})

    @classmethod
    def of(cls, found) -> "LayerScores":
        """A criterion's result (conv -> scores or ``CentralFilters``) with every selection turned
        into its scores (``selection_scores``) and kept in ``selections``."""
        selections = {c: v for c, v in found.items() if isinstance(v, CentralFilters)}
        scores = {c: selection_scores(v) if c in selections else v for c, v in found.items()}
        return cls(scores, flagged=getattr(found, "flagged", None), selections=selections)

    def for_pruning(self) -> dict:
        """What ``prune_filters`` takes to carry out the criterion: the selection where it made one
        (pruned exactly, with the Central-Filter compensation), the scores elsewhere."""
        return {**self, **self.selections}


def selection_scores(selection: CentralFilters) -> np.ndarray:
    """A selection as (C,) scores: 1.0 for each kept filter, 0.0 for each pruned one, so pruning
    the ``len(selection.pruned)`` lowest removes exactly the selection."""
    scores = np.zeros(len(selection.kept) + len(selection.pruned))
    scores[list(selection.kept)] = 1.0
    return scores

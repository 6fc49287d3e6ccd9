"""Choosing among scored candidates (no scikit-learn import: the pipeline's select step is light)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class CandidateScore:
    """Cross-validated RMSE of one candidate at its best grid point."""

    name: str
    cv_rmse_mean: float
    cv_rmse_std: float
    best_params: dict[str, Any]


def select(scores: list[CandidateScore], order: list[str] | None = None) -> CandidateScore:
    """The lowest mean CV RMSE; ties go to the candidate listed first in ``order`` (the simpler)."""
    rank = {name: i for i, name in enumerate(order or [s.name for s in scores])}
    return min(scores, key=lambda s: (s.cv_rmse_mean, rank.get(s.name, len(rank))))

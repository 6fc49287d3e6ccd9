"""Choosing among scored candidates (no scikit-learn import: the pipeline's select step is light)."""

from __future__ import annotations

from core.model_card import CandidateScore


def select(scores: list[CandidateScore], order: list[str] | None = None) -> CandidateScore:
    """The lowest mean CV RMSE; ties go to the candidate listed first in ``order`` (the simpler)."""
    rank = {name: i for i, name in enumerate(order or [s.name for s in scores])}
    return min(scores, key=lambda s: (s.cv_rmse_mean, rank.get(s.name, len(rank))))

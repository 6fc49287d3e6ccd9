"""The quality gate: may this candidate replace the champion?

Rules (thresholds in ``params.yaml`` under ``gate``): absolute quality on the
holdout, no regression against the champion scored on the same holdout rows, and
behaviour (heavier cars use more fuel; predictions stay physical).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from core.features import FEATURE_NAMES, TARGET
from core.model_card import load_model
from training.data import Dataset, holdout_split
from training.evaluate import regression_metrics
from training.params import Params

WEIGHT_STEP = 1.10  # +10 % weight, all else equal


@dataclass(frozen=True)
class Rule:
    name: str
    observed: float
    threshold: float
    comparison: str  # "<=" or ">="
    passed: bool


@dataclass
class GateReport:
    candidate_id: str
    champion_uri: str | None
    champion_id: str | None
    candidate_metrics: dict
    champion_metrics: dict | None
    rules: list[Rule] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(rule.passed for rule in self.rules)

    @property
    def reasons(self) -> list[str]:
        return [
            f"{r.name}: {r.observed:.4g} is not {r.comparison} {r.threshold:.4g}" for r in self.rules if not r.passed
        ]

    def to_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed, "reasons": self.reasons}

    def table(self) -> str:
        lines = [f"{'rule':<28} {'observed':>10} {'':2} {'threshold':>10}  result"]
        for r in self.rules:
            verdict = "pass" if r.passed else "FAIL"
            lines.append(f"{r.name:<28} {r.observed:>10.4f} {r.comparison:2} {r.threshold:>10.4f}  {verdict}")
        champion = f"champion {self.champion_id[:12]}" if self.champion_id else "no champion: absolute rules only"
        verdict = "PASSED" if self.passed else "FAILED"
        lines.append(f"gate {verdict} for candidate {self.candidate_id[:12]} ({champion})")
        return "\n".join(lines)


def _rule(name: str, observed: float, comparison: str, threshold: float) -> Rule:
    passed = observed <= threshold if comparison == "<=" else observed >= threshold
    return Rule(name, round(float(observed), 6), float(threshold), comparison, bool(passed))


def run_gate(
    candidate_dir: Path,
    dataset: Dataset,
    params: Params,
    champion_dir: Path | None = None,
    champion_uri: str | None = None,
    champion_id: str | None = None,
) -> GateReport:
    """Score the candidate (and the champion) on the holdout rows and apply every rule.

    ``champion_id`` is the id the champion's URI demands; its model file must hash to it.
    """
    rules = params.gate
    candidate, card = load_model(candidate_dir)
    _, test = holdout_split(dataset.frame, params.split.test_size, params.split.seed)
    X_test, y_test = test[list(FEATURE_NAMES)].to_numpy(), test[TARGET]
    metrics = regression_metrics(y_test, candidate.predict(X_test))
    report = GateReport(card.id, champion_uri, None, metrics, None)
    report.rules += [
        _rule("holdout_rmse", metrics["rmse"], "<=", rules.max_holdout_rmse),
        _rule("holdout_r2", metrics["r2"], ">=", rules.min_holdout_r2),
    ]
    if champion_dir is not None:
        champion, champion_card = load_model(champion_dir, champion_id)
        report.champion_id = champion_card.id
        report.champion_metrics = regression_metrics(y_test, champion.predict(X_test))
        increase = metrics["rmse"] - report.champion_metrics["rmse"]
        report.rules.append(_rule("rmse_increase_vs_champion", increase, "<=", rules.max_rmse_increase))
    X_all = dataset.X.to_numpy()
    heavier = X_all.copy()
    heavier[:, FEATURE_NAMES.index("weight")] *= WEIGHT_STEP
    predicted = candidate.predict(X_all)
    share = float(np.mean(candidate.predict(heavier) < predicted))
    low, high = rules.prediction_range
    inside = float(np.mean((predicted >= low) & (predicted <= high) & np.isfinite(predicted)))
    report.rules += [
        _rule("weight_monotone_share", share, ">=", rules.min_weight_monotone_share),
        _rule("predictions_in_range_share", inside, ">=", 1.0),
    ]
    return report

"""``params.yaml`` as a validated pydantic model: every tunable value, unknown keys rejected."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from core.errors import ParamsError
from training.candidates import CANDIDATES

CandidateName = Literal[tuple(CANDIDATES)]  # the registry's names, in tie-breaking order


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataParams(_Strict):
    path: str = "data/auto-mpg.csv"
    #: The trusted evaluation set: seed rows no ingest ever changes (DVC-tracked; changed only by a merge
    #: request of its own). The gate scores candidate and champion on it.
    trusted_holdout: str = "data/trusted/holdout.csv"


class SplitParams(_Strict):
    test_size: float = Field(0.2, gt=0, lt=1)
    seed: int = 42


class _TrainSettings(_Strict):
    seed: int = 42
    cv_folds: int = Field(5, ge=2)
    candidates: list[CandidateName] = Field(default_factory=lambda: list(CANDIDATES), min_length=1)


#: ``train:`` in params.yaml: the settings above plus one block per candidate (``training.candidates``).
TrainParams = create_model(
    "TrainParams",
    __base__=_TrainSettings,
    **{name: (candidate.Params, candidate.Params()) for name, candidate in CANDIDATES.items()},
)


class GateParams(_Strict):
    """Rules a candidate must pass before it is published (see training/gate.py)."""

    max_holdout_rmse: float = Field(2.8, gt=0)
    min_holdout_r2: float = Field(0.87, le=1)
    max_rmse_increase: float = Field(0.0, ge=0)
    min_weight_monotone_share: float = Field(0.95, ge=0, le=1)
    prediction_range: tuple[float, float] = (5.0, 80.0)


class IngestParams(_Strict):
    """How feedback is screened before it becomes training data (see monitoring/screen.py)."""

    max_residual: float = Field(3.0, gt=0)  # |actual - predicted|, in holdout RMSEs of the model that predicted
    max_per_client: int = Field(5, ge=1)  # feedback rows one client may add in one ingest


class MonitorParams(_Strict):
    """Alert thresholds of `mlops monitor report` (see monitoring/report.py)."""

    min_rows: int = Field(100, ge=1)  # drift is judged only with at least this many served cars
    psi_alert: float = Field(0.25, gt=0)  # population stability index of a feature or of the predictions
    outside_range_alert: float = Field(0.2, ge=0, le=1)  # share of cars outside the training ranges
    min_feedback: int = Field(20, ge=1)  # feedback-labelled cars needed to judge the error
    error_ratio_alert: float = Field(1.5, gt=0)  # feedback RMSE / holdout RMSE
    p99_latency_ms_alert: float = Field(250.0, gt=0)  # predictor's p99, from its /metrics
    server_error_alert: float = Field(0.01, ge=0, le=1)  # share of 5xx answers, from its /metrics


class Params(_Strict):
    data: DataParams = DataParams()
    split: SplitParams = SplitParams()
    train: TrainParams = TrainParams()
    gate: GateParams = GateParams()
    ingest: IngestParams = IngestParams()
    monitor: MonitorParams = MonitorParams()


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of ``raw`` with ``dotted.key=yaml-value`` overrides applied (as ``dvc exp run -S``)."""
    result = yaml.safe_load(yaml.safe_dump(raw)) or {}
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ParamsError(f"override {item!r} is not of the form section.key=value")
        *parents, leaf = key.split(".")
        node = result
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ParamsError(f"override {item!r}: {part!r} is not a section")
        try:
            node[leaf] = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ParamsError(f"override {item!r}: the value is not valid YAML ({e.problem})") from e
    return result


def _blame(location: str, source: str, overrides: list[str], flag: str) -> str:
    """Who set the offending key: the override whose key is (a prefix of) ``location``, else ``source``."""
    for item in overrides:
        key = item.partition("=")[0]
        if location == key or location.startswith(key + "."):
            return f"{flag} {item}"
    return source


def parse_params(
    raw: dict[str, Any], source: str = "params", overrides: list[str] = (), flag: str = "override"
) -> Params:
    """Validate a params mapping; each error names the key and what set it (the file, or ``flag`` and the override)."""
    try:
        return Params.model_validate(raw)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            location = ".".join(map(str, err["loc"]))
            problems.append(f"{_blame(location, source, list(overrides), flag)}: {location}: {err['msg']}")
        raise ParamsError("invalid parameters: " + "; ".join(problems)) from e


def load_params(path: Path, overrides: list[str] = (), flag: str = "--set") -> Params:
    """Read ``params.yaml``, apply overrides (as given to ``flag``), validate."""
    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
    except FileNotFoundError as e:
        raise ParamsError(f"params file {path} not found") from e
    except yaml.YAMLError as e:
        raise ParamsError(f"params file {path} is not valid YAML: {e}") from e
    overrides = list(overrides)
    return parse_params(apply_overrides(raw, overrides), str(path), overrides, flag)

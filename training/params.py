"""``params.yaml`` as a validated pydantic model: every tunable value, unknown keys rejected."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.errors import ParamsError

CandidateName = Literal["poly_weight_year", "linear", "gradient_boosting", "svr"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataParams(_Strict):
    path: str = "data/auto-mpg.csv"


class SplitParams(_Strict):
    test_size: float = Field(0.2, gt=0, lt=1)
    seed: int = 42


class PolyParams(_Strict):
    degree: int = Field(2, ge=1, le=5)


class GradientBoostingParams(_Strict):
    n_estimators: int = Field(400, ge=1)
    learning_rate: float = Field(0.03, gt=0, le=1)
    max_depth: int = Field(3, ge=1)
    subsample: float = Field(0.8, gt=0, le=1)


class SvrParams(_Strict):
    """Grid searched inside cross-validation; each list holds the values to try."""

    c: list[float] = Field(default_factory=lambda: [1.0, 3.0], min_length=1)
    epsilon: list[float] = Field(default_factory=lambda: [0.03, 0.05], min_length=1)
    gamma: list[float | Literal["scale", "auto"]] = Field(default_factory=lambda: ["scale", 0.1], min_length=1)


class TrainParams(_Strict):
    seed: int = 42
    cv_folds: int = Field(5, ge=2)
    candidates: list[CandidateName] = Field(
        default_factory=lambda: ["poly_weight_year", "linear", "gradient_boosting", "svr"], min_length=1
    )
    poly_weight_year: PolyParams = PolyParams()
    gradient_boosting: GradientBoostingParams = GradientBoostingParams()
    svr: SvrParams = SvrParams()


class GateParams(_Strict):
    """Rules a candidate must pass before it is published (see training/gate.py)."""

    max_holdout_rmse: float = Field(2.8, gt=0)
    min_holdout_r2: float = Field(0.87, le=1)
    max_rmse_increase: float = Field(0.0, ge=0)
    min_weight_monotone_share: float = Field(0.95, ge=0, le=1)
    prediction_range: tuple[float, float] = (5.0, 80.0)


class Params(_Strict):
    data: DataParams = DataParams()
    split: SplitParams = SplitParams()
    train: TrainParams = TrainParams()
    gate: GateParams = GateParams()


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
        node[leaf] = yaml.safe_load(text)
    return result


def parse_params(raw: dict[str, Any], source: str = "params") -> Params:
    """Validate a params mapping; errors name the offending key."""
    try:
        return Params.model_validate(raw)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())
        raise ParamsError(f"invalid {source}: {problems}") from e


def load_params(path: Path, overrides: list[str] = ()) -> Params:
    """Read ``params.yaml``, apply overrides, validate."""
    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
    except FileNotFoundError as e:
        raise ParamsError(f"params file {path} not found") from e
    except yaml.YAMLError as e:
        raise ParamsError(f"params file {path} is not valid YAML: {e}") from e
    return parse_params(apply_overrides(raw, list(overrides)), source=str(path))

"""Request parsing and validation for V1 and V2: JSON in, an (n, 7) float matrix out.

Every rejection is an ``InvalidRequestError`` whose message names the instance index and
the field, and which the server answers with 400 (413 for too many instances).
Positional instances take the vectorised path (one ``numpy`` conversion and one
domain check for the whole batch); named instances go through pydantic.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.features import FEATURE_NAMES, ORIGIN_NAMES, domain_problems

MAX_INSTANCES = 1000
_NUMBER = (int, float)  # exact types: JSON true/false arrive as bool, a subclass of int
MAX_REPORTED = 5
OriginName = Literal["usa", "europe", "japan", "USA", "Europe", "Japan"]


class InvalidRequestError(ValueError):
    """A client error; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


class NamedInstance(BaseModel):
    """One car with named features (V1 ``instances`` objects)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)

    cylinders: int | float
    displacement: int | float
    horsepower: int | float
    weight: int | float
    acceleration: int | float
    model_year: int | float
    origin: int | float | OriginName = Field(union_mode="left_to_right")

    def row(self) -> list[float]:
        origin = ORIGIN_NAMES[self.origin.lower()] if isinstance(self.origin, str) else self.origin
        return [
            self.cylinders,
            self.displacement,
            self.horsepower,
            self.weight,
            self.acceleration,
            self.model_year,
            origin,
        ]


def _raise_problems(problems: list[tuple[int, str, str]], where: str) -> None:
    if problems:
        shown = "; ".join(f"{where}[{row}].{name}: {message}" for row, name, message in problems[:MAX_REPORTED])
        more = f" (and {len(problems) - MAX_REPORTED} more)" if len(problems) > MAX_REPORTED else ""
        raise InvalidRequestError(shown + more)


def _checked(matrix: np.ndarray, where: str) -> np.ndarray:
    _raise_problems(domain_problems(matrix), where)
    return matrix


def _check_count(count: int, where: str) -> None:
    if count == 0:
        raise InvalidRequestError(f"{where}: at least one instance is required")
    if count > MAX_INSTANCES:
        raise InvalidRequestError(f"{where}: {count} instances, at most {MAX_INSTANCES} per request", status=413)


def _positional(index: int, instance: list) -> list[float]:
    if len(instance) != len(FEATURE_NAMES):
        raise InvalidRequestError(
            f"instances[{index}]: expected {len(FEATURE_NAMES)} values in the order {', '.join(FEATURE_NAMES)}, "
            f"got {len(instance)}"
        )
    for position, value in enumerate(instance):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidRequestError(f"instances[{index}].{FEATURE_NAMES[position]}: must be a number, got {value!r}")
    return instance


def _named(index: int, instance: dict) -> list[float]:
    try:
        return NamedInstance.model_validate(instance).row()
    except ValidationError as e:
        error = e.errors()[0]
        field = str(error["loc"][0]) if error["loc"] else "?"
        if error["type"] == "extra_forbidden":
            message = f"unknown field; expected {', '.join(FEATURE_NAMES)}"
        elif error["type"] == "missing":
            message = "is required"
        elif field == "origin":
            message = "must be 1, 2, 3 or usa, europe, japan"
        else:
            message = f"must be a finite number, got {error.get('input')!r}"
        raise InvalidRequestError(f"instances[{index}].{field}: {message}") from e


def parse_v1(payload: Any) -> np.ndarray:
    """``{"instances": [[7 numbers] | {named features}, ...]}`` -> (n, 7) matrix.

    kserve hands over the raw bytes when the content type is not JSON (curl's default
    form type, say); those are decoded here, so the content type does not matter.
    """
    if isinstance(payload, bytes | str):
        try:
            payload = orjson.loads(payload)
        except orjson.JSONDecodeError as e:
            raise InvalidRequestError(f"body: not valid JSON ({e})") from e
    if not isinstance(payload, dict) or "instances" not in payload:
        raise InvalidRequestError('instances: required; send {"instances": [...]}')
    unknown = sorted(set(payload) - {"instances", "parameters"})
    if unknown:
        raise InvalidRequestError(f'{unknown[0]}: unknown top-level field; send {{"instances": [...]}}')
    instances = payload["instances"]
    if not isinstance(instances, list):
        raise InvalidRequestError("instances: must be a list")
    _check_count(len(instances), "instances")
    if all(type(i) is list and len(i) == len(FEATURE_NAMES) for i in instances) and all(
        type(v) in _NUMBER for i in instances for v in i
    ):
        return _checked(np.array(instances, dtype=float), "instances")  # the common, positional case
    rows = []
    for index, instance in enumerate(instances):
        if isinstance(instance, list):
            rows.append(_positional(index, instance))
        elif isinstance(instance, dict):
            rows.append(_named(index, instance))
        else:
            raise InvalidRequestError(f"instances[{index}]: must be a list of 7 numbers or an object of named features")
    return _checked(np.array(rows, dtype=float), "instances")


def _v2_values(name: str, data: Any, datatype: str) -> np.ndarray:
    if name == "origin" and datatype == "BYTES":
        names = [v.decode() if isinstance(v, bytes) else str(v) for v in np.ravel(data)]
        unknown = [n for n in names if n.lower() not in ORIGIN_NAMES]
        if unknown:
            raise InvalidRequestError(f"inputs.origin: {unknown[0]!r} is not 1, 2, 3 or usa, europe, japan")
        return np.array([ORIGIN_NAMES[n.lower()] for n in names], dtype=float)
    if datatype in {"BYTES", "BOOL"}:
        raise InvalidRequestError(f"inputs.{name}: datatype {datatype} is not numeric; use FP64, FP32 or INT*")
    try:
        return np.asarray(data, dtype=float)
    except (TypeError, ValueError) as e:
        raise InvalidRequestError(f"inputs.{name}: data must be numbers") from e


def parse_v2(inputs: list[tuple[str, list[int], str, Any]]) -> np.ndarray:
    """V2 inputs as (name, shape, datatype, data) -> (n, 7) matrix.

    Either one input per feature, each of shape [n], or one input of shape [n, 7] in
    canonical order.
    """
    if len(inputs) == 1 and inputs[0][0] not in FEATURE_NAMES:
        name, shape, datatype, data = inputs[0]
        if len(shape) != 2 or shape[1] != len(FEATURE_NAMES):
            raise InvalidRequestError(f"inputs.{name}: shape must be [n, {len(FEATURE_NAMES)}], got {shape}")
        _check_count(shape[0], f"inputs.{name}")
        matrix = _v2_values(name, data, datatype)
        if matrix.size != shape[0] * shape[1]:
            raise InvalidRequestError(f"inputs.{name}: {matrix.size} values do not fill shape {shape}")
        return _checked(matrix.reshape(shape[0], len(FEATURE_NAMES)), f"inputs.{name}")
    by_name = {}
    for name, shape, datatype, data in inputs:
        if name not in FEATURE_NAMES:
            raise InvalidRequestError(f"inputs.{name}: unknown input; expected {', '.join(FEATURE_NAMES)}")
        if len(shape) != 1:
            raise InvalidRequestError(f"inputs.{name}: shape must be [n], got {shape}")
        by_name[name] = _v2_values(name, data, datatype).ravel()
        if by_name[name].size != shape[0]:
            raise InvalidRequestError(f"inputs.{name}: {by_name[name].size} values for shape {shape}")
    missing = [n for n in FEATURE_NAMES if n not in by_name]
    if missing:
        raise InvalidRequestError(f"inputs.{missing[0]}: required input is missing")
    sizes = {v.size for v in by_name.values()}
    if len(sizes) != 1:
        raise InvalidRequestError(f"inputs: all inputs must have the same length, got {sorted(sizes)}")
    _check_count(sizes.pop(), "inputs")
    return _checked(np.column_stack([by_name[n] for n in FEATURE_NAMES]), "inputs")

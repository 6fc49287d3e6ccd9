"""Request parsing and validation for V1 and V2: JSON in, an (n, 7) float matrix out.

Every rejection is an ``InvalidRequestError`` whose message names the instance index and
the field, and which the server answers with 400 (413 for too many instances).
Positional instances take the vectorised path (one ``numpy`` conversion and one
domain check for the whole batch); named instances go through pydantic.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.features import FEATURE_NAMES, FEATURES, ORIGIN_NAMES, domain_problems

MAX_INSTANCES = 1000
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
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


def _problems_message(problems: list[tuple[int, str, str]], where: str) -> str:
    shown = "; ".join(f"{field(name, f'{where}[{row}]')}: {message}" for row, name, message in problems[:MAX_REPORTED])
    return shown + (f" (and {len(problems) - MAX_REPORTED} more)" if len(problems) > MAX_REPORTED else "")


def _raise_problems(problems: list[tuple[int, str, str]], where: str) -> None:
    if problems:
        raise InvalidRequestError(_problems_message(problems, where))


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
    problems = [
        (index, FEATURE_NAMES[position], f"must be a number, got {value!r}")
        for position, value in enumerate(instance)
        if isinstance(value, bool) or not isinstance(value, int | float)
    ]
    _raise_problems(problems, "instances")
    return instance


def _named_problem(error: dict) -> tuple[str, str]:
    name = str(error["loc"][0]) if error["loc"] else "?"
    if error["type"] == "extra_forbidden":
        return name, f"unknown field; expected {', '.join(FEATURE_NAMES)}"
    if error["type"] == "missing":
        return name, "is required"
    if name == "origin":
        return name, "must be 1, 2, 3 or usa, europe, japan"
    return name, f"must be a finite number, got {error.get('input')!r}"


def _named(index: int, instance: dict) -> list[float]:
    """One car by feature name; every bad field is named at once (a form can mark them all)."""
    try:
        return NamedInstance.model_validate(instance).row()
    except ValidationError as e:
        problems = dict(_named_problem(error) for error in e.errors())  # one message per field
        problems.update(_domain_of_the_rest(instance, problems))  # and the domain of the fields that parsed
        rows = [(index, field, message) for field, message in problems.items()]
        raise InvalidRequestError(_problems_message(rows, "instances")) from e


def _domain_of_the_rest(instance: dict, problems: dict[str, str]) -> dict[str, str]:
    """Domain problems of the numeric fields of a car that failed to parse elsewhere: a form marks both an
    empty weight and a two-digit year in one answer."""
    parsed = []
    for feature in FEATURES:
        value = instance.get(feature.name)
        if feature.name == "origin" and isinstance(value, str):
            value = ORIGIN_NAMES.get(value.strip().lower())
        if feature.name not in problems and type(value) in _NUMBER:
            parsed.append((feature, float(value)))
    if not parsed:
        return {}
    matrix = np.array([[value for _, value in parsed]])
    return {name: message for _, name, message in domain_problems(matrix, [feature for feature, _ in parsed])}


def parse_v1(payload: Any) -> np.ndarray:
    """A decoded V1 body ``{"instances": [[7 numbers] | {named features}, ...]}`` -> (n, 7) matrix."""
    if not isinstance(payload, dict) or "instances" not in payload:
        raise InvalidRequestError('instances: required; send {"instances": [...]}')
    unknown = sorted(set(payload) - {"instances", "parameters"})
    if unknown:
        raise InvalidRequestError(f'{field(unknown[0])}: unknown top-level field; send {{"instances": [...]}}')
    if "parameters" in payload and not isinstance(payload["parameters"], dict):
        raise InvalidRequestError("parameters: must be an object")
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


#: V2 tensor datatypes (KServe's V2 protocol) and, for numeric ones, the little-endian numpy type of binary data.
V2_NUMERIC = {
    **{f"INT{b}": f"<i{b // 8}" for b in (8, 16, 32, 64)},
    **{f"UINT{b}": f"<u{b // 8}" for b in (8, 16, 32, 64)},
    **{f"FP{b}": f"<f{b // 8}" for b in (16, 32, 64)},
}
V2_DATATYPES = (*V2_NUMERIC, "BOOL", "BYTES")
V2_REQUEST_KEYS = {"id", "parameters", "inputs", "outputs"}
#: What KServe's own client adds beside the Open Inference Protocol's fields (kserve InferRequest.to_rest puts
#: model_name, and model_version when set, at the top level; KServe's model server takes them): accepted, and
#: checked against the model the URL names (serving/server.py).
KSERVE_REQUEST_KEYS = {"model_name", "model_version"}
V2_INPUT_KEYS = {"name", "shape", "datatype", "parameters", "data"}


@dataclass(frozen=True)
class V2Input:
    """One validated V2 input: ``data`` is flat, holds ``prod(shape)`` values, all of ``datatype``."""

    name: str
    shape: list[int]
    datatype: str
    data: list


@dataclass(frozen=True)
class V2Request:
    id: str | None
    parameters: dict | None
    inputs: list[V2Input]
    outputs: list[str] | None  # requested output names; None: all
    model_name: str | None = None  # KServe's client's: must be the URL's model
    model_version: str | None = None  # and one of its versions


def _split_binary(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    """The JSON part and the appended binary tensor data (binary data extension)."""
    if header_length is None:
        return body, b""
    if not header_length.isascii() or not header_length.isdigit() or int(header_length) > len(body):
        raise InvalidRequestError(
            f"inference-header-content-length: {header_length[:20]!r} is not the byte length of the JSON part "
            f"(a whole number from 0 to {len(body)})"
        )
    return body[: int(header_length)], body[int(header_length) :]


def _flat(data: Any, where: str) -> list:
    """The leaves of a (possibly nested) JSON list, row-major."""
    if not isinstance(data, list):
        raise InvalidRequestError(f"{where}.data: must be a list")
    leaves, stack = [], [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            leaves.append(item)
        else:
            stack.pop()
    return leaves


def _value_check(datatype: str) -> tuple[Any, str]:
    """(predicate, what it accepts) for the values of ``datatype``; built once per datatype (see ``_CHECKS``)."""
    if datatype == "BYTES":
        return (lambda v: isinstance(v, str)), "strings"
    if datatype == "BOOL":
        return (lambda v: type(v) is bool), "true or false"
    if datatype.startswith(("INT", "UINT")):
        low, high = int(np.iinfo(V2_NUMERIC[datatype]).min), int(np.iinfo(V2_NUMERIC[datatype]).max)
        return (lambda v: type(v) is int and low <= v <= high), f"whole numbers within [{low}, {high}]"
    largest = float(np.finfo(V2_NUMERIC[datatype]).max)
    # also False for NaN: a NaN compares false with everything
    return (lambda v: type(v) in _NUMBER and abs(v) <= largest), f"finite numbers within ±{largest:.4g}"


_CHECKS = {datatype: _value_check(datatype) for datatype in V2_DATATYPES}


def _check_values(values: list, datatype: str, where: str) -> None:
    """Every value must be what ``datatype`` declares: no strings for numbers, no 307.5 as INT64."""
    valid, kind = _CHECKS[datatype]
    bad = next((i for i, v in enumerate(values) if not valid(v)), None)
    if bad is not None:
        shown = repr(values[bad])
        shown = shown if len(shown) <= 40 else shown[:37] + "..."
        raise InvalidRequestError(f"{where}.data[{bad}]: {shown} is not valid for datatype {datatype}; send {kind}")


def _binary_values(raw: bytes, datatype: str, count: int, where: str) -> list:
    if datatype not in V2_NUMERIC:
        raise InvalidRequestError(f"{where}: binary data is supported for numeric datatypes only, not {datatype}")
    dtype = np.dtype(V2_NUMERIC[datatype])
    if len(raw) != count * dtype.itemsize:
        raise InvalidRequestError(
            f"{where}.parameters.binary_data_size: {len(raw)} bytes do not hold {count} {datatype} values"
        )
    values = np.frombuffer(raw, dtype=dtype)
    if values.dtype.kind == "f" and not np.all(np.isfinite(values)):
        raise InvalidRequestError(f"{where}: binary data holds a non-finite value")
    return values.tolist()


def field(name: str, parent: str = "") -> str:
    """The path of a client-named field in a message: ``parent.name`` for a plain name; an odd one
    (spaces, newlines, 200 characters) quoted and cut, so a message stays one readable line."""
    if _PLAIN_NAME.fullmatch(name):
        return f"{parent}.{name}" if parent else name
    return f"{parent}[{name[:40]!r}]"


def _input_path(name: str) -> str:
    return field(name, "inputs")


def _v2_input(item: Any, index: int, binary: memoryview, offset: int) -> tuple[V2Input, int]:
    where = f"inputs[{index}]"
    if not isinstance(item, dict):
        raise InvalidRequestError(f"{where}: must be an object with name, shape, datatype and data")
    unknown = sorted(set(item) - V2_INPUT_KEYS)
    if unknown:
        expected = ", ".join(sorted(V2_INPUT_KEYS))
        raise InvalidRequestError(f"{field(unknown[0], where)}: unknown field; expected {expected}")
    name, shape, datatype = item.get("name"), item.get("shape"), item.get("datatype")
    if not isinstance(name, str) or not name:
        raise InvalidRequestError(f"{where}.name: required, a non-empty string")
    where = _input_path(name)
    if not isinstance(shape, list) or not 1 <= len(shape) <= 2 or any(type(d) is not int or d < 0 for d in shape):
        raise InvalidRequestError(f"{where}.shape: must be [n] or [n, {len(FEATURE_NAMES)}] with whole n >= 0")
    if datatype not in V2_DATATYPES:
        raise InvalidRequestError(f"{where}.datatype: {datatype!r} is not a V2 datatype ({', '.join(V2_DATATYPES)})")
    count = math.prod(shape)
    _check_count(count // (shape[1] if len(shape) == 2 and shape[1] else 1), where)
    parameters = item.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise InvalidRequestError(f"{where}.parameters: must be an object")
    size = parameters.get("binary_data_size")
    if ("data" in item) == (size is not None):
        raise InvalidRequestError(f"{where}: give exactly one of data or parameters.binary_data_size")
    if size is not None:
        if type(size) is not int or size < 0 or offset + size > len(binary):
            raise InvalidRequestError(
                f"{where}.parameters.binary_data_size: {size!r} does not fit the {len(binary) - offset} bytes left"
            )
        values = _binary_values(bytes(binary[offset : offset + size]), datatype, count, where)
        return V2Input(name, shape, datatype, values), offset + size
    values = _flat(item["data"], where)
    if len(values) != count:
        raise InvalidRequestError(f"{where}: {len(values)} values do not fill shape {shape}")
    _check_values(values, datatype, where)
    return V2Input(name, shape, datatype, values), offset


def decode_v2(body: bytes, header_length: str | None = None) -> V2Request:
    """Check a V2 request body (JSON, or JSON + binary tensor data) against the V2 protocol.

    Raises ``InvalidRequestError`` naming the field for anything the protocol does not
    allow: unknown fields and datatypes, duplicate input names, values that are not of
    the declared datatype, data that does not fill the shape, binary sizes that do not add up.
    """
    text, binary = _split_binary(body, header_length)
    try:
        payload = orjson.loads(text)
    except orjson.JSONDecodeError as e:
        raise InvalidRequestError(f"body: not valid JSON ({e})") from e
    if not isinstance(payload, dict) or not isinstance(payload.get("inputs"), list) or not payload["inputs"]:
        raise InvalidRequestError('inputs: required, a non-empty list; send {"inputs": [...]}')
    unknown = sorted(set(payload) - V2_REQUEST_KEYS - KSERVE_REQUEST_KEYS)
    if unknown:
        expected = ", ".join(sorted(V2_REQUEST_KEYS | KSERVE_REQUEST_KEYS))
        raise InvalidRequestError(f"{field(unknown[0])}: unknown top-level field; expected {expected}")
    for key in KSERVE_REQUEST_KEYS:
        if payload.get(key) is not None and not isinstance(payload[key], str):
            raise InvalidRequestError(f"{key}: must be a string")
    request_id, parameters = payload.get("id"), payload.get("parameters")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidRequestError("id: must be a string")
    if parameters is not None and not isinstance(parameters, dict):
        raise InvalidRequestError("parameters: must be an object")
    if len(payload["inputs"]) > len(FEATURE_NAMES):
        raise InvalidRequestError(f"inputs: at most {len(FEATURE_NAMES)} inputs, got {len(payload['inputs'])}")
    inputs, offset, view = [], 0, memoryview(binary)
    for index, item in enumerate(payload["inputs"]):
        decoded, offset = _v2_input(item, index, view, offset)
        if any(i.name == decoded.name for i in inputs):
            raise InvalidRequestError(f"{_input_path(decoded.name)}: given twice; each input name once")
        inputs.append(decoded)
    if offset != len(binary):
        raise InvalidRequestError(f"body: {len(binary) - offset} bytes of binary data are not claimed by any input")
    outputs = _requested_outputs(payload.get("outputs"))
    return V2Request(request_id, parameters, inputs, outputs, payload.get("model_name"), payload.get("model_version"))


def _requested_outputs(outputs: Any) -> list[str] | None:
    if outputs is None:
        return None
    named = isinstance(outputs, list) and all(isinstance(o, dict) and isinstance(o.get("name"), str) for o in outputs)
    if not named:
        raise InvalidRequestError('outputs: must be a list of {"name": ...} objects')
    return [o["name"] for o in outputs]


def _v2_values(name: str, values: list, datatype: str) -> np.ndarray:
    if name == "origin" and datatype == "BYTES":
        unknown = [n for n in values if n.lower() not in ORIGIN_NAMES]
        if unknown:
            raise InvalidRequestError(f"inputs.origin: {unknown[0]!r} is not 1, 2, 3 or usa, europe, japan")
        return np.array([ORIGIN_NAMES[n.lower()] for n in values], dtype=float)
    if datatype in {"BYTES", "BOOL"}:
        raise InvalidRequestError(f"{_input_path(name)}: datatype {datatype} is not numeric; use FP64, FP32 or INT*")
    return np.asarray(values, dtype=float)


def parse_v2(inputs: list[tuple[str, list[int], str, list]]) -> np.ndarray:
    """Decoded V2 inputs (``decode_v2``) as (name, shape, datatype, flat data) -> (n, 7) matrix.

    Either one input per feature, each of shape [n], or one input of shape [n, 7] in
    canonical order.
    """
    if len(inputs) == 1 and inputs[0][0] not in FEATURE_NAMES:
        name, shape, datatype, data = inputs[0]
        if len(shape) != 2 or shape[1] != len(FEATURE_NAMES):
            raise InvalidRequestError(f"{_input_path(name)}: shape must be [n, {len(FEATURE_NAMES)}], got {shape}")
        _check_count(shape[0], _input_path(name))
        matrix = _v2_values(name, data, datatype)
        return _checked(matrix.reshape(shape[0], len(FEATURE_NAMES)), _input_path(name))
    by_name = {}
    for name, shape, datatype, data in inputs:
        if name not in FEATURE_NAMES:
            raise InvalidRequestError(f"{_input_path(name)}: unknown input; expected {', '.join(FEATURE_NAMES)}")
        if len(shape) != 1:
            raise InvalidRequestError(f"{_input_path(name)}: shape must be [n], got {shape}")
        by_name[name] = _v2_values(name, data, datatype)
    missing = [n for n in FEATURE_NAMES if n not in by_name]
    if missing:
        raise InvalidRequestError(f"inputs.{missing[0]}: required input is missing")
    sizes = {v.size for v in by_name.values()}
    if len(sizes) != 1:
        raise InvalidRequestError(f"inputs: all inputs must have the same length, got {sorted(sizes)}")
    _check_count(sizes.pop(), "inputs")
    return _checked(np.column_stack([by_name[n] for n in FEATURE_NAMES]), "inputs")

"""Malformed requests: every one gets a 4xx naming what is wrong, and the server keeps serving."""

from __future__ import annotations

import json
import struct

import httpx
import pytest

from core.features import FEATURE_NAMES

CAR = [4, 140, 90, 2800, 15.5, 1976, 1]
NAMED = dict(zip(FEATURE_NAMES, CAR, strict=True))
V1 = "/v1/models/mpg:predict"
V2 = "/v2/models/mpg/infer"


def v2_named(**changes):
    inputs = [{"name": n, "shape": [1], "datatype": "FP64", "data": [v]} for n, v in NAMED.items()]
    return {"inputs": [{**i, **changes.get(i["name"], {})} for i in inputs if changes.get(i["name"]) != "drop"]}


CASES = [
    # (id, path, raw body or JSON, expected status, text the error must contain)
    # kserve decodes JSON bodies itself (orjson) and names the position of a syntax error
    ("not-json", V1, b'{"instances": [[4, 140', 400, "line 1 column 23"),
    ("body-is-a-list", V1, [CAR], 400, "instances"),
    ("no-instances", V1, {"rows": [CAR]}, 400, "instances"),
    ("unknown-top-level", V1, {"instances": [CAR], "extra": 1}, 400, "extra"),
    ("instances-not-list", V1, {"instances": {"a": 1}}, 400, "instances"),
    ("empty-instances", V1, {"instances": []}, 400, "at least one"),
    ("short-row", V1, {"instances": [CAR, CAR[:6]]}, 400, "instances[1]"),
    ("string-in-row", V1, {"instances": [[4, 140, "ninety", 2800, 15.5, 1976, 1]]}, 400, "instances[0].horsepower"),
    ("null-in-row", V1, {"instances": [[4, 140, 90, None, 15.5, 1976, 1]]}, 400, "instances[0].weight"),
    ("bool-in-row", V1, {"instances": [[True, 140, 90, 2800, 15.5, 1976, 1]]}, 400, "instances[0].cylinders"),
    ("negative-weight", V1, {"instances": [[4, 140, 90, -2800, 15.5, 1976, 1]]}, 400, "instances[0].weight"),
    ("origin-7", V1, {"instances": [{**NAMED, "origin": 7}]}, 400, "instances[0].origin"),
    ("origin-name-unknown", V1, {"instances": [{**NAMED, "origin": "mars"}]}, 400, "instances[0].origin"),
    ("cylinders-7", V1, {"instances": [{**NAMED, "cylinders": 7}]}, 400, "instances[0].cylinders"),
    ("two-digit-year", V1, {"instances": [{**NAMED, "model_year": 76}]}, 400, "instances[0].model_year"),
    ("fractional-year", V1, {"instances": [{**NAMED, "model_year": 1976.5}]}, 400, "instances[0].model_year"),
    (
        "missing-field",
        V1,
        {"instances": [{k: v for k, v in NAMED.items() if k != "weight"}]},
        400,
        "instances[0].weight",
    ),
    ("unknown-field", V1, {"instances": [{**NAMED, "colour": "red"}]}, 400, "instances[0].colour"),
    ("string-number", V1, {"instances": [{**NAMED, "displacement": "140"}]}, 400, "instances[0].displacement"),
    ("infinite", V1, b'{"instances": [[4, 140, 90, 2800, 1e999, 1976, 1]]}', 400, "infinity"),
    ("form-encoded-not-json", V1, b"cylinders=4", 400, "body: not valid JSON"),
    ("instance-is-number", V1, {"instances": [42]}, 400, "instances[0]"),
    ("batch-too-large", V1, {"instances": [CAR] * 1001}, 413, "at most 1000"),
    ("body-too-large", V1, b'{"instances": [' + b"[4,140,90,2800,15.5,1976,1]," * 40000 + b"[1]]}", 413, "larger than"),
    ("v2-unknown-input", V2, v2_named(weight={"name": "mass"}), 400, "inputs.mass"),
    ("v2-missing-input", V2, v2_named(weight="drop"), 400, "inputs.weight"),
    ("v2-bytes-datatype", V2, v2_named(weight={"datatype": "BYTES", "data": ["heavy"]}), 400, "inputs.weight"),
    (
        "v2-tensor-shape",
        V2,
        {"inputs": [{"name": "x", "shape": [1, 6], "datatype": "FP64", "data": CAR[:6]}]},
        400,
        "inputs.x",
    ),
    ("v2-length-mismatch", V2, v2_named(weight={"shape": [2], "data": [2800, 2900]}), 400, "same length"),
    ("v2-out-of-domain", V2, v2_named(origin={"data": [9]}), 400, "inputs[0].origin"),
    ("v2-two-digit-year", V2, v2_named(model_year={"data": [76]}), 400, "four-digit"),
    (
        "v2-huge-integer-as-fp64",
        V2,
        b'{"inputs": [{"name": "x", "shape": [1, 7], "datatype": "FP64", "data": [8, 307, 130, 1'
        + b"0" * 400
        + b", 12, 1970, 1]}]}",
        400,
        "body",
    ),
    ("v2-datatype-X", V2, v2_named(weight={"datatype": "X"}), 400, "inputs.weight.datatype"),
    ("v2-datatype-FP6", V2, v2_named(weight={"datatype": "FP6"}), 400, "inputs.weight.datatype"),
    ("v2-number-as-string", V2, v2_named(cylinders={"data": ["8"]}), 400, "inputs.cylinders.data[0]"),
    ("v2-fraction-as-int64", V2, v2_named(displacement={"datatype": "INT64", "data": [307.5]}), 400, "INT64"),
    ("v2-bool-as-fp64", V2, v2_named(weight={"data": [True]}), 400, "inputs.weight.data[0]"),
    ("v2-int8-overflow", V2, v2_named(weight={"datatype": "INT8", "data": [2800]}), 400, "INT8"),
    ("v2-null-value", V2, v2_named(weight={"data": [None]}), 400, "inputs.weight.data[0]"),
    (
        "v2-duplicate-input",
        V2,
        {"inputs": v2_named()["inputs"][:6] + [{"name": "weight", "shape": [1], "datatype": "FP64", "data": [1]}]},
        400,
        "given twice",
    ),
    ("v2-unknown-input-field", V2, v2_named(weight={"colour": "red"}), 400, "inputs[3].colour"),
    ("v2-unknown-top-level", V2, {**v2_named(), "extra": 1}, 400, "extra"),
    ("v2-inputs-not-list", V2, {"inputs": {"name": "x"}}, 400, "inputs"),
    ("v2-shape-not-ints", V2, v2_named(weight={"shape": ["1"]}), 400, "inputs.weight.shape"),
    ("v2-shape-vs-data", V2, v2_named(weight={"shape": [2]}), 400, "inputs.weight"),
    ("v2-unknown-output", V2, {**v2_named(), "outputs": [{"name": "kpl"}]}, 400, "outputs.kpl"),
    ("v2-too-many-cars", V2, v2_named(weight={"shape": [5000]}), 413, "at most 1000"),
]


@pytest.mark.parametrize(("path", "body", "status", "named"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_request_is_a_4xx_naming_the_problem(base_url, path, body, status, named):
    if isinstance(body, bytes):
        kind = "application/x-www-form-urlencoded" if body.startswith(b"cylinders") else "application/json"
        response = httpx.post(base_url + path, content=body, headers={"content-type": kind})
    else:
        response = httpx.post(base_url + path, json=body)
    assert response.status_code == status, response.text
    assert named in response.json()["error"]


def test_server_is_still_ready_and_correct_after_the_bad_requests(base_url):
    for case in CASES:  # hammer once more, then check
        httpx.post(
            base_url + case[1],
            content=case[2] if isinstance(case[2], bytes) else None,
            json=None if isinstance(case[2], bytes) else case[2],
        )
    assert httpx.get(f"{base_url}/v2/models/mpg/ready").status_code == 200
    response = httpx.post(base_url + V1, json={"instances": [CAR]})
    assert response.status_code == 200 and 5 < response.json()["predictions"][0]["mpg"] < 60


BINARY_HEAD = {"inputs": [{"name": "x", "shape": [1, 7], "datatype": "FP64", "parameters": {"binary_data_size": 56}}]}


def binary_request(base_url, head: dict, data: bytes, length: str | None = None) -> httpx.Response:
    text = json.dumps(head).encode()
    headers = {"inference-header-content-length": length or str(len(text)), "content-type": "application/octet-stream"}
    return httpx.post(base_url + V2, content=text + data, headers=headers)


def test_binary_tensor_data_is_served_like_json(base_url):
    response = binary_request(base_url, BINARY_HEAD, struct.pack("<7d", *CAR))
    assert response.status_code == 200, response.text
    as_json = httpx.post(
        base_url + V2, json={"inputs": [{"name": "x", "shape": [1, 7], "datatype": "FP64", "data": CAR}]}
    )
    assert response.json()["outputs"] == as_json.json()["outputs"]


@pytest.mark.parametrize(
    ("head_size", "length", "data", "named"),
    [
        (56, "abc", struct.pack("<7d", *CAR), "inference-header-content-length"),
        (56, "-5", struct.pack("<7d", *CAR), "inference-header-content-length"),
        (56, "99999", struct.pack("<7d", *CAR), "inference-header-content-length"),
        (56, None, struct.pack("<6d", *CAR[:6]), "binary_data_size"),
        (-8, None, struct.pack("<7d", *CAR), "binary_data_size"),
        (48, None, struct.pack("<7d", *CAR), "binary_data_size"),
        (56, None, struct.pack("<7d", *CAR) + b"extra", "not claimed"),
        (56, None, struct.pack("<7d", *CAR[:6], float("nan")), "non-finite"),
    ],
    ids=[
        "length-abc",
        "length-negative",
        "length-too-big",
        "data-too-short",
        "size-negative",
        "size-wrong",
        "trailing-bytes",
        "nan",
    ],
)
def test_malformed_binary_data_is_a_400_naming_the_problem(base_url, head_size, length, data, named):
    head = {"inputs": [{**BINARY_HEAD["inputs"][0], "parameters": {"binary_data_size": head_size}}]}
    response = binary_request(base_url, head, data, length)
    assert response.status_code == 400, response.text
    assert named in response.json()["error"]


def test_a_field_of_the_wrong_type_and_one_outside_its_domain_are_named_together(base_url):
    car = dict(zip(FEATURE_NAMES, [4, 140, 90, None, 15.5, 76, "usa"], strict=True))
    answer = httpx.post(f"{base_url}/v1/models/mpg:predict", json={"instances": [car]})
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert "instances[0].weight: must be a finite number" in error
    assert "instances[0].model_year: must be within [1900, 2100] four-digit year" in error

"""Contract tests: the clients a KServe user reaches for first, run as their users run them, against the real
predictor on loopback serving the model production serves (the shipped one). Each prediction is compared to
1e-6 with the model file's own `predict`, not only the status code.

- KServe's Python client, `kserve.InferenceRESTClient` (the version constraints.txt pins): V1, V2 JSON, V2 binary
  (it puts `model_name` at the top level of a V2 body, `InferRequest.to_rest`), server live and ready, model ready;
- Triton's `tritonclient.http`: V2 JSON and binary, live, model ready, model metadata;
- plain curl, as docs/serving.md shows it.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from importlib.metadata import version

import numpy as np
import pytest

from core.features import FEATURE_NAMES
from core.model_card import load_model
from tests.serving.conftest import running_server

CARS = np.array(
    [
        [8, 307.0, 130.0, 3504.0, 12.0, 1970, 1],
        [4, 97.0, 88.0, 2130.0, 14.5, 1970, 3],
        [4, 140.0, 86.0, 2790.0, 15.6, 1982, 1],
    ],
    dtype=float,
)
TOLERANCE = 1e-6


@pytest.fixture(scope="module")
def production(tmp_path_factory, served_dir):
    """The predictor serving the shipped model, and that model's own predictions for CARS."""
    model, _ = load_model(served_dir, None)
    with running_server(str(served_dir), tmp_path_factory.mktemp("clients")) as (base, _, _):
        yield base, model.predict(CARS)


def v2_inputs(binary: bool, client: str):
    """The seven features as V2 inputs, one per feature, with KServe's or Triton's classes."""
    if client == "kserve":
        from kserve import InferInput
    else:
        from tritonclient.http import InferInput
    inputs = []
    for index, name in enumerate(FEATURE_NAMES):
        item = InferInput(name, [len(CARS)], "FP64")
        column = CARS[:, index].astype(np.float64)
        item.set_data_from_numpy(column, binary_data=binary)
        inputs.append(item)
    return inputs


def test_kserve_client_v1_predicts_what_the_model_file_predicts(production):
    from kserve import InferenceRESTClient, RESTConfig

    base, expected = production

    async def call():
        async with InferenceRESTClient(RESTConfig(protocol="v1")) as client:
            return await client.infer(base, {"instances": CARS.tolist()}, model_name="mpg")

    answer = asyncio.run(call())
    served = np.array([p["mpg"] for p in answer["predictions"]])
    assert np.max(np.abs(served - expected)) <= TOLERANCE


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_kserve_client_v2_with_its_top_level_model_name_predicts_what_the_model_file_predicts(production, binary):
    """kserve's InferRequest.to_rest() sends {"id", "model_name", "inputs"}: refusing model_name refused the
    protocol's reference client (400 "unknown top-level field" before)."""
    from kserve import InferenceRESTClient, InferRequest, RESTConfig

    base, expected = production
    request = InferRequest("mpg", v2_inputs(binary, "kserve"), request_id="contract-1")
    body, json_length = request.to_rest()
    if not binary:
        assert "model_name" in body, "the client's own body: model_name beside the protocol's fields"

    async def call():
        async with InferenceRESTClient(RESTConfig(protocol="v2")) as client:
            return await client.infer(base, request, model_name="mpg")

    answer = asyncio.run(call())
    served = next(o for o in answer.outputs if o.name == "mpg").as_numpy()
    assert np.max(np.abs(served - expected)) <= TOLERANCE
    assert answer.model_name == "mpg"


def test_a_model_name_or_version_in_the_body_that_is_not_the_urls_is_a_400_naming_it(production):
    import httpx

    base, _ = production
    car = zip(FEATURE_NAMES, CARS[0], strict=True)
    inputs = [{"name": n, "shape": [1], "datatype": "FP64", "data": [float(v)]} for n, v in car]
    wrong = httpx.post(f"{base}/v2/models/mpg/infer", json={"model_name": "other", "inputs": inputs})
    assert wrong.status_code == 400 and wrong.json()["error"].startswith("model_name: 'other' is not the model")
    version_ = httpx.post(f"{base}/v2/models/mpg/infer", json={"model_version": "7", "inputs": inputs})
    assert version_.status_code == 400 and version_.json()["error"].startswith("model_version: '7' is not a version")
    typed = httpx.post(f"{base}/v2/models/mpg/infer", json={"model_name": 1, "inputs": inputs})
    assert typed.status_code == 400 and typed.json()["error"] == "model_name: must be a string"
    other = httpx.post(f"{base}/v2/models/mpg/infer", json={"modelname": "mpg", "inputs": inputs})
    assert other.status_code == 400 and "modelname: unknown top-level field" in other.json()["error"]
    listed = httpx.get(f"{base}/v2/models/mpg").json()["versions"]
    right = httpx.post(
        f"{base}/v2/models/mpg/infer", json={"model_name": "mpg", "model_version": listed[0], "inputs": inputs}
    )
    assert right.status_code == 200


def test_kserve_client_health_and_readiness(production):
    from kserve import InferenceRESTClient, RESTConfig

    base, _ = production

    async def call():
        async with InferenceRESTClient(RESTConfig(protocol="v2")) as client:
            return (
                await client.is_server_live(base),
                await client.is_server_ready(base),
                await client.is_model_ready(base, "mpg"),
            )

    assert asyncio.run(call()) == (True, True, True)


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_triton_client_predicts_what_the_model_file_predicts(production, binary):
    import tritonclient.http as triton

    base, expected = production
    client = triton.InferenceServerClient(base.removeprefix("http://"))
    try:
        assert client.is_server_live() and client.is_model_ready("mpg")
        outputs = [triton.InferRequestedOutput("mpg", binary_data=binary)]
        answer = client.infer("mpg", v2_inputs(binary, "triton"), outputs=outputs)
        assert np.max(np.abs(answer.as_numpy("mpg") - expected)) <= TOLERANCE
        metadata = client.get_model_metadata("mpg")
        assert metadata["name"] == "mpg" and [i["name"] for i in metadata["inputs"]] == list(FEATURE_NAMES)
        # server metadata (GET /v2) is not served: the predictor's surface is the routes clients need
        # (serving/routes.py, tests/serving/test_surface.py); the model's metadata is
    finally:
        client.close()


def test_curl_as_the_readme_shows_it(production, root):
    base, expected = production
    body = json.dumps({"instances": CARS.tolist()})
    result = subprocess.run(
        ["curl", "-sS", "-X", "POST", f"{base}/v1/models/mpg:predict", "-H", "Content-Type: application/json",
         "-d", body],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    served = np.array([p["mpg"] for p in json.loads(result.stdout)["predictions"]])
    assert np.max(np.abs(served - expected)) <= TOLERANCE
    assert "/v1/models/mpg:predict" in (root / "docs/serving.md").read_text(), "docs/serving.md shows this call"


def test_the_client_versions_tested_are_the_pinned_ones(root):
    pins = (root / "constraints.txt").read_text()
    for package in ("kserve", "tritonclient"):
        assert f"\n{package}=={version(package)}\n" in pins

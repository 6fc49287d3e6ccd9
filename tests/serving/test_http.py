"""The predictor on loopback: both protocols, metadata, health, and predictions equal to model.joblib."""

from __future__ import annotations

import signal

import httpx
import numpy as np
import pytest

from core.features import FEATURE_NAMES
from core.model_card import read_card
from tests.serving.conftest import running_server

CAR = [4, 140, 90, 2800, 15.5, 1976, 1]
NAMED = dict(zip(FEATURE_NAMES, CAR, strict=True))


def v1(base_url: str, body) -> httpx.Response:
    return httpx.post(f"{base_url}/v1/models/mpg:predict", json=body, timeout=10)


def v2(base_url: str, inputs: list[dict]) -> httpx.Response:
    return httpx.post(f"{base_url}/v2/models/mpg/infer", json={"inputs": inputs}, timeout=10)


def test_v1_positional_batch_equals_the_model_file(base_url, model, dataset, trained_dir):
    rows = dataset.X.to_numpy()[:100]
    response = v1(base_url, {"instances": rows.tolist()})
    assert response.status_code == 200
    body = response.json()
    predicted = np.array([p["mpg"] for p in body["predictions"]])
    assert np.max(np.abs(predicted - model.predict(rows))) <= 1e-9
    litres = np.array([p["l_per_100km"] for p in body["predictions"]])
    assert np.allclose(predicted * litres, 235.214583)
    assert body["model_id"] == read_card(trained_dir).id


def test_v1_named_instances_with_origin_names(base_url):
    positional = v1(base_url, {"instances": [CAR[:6] + [3]]}).json()["predictions"][0]
    named = v1(base_url, {"instances": [{**NAMED, "origin": "japan"}]}).json()["predictions"][0]
    assert named == positional


def test_v2_named_inputs_and_single_tensor_agree_with_v1(base_url):
    expected = v1(base_url, {"instances": [CAR, CAR]}).json()["predictions"][0]["mpg"]
    named = v2(base_url, [{"name": n, "shape": [2], "datatype": "FP64", "data": [v, v]} for n, v in NAMED.items()])
    tensor = v2(base_url, [{"name": "input-0", "shape": [2, 7], "datatype": "FP64", "data": CAR + CAR}])
    for response in (named, tensor):
        assert response.status_code == 200, response.text
        outputs = {o["name"]: o for o in response.json()["outputs"]}
        assert outputs["mpg"]["data"] == [expected, expected]
        assert outputs["l_per_100km"]["shape"] == [2]
    origin_names = v2(
        base_url,
        [
            {
                "name": n,
                "shape": [1],
                "datatype": "BYTES" if n == "origin" else "FP64",
                "data": ["usa"] if n == "origin" else [v],
            }
            for n, v in NAMED.items()
        ],
    )
    assert origin_names.status_code == 200, origin_names.text


def test_inputs_outside_the_training_range_are_flagged_not_rejected(base_url):
    response = v1(base_url, {"instances": [{**NAMED, "model_year": 1995, "weight": 7000}]})
    assert response.status_code == 200
    assert response.json()["predictions"][0]["outside_training_range"] == ["weight", "model_year"]


def test_metadata_health_and_metrics(base_url, trained_dir):
    metadata = httpx.get(f"{base_url}/v2/models/mpg").json()
    assert [i["name"] for i in metadata["inputs"]] == list(FEATURE_NAMES)
    assert [o["name"] for o in metadata["outputs"]] == ["mpg", "l_per_100km", "outside_training_range"]
    assert metadata["versions"] == [read_card(trained_dir).id]
    assert httpx.get(f"{base_url}/v2/health/ready").json() == {"ready": True}
    assert httpx.get(f"{base_url}/v2/models/mpg/ready").status_code == 200

    def predictions_counted() -> float:
        text = httpx.get(f"{base_url}/metrics").text
        line = next(li for li in text.splitlines() if li.startswith('mpg_http_request_seconds_count{route="predict"}'))
        return float(line.split()[-1])

    before = predictions_counted()
    for _ in range(3):
        v1(base_url, {"instances": [CAR]})
    assert predictions_counted() == before + 3, "every prediction is timed on /metrics"


def test_server_listens_on_loopback_only(server):
    port = int(server[0].rsplit(":", 1)[1])
    listening = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as handle:
            for line in handle.readlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                    listening.append(local.rsplit(":", 1)[0])
    assert listening == ["0100007F"]


def test_tampered_model_leaves_the_server_not_ready_with_a_clear_message(model_copy, tmp_path):
    with open(model_copy / "model.joblib", "ab") as handle:
        handle.write(b"tampered")
    with running_server(str(model_copy), tmp_path, ready=False) as (base, _, log):
        assert httpx.get(f"{base}/v2/models/mpg/ready").status_code == 503
        assert v1(base, {"instances": [CAR]}).status_code == 503
        text = log.read_text()
        assert "NOT loaded" in text and "refusing to unpickle" in text


def test_sigterm_stops_the_server_cleanly(trained_dir, tmp_path):
    with running_server(str(trained_dir), tmp_path) as (_, process, _log):
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        assert "Application shutdown complete" in _log.read_text()


@pytest.mark.parametrize("protocol", ["v1", "v2"])
def test_a_batch_of_100_is_served_in_one_request(base_url, dataset, model, protocol):
    rows = dataset.X.to_numpy()[100:200]
    if protocol == "v1":
        predicted = [p["mpg"] for p in v1(base_url, {"instances": rows.tolist()}).json()["predictions"]]
    else:
        data = rows.ravel().tolist()
        response = v2(base_url, [{"name": "x", "shape": [100, 7], "datatype": "FP64", "data": data}])
        predicted = next(o for o in response.json()["outputs"] if o["name"] == "mpg")["data"]
    assert np.max(np.abs(np.array(predicted) - model.predict(rows))) <= 1e-9

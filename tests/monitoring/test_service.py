"""The monitor over HTTP (the real `mlops monitor serve`, SQLite and PostgreSQL): events, feedback, summary."""

from __future__ import annotations

import base64
import json
import re
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import orjson
import pytest

from monitoring.service import FEEDBACK_GRACE, FEEDBACK_HOLD
from tests.monitoring.conftest import CAR, MODEL, binary_event, post_event, v1_request, v1_response


def summary(base: str) -> dict:
    return httpx.get(f"{base}/summary").json()


def test_binary_events_pair_in_either_order_and_redelivery_changes_nothing(monitor):
    before = summary(monitor)["predictions"]
    assert post_event(monitor, "a", "request", v1_request()).status_code == 202
    assert post_event(monitor, "a", "response", v1_response()).status_code == 202
    assert post_event(monitor, "b", "response", v1_response()).status_code == 202
    assert post_event(monitor, "b", "request", v1_request()).status_code == 202
    for _ in range(2):
        post_event(monitor, "a", "request", v1_request())
        post_event(monitor, "a", "response", v1_response())
    state = summary(monitor)
    assert state["predictions"] == before + 2 and state["models"][0]["model_id"] == MODEL
    assert state["models"][0]["namespace"] == "mpg-staging"


def test_structured_events_and_v2_payloads(monitor):
    before = summary(monitor)["predictions"]
    request = {
        "specversion": "1.0",
        "id": "s1",
        "type": "org.kubeflow.serving.inference.request",
        "source": "test",
        "data": {"inputs": [{"name": "x", "shape": [1, 7], "datatype": "FP64", "data": CAR}]},
    }
    response_payload = {
        "outputs": [
            {"name": "mpg", "shape": [1], "datatype": "FP64", "data": [22.0]},
            {"name": "l_per_100km", "shape": [1], "datatype": "FP64", "data": [10.7]},
            {"name": "outside_training_range", "shape": [1], "datatype": "BYTES", "data": ["weight"]},
        ],
        "parameters": {"model_id": MODEL},
    }
    response = {
        **request,
        "type": "org.kubeflow.serving.inference.response",
        "data_base64": base64.b64encode(orjson.dumps(response_payload)).decode(),
    }
    del response["data"]
    for event in (request, response):
        answer = httpx.post(f"{monitor}/", json=event, headers={"content-type": "application/cloudevents+json"})
        assert answer.status_code == 202, answer.text
    assert summary(monitor)["predictions"] == before + 1


MALFORMED = [
    # (id, headers changed, body, status, named)
    (
        "not-a-cloudevent",
        {"ce-id": None, "ce-type": None, "content-type": "application/json"},
        v1_request(),
        415,
        "send a CloudEvent",
    ),
    ("no-id", {"ce-id": None}, v1_request(), 400, "ce-id"),
    ("no-type", {"ce-type": None}, v1_request(), 400, "ce-type"),
    ("unknown-type", {"ce-type": "com.example.other"}, v1_request(), 400, "ce-type"),
    ("no-source", {"ce-source": None}, v1_request(), 400, "ce-source"),
    ("bad-specversion", {"ce-specversion": "0.3"}, v1_request(), 400, "ce-specversion"),
    ("bad-time", {"ce-time": "yesterday"}, v1_request(), 400, "ce-time"),
    ("id-too-long", {"ce-id": "x" * 300}, v1_request(), 400, "ce-id"),
    (
        "response-not-json",
        {"ce-type": "org.kubeflow.serving.inference.response"},
        b'{"predictions": [',
        400,
        "not valid JSON",
    ),
    (
        "response-without-model",
        {"ce-type": "org.kubeflow.serving.inference.response"},
        {"predictions": [{"mpg": 1, "l_per_100km": 2, "outside_training_range": []}]},
        400,
        "model id",
    ),
    (
        "response-not-numbers",
        {"ce-type": "org.kubeflow.serving.inference.response"},
        {"model_id": MODEL, "predictions": [{"mpg": "a", "l_per_100km": 2, "outside_training_range": []}]},
        400,
        "not a number",
    ),
    (
        "response-missing-output",
        {"ce-type": "org.kubeflow.serving.inference.response"},
        {"model_id": MODEL, "predictions": [{"mpg": 1}]},
        400,
        "predictions[0]",
    ),
    ("structured-not-object", {"content-type": "application/cloudevents+json"}, [1, 2], 400, "JSON object"),
    (
        "structured-bad-base64",
        {"content-type": "application/cloudevents+json"},
        {
            "specversion": "1.0",
            "id": "x",
            "type": "org.kubeflow.serving.inference.request",
            "source": "s",
            "data_base64": "%%%",
        },
        400,
        "data_base64",
    ),
    ("too-large", {}, b'{"instances": [' + b"[4,140,90,2800,15.5,1976,1]," * 60000 + b"[1]]}", 413, "larger than"),
]


@pytest.mark.parametrize(
    ("changes", "body", "status", "named"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED]
)
def test_a_malformed_event_is_a_4xx_naming_the_problem_and_stores_nothing(monitor, changes, body, status, named):
    before = summary(monitor)
    headers, content = binary_event("bad", "request", body)
    for key, value in changes.items():
        if value is None:
            headers.pop(key)
        else:
            headers[key] = value
    answer = httpx.post(f"{monitor}/", content=content, headers=headers)
    assert answer.status_code == status, answer.text
    assert named in answer.json()["error"]
    assert summary(monitor) == before


#: What KServe's agent logs besides predictions: it logs every request through the predictor's Service but
#: probes (kserve pkg/agent/logger: every proxied request and response), so the monitor sees model metadata and
#: readiness polls (GET, empty body), /metrics scrapes (text), V2 binary bodies and the requests the predictor
#: refused with the parsers the monitor shares, with their error answers.
NOT_PREDICTIONS = [
    ("metadata-poll", "request", {}, b""),
    ("metadata-answer", "response", {}, {"name": "mpg", "versions": [MODEL], "platform": "mpg"}),
    ("readiness-answer", "response", {}, {"name": "mpg", "ready": True}),
    ("metrics-scrape", "response", {"content-type": "text/plain; version=0.0.4"}, b"mpg_http_requests_total 3\n"),
    ("v2-binary", "request", {"content-type": "application/octet-stream"}, b"\x00\x01\x02"),
    ("refused-not-json", "request", {}, b'{"instances": ['),
    ("refused-no-instances", "request", {}, {"rows": [CAR]}),
    ("refused-short-car", "request", {}, {"instances": [CAR[:6]]}),
    ("refused-out-of-domain", "request", {}, {"instances": [[4, 140, 90, -1, 15.5, 1976, 1]]}),
    ("error-answer", "response", {}, {"error": "instances[0].weight: must be within [100, 20000] lb"}),
]


@pytest.mark.parametrize(("event_id", "kind", "changes", "body"), NOT_PREDICTIONS, ids=[n[0] for n in NOT_PREDICTIONS])
def test_what_the_logger_logs_besides_predictions_is_counted_not_stored_and_not_an_alert(
    monitor, event_id, kind, changes, body
):
    before, counted = summary(monitor), event_counts(monitor)
    headers, content = binary_event(event_id, kind, body)
    headers.update(changes)
    answer = httpx.post(f"{monitor}/", content=content, headers=headers)
    assert answer.status_code == 202 and answer.json()["stored"] is False, answer.text
    assert summary(monitor) == before
    after = event_counts(monitor)
    assert after.get((kind, "not_prediction"), 0) == counted.get((kind, "not_prediction"), 0) + 1
    assert after.get((kind, "rejected"), 0) == counted.get((kind, "rejected"), 0), (
        "MpgMonitorRejectingEvents counts rejections: these must not fire it"
    )


def event_counts(monitor) -> dict[tuple[str, str], float]:
    found = re.findall(
        r'^mpg_monitor_events_total\{kind="(\w+)",result="(\w+)"\} (\S+)$', httpx.get(f"{monitor}/metrics").text, re.M
    )
    return {(kind, result): float(value) for kind, result, value in found}


def test_feedback_in_mpg_or_litres_for_a_stored_prediction(monitor):
    post_event(monitor, "f", "request", v1_request())
    post_event(monitor, "f", "response", v1_response())
    before = summary(monitor)["feedback"]
    stored = httpx.post(f"{monitor}/feedback", json={"request_id": "f", "actual_l_per_100km": 9.41})
    assert stored.status_code == 201 and stored.json()["actual_mpg"] == pytest.approx(25.0, abs=0.01)
    assert summary(monitor)["feedback"] == before + 1
    started = time.monotonic()
    unknown = httpx.post(f"{monitor}/feedback", json={"request_id": "nope", "actual_mpg": 20}, timeout=30)
    assert unknown.status_code == 404 and "no prediction 'nope'" in unknown.json()["error"]
    assert time.monotonic() - started < FEEDBACK_GRACE + 1, "no traffic since: answered after the grace"


def test_an_unknown_feedback_is_held_while_predictions_arrive_and_no_longer(monitor):
    with ThreadPoolExecutor(1) as pool:
        started = time.monotonic()
        pending = pool.submit(httpx.post, f"{monitor}/feedback", json={"request_id": "zz", "actual_mpg": 9}, timeout=30)
        answered = []
        pending.add_done_callback(lambda _: answered.append(time.monotonic()))
        for i in range(int(FEEDBACK_HOLD * 4) + 4):  # other predictions keep arriving meanwhile
            post_event(monitor, f"traffic-{i}", "request", v1_request())
            time.sleep(0.25)
        answer = pending.result()
    assert answer.status_code == 404
    assert FEEDBACK_HOLD - 0.5 <= answered[0] - started < FEEDBACK_HOLD + 1.5, "held the whole hold, no longer"


def test_feedback_sent_before_its_prediction_arrives_is_held_until_it_does(monitor):
    """The payload logger posts a prediction after answering it: feedback typed at once can come first."""
    with ThreadPoolExecutor(1) as pool:
        started = time.monotonic()
        early = pool.submit(
            httpx.post, f"{monitor}/feedback", json={"request_id": "early", "actual_mpg": 30}, timeout=30
        )
        time.sleep(FEEDBACK_GRACE / 2)
        assert not early.done(), "held, not refused"
        post_event(monitor, "early", "request", v1_request())
        post_event(monitor, "early", "response", v1_response())
        answer = early.result()
    assert answer.status_code == 201, answer.text
    assert FEEDBACK_GRACE / 2 <= time.monotonic() - started < FEEDBACK_HOLD


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"actual_mpg": 20}, "request_id"),
        ({"request_id": "f"}, "give exactly one"),
        ({"request_id": "f", "actual_mpg": 20, "actual_l_per_100km": 11}, "give exactly one"),
        ({"request_id": "f", "actual_mpg": -3}, "positive"),
        ({"request_id": "f", "actual_mpg": "twenty"}, "positive"),
        ({"request_id": "f", "actual_mpg": 5000}, "not a plausible consumption"),
        ({"request_id": "f", "row": -1, "actual_mpg": 20}, "row"),
        ({"request_id": "f", "actual_mpg": 20, "colour": "red"}, "colour"),
    ],
)
def test_malformed_feedback_is_a_400_naming_the_field(monitor, body, named):
    answer = httpx.post(f"{monitor}/feedback", json=body)
    assert answer.status_code == 400 and named in answer.json()["error"]


def test_health_readiness_metrics_and_unknown_routes(monitor):
    assert httpx.get(f"{monitor}/healthz").json() == {"live": True}
    assert httpx.get(f"{monitor}/readyz").json() == {"ready": True}

    def counted(result: str) -> float:
        text = httpx.get(f"{monitor}/metrics").text
        prefix = f'mpg_monitor_events_total{{kind="request",result="{result}"}} '
        return next((float(line.removeprefix(prefix)) for line in text.splitlines() if line.startswith(prefix)), 0.0)

    stored, rejected, waiting = counted("accepted"), counted("rejected"), summary(monitor)["unpaired_halves"]
    post_event(monitor, "m-lonely", "request", v1_request())
    headers, content = binary_event("m-bad", "request", v1_request())
    headers["ce-specversion"] = "0.3"  # a malformed event, not a refused request
    httpx.post(f"{monitor}/", content=content, headers=headers)
    assert (counted("accepted"), counted("rejected")) == (stored + 1, rejected + 1)
    assert httpx.get(f"{monitor}/nowhere").status_code == 404
    assert httpx.get(f"{monitor}/feedback").status_code == 405
    assert json.loads(httpx.get(f"{monitor}/summary").text)["unpaired_halves"] == waiting + 1

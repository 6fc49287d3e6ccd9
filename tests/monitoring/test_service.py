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
from tests.conftest import one_line_error, run_mlops
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
    ("time-in-the-future", {"ce-time": "9999-12-31T00:00:00Z"}, v1_request(), 400, "in the future"),
    (
        "model-id-not-hex",
        {"ce-type": "org.kubeflow.serving.inference.response"},
        {"model_id": "z" * 64, "predictions": [{"mpg": 1, "l_per_100km": 2, "outside_training_range": []}]},
        400,
        "64 hex digits",
    ),
    (
        "unknown-range-flag",
        {"ce-type": "org.kubeflow.serving.inference.response"},
        {"model_id": MODEL, "predictions": [{"mpg": 1, "l_per_100km": 2, "outside_training_range": ["x" * 300]}]},
        400,
        "feature names",
    ),
    (
        "v2-parameters-a-list",
        {"ce-type": "org.kubeflow.serving.inference.response"},
        {"outputs": [], "parameters": [1, 2]},
        400,
        "data.parameters",
    ),
    (
        "too-many-predictions",
        {"ce-type": "org.kubeflow.serving.inference.response"},
        {"model_id": MODEL, "predictions": [{"mpg": 1, "l_per_100km": 2, "outside_training_range": []}] * 1001},
        413,
        "at most 1000",
    ),
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
    # V2 model metadata as the predictor answers it and the agent logs it (with no content type: a GET's)
    (
        "v2-metadata-answer",
        "response",
        {"content-type": ""},
        {
            "name": "mpg",
            "versions": [MODEL],
            "platform": "",
            "inputs": [{"name": "cylinders", "datatype": "FP64", "shape": [-1]}],
            "outputs": [{"name": "mpg", "datatype": "FP64", "shape": [-1]}],
        },
    ),
    # what the agent really sends for a scrape: the request's (a GET's: no) Content-Type, on the text answer
    (
        "metrics-scrape",
        "response",
        {"content-type": ""},
        b"# HELP mpg_http_requests_total x\nmpg_http_requests_total 3\n",
    ),
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


def structured(event_id: str, kind: str, data, **attributes) -> dict:
    return {"specversion": "1.0", "id": event_id, "type": f"org.kubeflow.serving.inference.{kind}",
            "source": "s", "time": "2026-11-20T10:00:00Z", "data": data, **attributes}  # fmt: skip


def test_a_nul_anywhere_is_refused_and_never_takes_the_good_events_of_its_batch_down(monitor):
    """PostgreSQL refuses NUL in text: one such event used to fail the whole group commit it rode in (300 good
    events sent, 150 stored). Validated now before it is acknowledged; every good pair is stored."""
    before = summary(monitor)["predictions"]
    hostile = [
        structured("nul\u0000id", "request", v1_request()),
        structured("nul-ns", "request", v1_request(), namespace="mpg\u0000staging"),
    ]

    def post(index: int) -> int:
        if index % 10 == 0:
            body = hostile[index // 10 % 2]
            answer = httpx.post(f"{monitor}/", json=body, headers={"content-type": "application/cloudevents+json"})
            return answer.status_code
        return max(post_event(monitor, f"good-{index}", kind, payload).status_code
                   for kind, payload in (("request", v1_request()), ("response", v1_response())))  # fmt: skip

    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(post, range(160)))
    assert {codes[i] for i in range(0, 160, 10)} == {400} and {c for i, c in enumerate(codes) if i % 10} == {202}
    assert summary(monitor)["predictions"] == before + 144


def test_a_feedback_id_with_a_nul_is_a_400_and_reports_for_one_car_at_once_all_land(monitor):
    assert post_event(monitor, "same-car", "request", v1_request()).status_code == 202
    assert post_event(monitor, "same-car", "response", v1_response()).status_code == 202
    bad = httpx.post(f"{monitor}/feedback", json={"request_id": "a\u0000b", "actual_mpg": 20})
    assert bad.status_code == 400 and bad.json()["error"].startswith("request_id:")
    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(
            lambda mpg: httpx.post(f"{monitor}/feedback", json={"request_id": "same-car", "actual_mpg": mpg},
                                   timeout=30),
            range(20, 30),
        ))  # fmt: skip
    assert [a.status_code for a in answers] == [201] * 10, [a.text for a in answers if a.status_code != 201]


def test_large_events_are_refused_without_stalling_the_monitor(monitor):
    """A response of 116,000 predictions in 800 KB used to be parsed on the event loop (0.37 s each): 16 at
    once stalled /healthz for 10 s. Now capped like requests, and parsed in a thread."""
    outputs = [
        {"name": n, "datatype": "FP64", "shape": [116_000], "data": [1.5] * 116_000} for n in ("mpg", "l_per_100km")
    ]
    outputs.append({"name": "outside_training_range", "datatype": "BYTES", "shape": [116_000], "data": [""] * 116_000})
    body = {"outputs": outputs, "parameters": {"model_id": MODEL}}
    headers, content = binary_event("huge", "response", body)
    assert len(content) > 512 * 1024
    with ThreadPoolExecutor(16) as pool:
        futures = [
            pool.submit(httpx.post, f"{monitor}/", content=content, headers=headers, timeout=60) for _ in range(16)
        ]
        slowest = 0.0
        while not all(f.done() for f in futures):
            started = time.monotonic()
            assert httpx.get(f"{monitor}/healthz", timeout=10).status_code == 200
            slowest = max(slowest, time.monotonic() - started)
        assert {f.result().status_code for f in futures} == {413}
    assert slowest < 2.0, f"/healthz took {slowest:.2f} s during the large events"


def test_reports_from_one_client_are_limited_and_a_reporter_token_is_trusted_and_not_limited(tmp_path):
    """The monitor's own limit (nginx in front limits the same way): 429 with Retry-After past the burst; a
    reporter's token (MLOPS_FEEDBACK_TOKENS) marks a report trusted; an unknown token is a 401. Here loopback is
    the trusted proxy (as nginx is in front of the monitor on a laptop): its X-Real-IP names another client."""
    import os

    from tests.monitoring.conftest import running_monitor

    os.environ["MLOPS_FEEDBACK_TOKENS"] = "fleet:" + "t" * 24
    try:
        with running_monitor(f"sqlite:///{tmp_path / 'm.db'}", "--feedback-rate", "6", "--feedback-burst", "3",
                             "--trusted-proxy", "127.0.0.0/8") as (base, _):  # fmt: skip
            post_event(base, "lim", "request", v1_request())
            post_event(base, "lim", "response", v1_response())
            report = {"request_id": "lim", "actual_mpg": 25}
            codes = [httpx.post(f"{base}/feedback", json=report, timeout=30).status_code for _ in range(5)]
            assert codes == [201, 201, 201, 429, 429]
            limited = httpx.post(f"{base}/feedback", json=report, timeout=30)
            assert int(limited.headers["retry-after"]) >= 1 and limited.json()["error"].startswith("client:")
            other = httpx.post(f"{base}/feedback", json=report, headers={"x-real-ip": "192.0.2.7"}, timeout=30)
            assert other.status_code == 201, "the proxy's other client has its own allowance"
            trusted = [httpx.post(f"{base}/feedback", json=report, headers={"authorization": "Bearer " + "t" * 24},
                                  timeout=30) for _ in range(5)]  # fmt: skip
            assert [t.status_code for t in trusted] == [201] * 5 and trusted[0].json()["trusted"] is True
            wrong = httpx.post(f"{base}/feedback", json=report, headers={"authorization": "Bearer nope"})
            assert wrong.status_code == 429, "a wrong token from a client past its allowance: limited, not checked"
    finally:
        del os.environ["MLOPS_FEEDBACK_TOKENS"]


# The review's bypasses: X-Real-IP believed from any peer (40/40 reports unlimited when the monitor was reached
# directly), and any Authorization header lifting the limit (40/40 unthrottled 401s: token guessing).
FORGED = ["192.0.2.1", "192.0.2.2", "2001:db8::1", "10.0.0.9", "127.0.0.2", "192.0.2.3, 192.0.2.4", "unknown"]


@pytest.mark.parametrize("proxies", [(), ("--trusted-proxy", "10.0.0.0/8")], ids=["no proxy", "another proxy"])
def test_a_client_naming_other_addresses_or_guessing_tokens_shares_one_allowance(tmp_path, proxies):
    from tests.monitoring.conftest import running_monitor

    env = {"MLOPS_FEEDBACK_TOKENS": "fleet:" + "t" * 24}
    with running_monitor(f"sqlite:///{tmp_path / 'm.db'}", "--feedback-rate", "6", "--feedback-burst", "3",
                         *proxies, env=env) as (base, _):  # fmt: skip
        post_event(base, "lim", "request", v1_request())
        post_event(base, "lim", "response", v1_response())
        report = {"request_id": "lim", "actual_mpg": 25}
        codes = [httpx.post(f"{base}/feedback", json=report, headers={"x-real-ip": address}, timeout=30).status_code
                 for address in FORGED]  # fmt: skip
        assert codes == [201] * 3 + [429] * (len(FORGED) - 3), "one peer, one allowance, whatever it says it is"
    with running_monitor(f"sqlite:///{tmp_path / 'n.db'}", "--feedback-rate", "6", "--feedback-burst", "3",
                         *proxies, env=env) as (base, _):  # fmt: skip
        guesses = [httpx.post(f"{base}/feedback", json=report, headers={"authorization": f"Bearer guess-{i:012d}"},
                              timeout=30) for i in range(8)]  # fmt: skip
        assert [g.status_code for g in guesses] == [401] * 3 + [429] * 5, "a wrong token costs the allowance"
        assert "client:" in guesses[-1].json()["error"]
        right = httpx.post(f"{base}/feedback", json=report, headers={"authorization": "Bearer " + "t" * 24})
        assert right.status_code != 401, "the right token still works (the limit is not a lockout of reporters)"


def test_a_trusted_proxy_that_is_not_an_address_is_a_usage_error(tmp_path):
    result = run_mlops("monitor", "serve", "--db", f"sqlite:///{tmp_path / 'm.db'}", "--trusted-proxy", "nginx")
    assert one_line_error(result, 2) == (
        "Error: Invalid value for --trusted-proxy: 'nginx' is not an address or network "
        "(for example 127.0.0.1 or 10.0.0.0/8) (see 'mlops monitor serve --help')"
    )

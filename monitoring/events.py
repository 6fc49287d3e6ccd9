"""KServe's inference-logger CloudEvents: parsed, checked, reduced to what the monitor stores.

The logger posts one event for the request and one for the response of every
prediction, both with the request's id (``ce-id``), in binary mode (``ce-*`` headers,
the payload as the body) or structured mode (``application/cloudevents+json``, the
payload in ``data`` or ``data_base64``). A request half carries the cars (V1
``instances`` or V2 ``inputs``, checked by the predictor's own parsers); a response
half carries the predictions and the model id. The logger also logs what is not a
prediction (``NotAPrediction``: polls, scrapes, binary bodies, refused requests): counted,
answered 2xx, not stored. A malformed event is an ``EventError`` naming what is wrong,
answered 4xx, and nothing is stored.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from core.features import FEATURE_NAMES
from serving.schema import MAX_INSTANCES, InvalidRequestError, decode_v2, parse_v1, parse_v2

REQUEST_TYPE = "org.kubeflow.serving.inference.request"
RESPONSE_TYPE = "org.kubeflow.serving.inference.response"
KINDS = {REQUEST_TYPE: "request", RESPONSE_TYPE: "response"}
STRUCTURED = "application/cloudevents+json"
MAX_ID = 200
MAX_CLOCK_SKEW = 300.0  # seconds an event's time may be ahead of the monitor's clock
OUTPUTS = ("mpg", "l_per_100km", "outside_training_range")
MODEL_ID = re.compile(r"[0-9a-f]{64}")


class ClientError(ValueError):
    """A request the monitor refuses: ``str`` names the problem; ``status`` is the HTTP answer."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


class EventError(ClientError):
    """A malformed event (400, or 415 when it is no CloudEvent at all)."""


class NotAPrediction(Exception):  # noqa: N818 - an outcome, not an error: the event is fine, just not one of ours
    """A well-formed event of the logger that logs no prediction: answered 2xx, counted, not stored.

    KServe's agent logs every request through the predictor's Service but probes: model metadata and
    readiness polls (GETs, empty bodies), /metrics scrapes (text), V2 binary bodies, and the requests the
    predictor refused with the same parsers used here, with their error answers.
    """


@dataclass(frozen=True)
class Half:
    """One side of a prediction, checked and reduced: ``rows`` are cars (request) or predictions (response)."""

    event_id: str
    kind: str  # request | response
    service: str
    namespace: str
    time: float  # seconds since the epoch: the event's ce-time, else when it arrived
    rows: list[list[Any]]
    model_id: str | None = None


CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
#: The same rule as a JSON Schema pattern, for the OpenAPI descriptions.
PRINTABLE_PATTERN = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$"


def printable(value: Any, limit: int = MAX_ID) -> bool:
    """A string a database stores and a log shows as given: at most ``limit`` characters, none of them a control
    character (PostgreSQL refuses a NUL in text, and one such row used to fail the whole batch it was in)."""
    return isinstance(value, str) and len(value) <= limit and not CONTROL.search(value)


def _attribute(attributes: dict[str, Any], name: str, required: bool = True) -> str | None:
    value = attributes.get(name)
    if value is None or value == "":
        if required:
            raise EventError(f"ce-{name}: required CloudEvents attribute is missing")
        return None
    if not printable(value):
        raise EventError(f"ce-{name}: must be a string of at most {MAX_ID} printable characters")
    return value


def _time(value: str | None, received: float) -> float:
    """The event's time: an RFC 3339 time no later than ``MAX_CLOCK_SKEW`` after it arrived (a time in the future
    would sort after every real event and stay the last one recorded for ever)."""
    if value is None:
        return received
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as e:
        raise EventError(f"ce-time: {value[:40]!r} is not an RFC 3339 time") from e
    if moment.tzinfo is None:
        raise EventError(f"ce-time: {value[:40]!r} has no time zone (RFC 3339 needs one)")
    if moment.timestamp() > received + MAX_CLOCK_SKEW:
        raise EventError(f"ce-time: {value[:40]!r} is in the future (more than {MAX_CLOCK_SKEW:.0f} s ahead)")
    return moment.timestamp()


def _json(body: bytes, where: str) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise EventError(f"{where}: not valid JSON ({e})") from e


def split(headers: dict[str, str], body: bytes) -> tuple[dict[str, Any], bytes]:
    """CloudEvents attributes and the payload bytes, from either content mode."""
    content_type = headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == STRUCTURED:
        envelope = _json(body, "body")
        if not isinstance(envelope, dict):
            raise EventError("body: a structured CloudEvent must be a JSON object")
        attributes = {k: v for k, v in envelope.items() if k not in ("data", "data_base64")}
        if "data_base64" in envelope:
            try:
                payload = base64.b64decode(envelope["data_base64"], validate=True)
            except (ValueError, TypeError) as e:
                raise EventError("data_base64: not valid base64") from e
        elif "data" in envelope:
            payload = orjson.dumps(envelope["data"])
        else:
            raise EventError("data: a structured CloudEvent needs data or data_base64")
        return attributes, payload
    if "ce-id" not in headers and "ce-type" not in headers:
        given = repr(content_type[:40]) if content_type else "missing"
        raise EventError(f"content-type: {given}, and no ce-* headers: send a CloudEvent (ce-* or {STRUCTURED})", 415)
    attributes = {key[3:]: value for key, value in headers.items() if key.startswith("ce-")}
    return attributes, body


def _request_rows(payload: Any) -> list[list[Any]]:
    """The cars of a request; one the predictor's parsers refuse was refused by the predictor too."""
    try:
        if isinstance(payload, dict) and "inputs" in payload:
            decoded = decode_v2(orjson.dumps(payload))
            matrix = parse_v2([(i.name, i.shape, i.datatype, i.data) for i in decoded.inputs])
        else:
            matrix = parse_v1(payload)
    except InvalidRequestError as e:
        raise NotAPrediction(f"a request the predictor refused ({str(e)[:100]})") from e
    return matrix.tolist()


def _response_rows(payload: Any) -> tuple[list[list[Any]], str]:
    """(mpg, l/100 km, outside-range flags) per car of a V1 or V2 answer, and the model id it names."""
    if not isinstance(payload, dict) or not ({"predictions", "outputs"} & set(payload)):
        raise NotAPrediction("an answer without predictions (an error, metadata, readiness)")
    outputs = payload.get("outputs")
    if (
        "predictions" not in payload
        and isinstance(outputs, list)
        and outputs
        and not any(isinstance(o, dict) and "data" in o for o in outputs)
    ):  # V2 model metadata lists its outputs too, without data: GET /v2/models/<name> through the agent
        raise NotAPrediction("model metadata (outputs without data)")
    rows, model_id = _v1_rows(payload) if "predictions" in payload else _v2_rows(payload)
    if not isinstance(model_id, str) or not MODEL_ID.fullmatch(model_id):
        raise EventError("data: the response names no model id (model_id / parameters.model_id: 64 hex digits)")
    for index, (mpg, litres, flags) in enumerate(rows):
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (mpg, litres)):
            raise EventError(f"data: prediction {index} is not a number")
        if not isinstance(flags, list) or not set(flags) <= set(FEATURE_NAMES) or len(flags) != len(set(flags)):
            raise EventError(f"data: prediction {index}: outside_training_range must list feature names, once each")
    return rows, model_id


def _v1_rows(payload: dict) -> tuple[list[list[Any]], Any]:
    predictions = payload["predictions"]
    if not isinstance(predictions, list) or not predictions:
        raise EventError("data.predictions: must be a non-empty list")
    if len(predictions) > MAX_INSTANCES:
        raise EventError(f"data.predictions: {len(predictions)}, at most {MAX_INSTANCES} per event", 413)
    rows = []
    for index, prediction in enumerate(predictions):
        if not isinstance(prediction, dict) or not all(k in prediction for k in OUTPUTS):
            raise EventError(f"data.predictions[{index}]: must hold {', '.join(OUTPUTS)}")
        rows.append([prediction[k] for k in OUTPUTS])
    return rows, payload.get("model_id")


def _v2_rows(payload: dict) -> tuple[list[list[Any]], Any]:
    parameters = payload.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise EventError("data.parameters: must be an object")
    if not isinstance(payload["outputs"], list):
        raise EventError("data.outputs: must be a list")
    outputs = {o.get("name"): o.get("data") for o in payload["outputs"] if isinstance(o, dict)}
    if not all(isinstance(outputs.get(k), list) for k in OUTPUTS) or len({len(outputs[k]) for k in OUTPUTS}) != 1:
        raise EventError(f"data.outputs: must hold {', '.join(OUTPUTS)} of one length")
    if len(outputs["mpg"]) > MAX_INSTANCES:
        raise EventError(f"data.outputs: {len(outputs['mpg'])} rows, at most {MAX_INSTANCES} per event", 413)
    columns = zip(*(outputs[k] for k in OUTPUTS), strict=True)
    rows = [
        [mpg, litres, flags.split(",") if isinstance(flags, str) and flags else flags or []]
        for mpg, litres, flags in columns
    ]
    return rows, parameters.get("model_id")


def _payload(headers: dict[str, str], attributes: dict[str, Any], body: bytes, kind: str) -> Any:
    """The JSON payload of a prediction's half; anything else the logger logs is ``NotAPrediction``."""
    if not body.strip():
        raise NotAPrediction("an empty body (a GET: metadata, readiness)")
    # KServe's agent stamps both halves with the request's Content-Type (pkg/logger/handler.go): none for a GET,
    # so a /metrics scrape's text answer comes without one. Only a half that says it is JSON and is not is refused.
    declared = str(attributes.get("datacontenttype") or headers.get("content-type") or "")
    content_type = declared.split(";")[0].strip().lower()
    if content_type and content_type != STRUCTURED and "json" not in content_type:
        raise NotAPrediction(f"a {content_type[:40]} body (V2 binary data, /metrics)")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as e:
        if kind == "request":
            raise NotAPrediction("a request body that is not JSON (refused by the predictor)") from e
        if not content_type:
            raise NotAPrediction("an answer that is not JSON, of a request without a content type (a GET)") from e
        raise EventError(f"data: not valid JSON ({e})") from e


def parse_event(headers: dict[str, str], body: bytes, received: float) -> Half:
    """A checked half of a prediction, or ``EventError`` naming the problem."""
    attributes, payload_bytes = split(headers, body)
    event_type = _attribute(attributes, "type")
    if event_type not in KINDS:
        raise EventError(f"ce-type: {event_type[:60]!r} is not {REQUEST_TYPE} or {RESPONSE_TYPE}")
    event_id = _attribute(attributes, "id")
    _attribute(attributes, "source")
    if attributes.get("specversion") != "1.0":
        raise EventError("ce-specversion: must be 1.0")
    kind = KINDS[event_type]
    payload = _payload(headers, attributes, payload_bytes, kind)
    if kind == "request":
        rows, model_id = _request_rows(payload), None
    else:
        rows, model_id = _response_rows(payload)
    return Half(
        event_id=event_id,
        kind=kind,
        service=_attribute(attributes, "inferenceservicename", required=False) or "",
        namespace=_attribute(attributes, "namespace", required=False) or "",
        time=_time(_attribute(attributes, "time", required=False), received),
        rows=rows,
        model_id=model_id,
    )

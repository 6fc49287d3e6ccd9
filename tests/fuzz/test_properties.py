"""Property-based tests (hypothesis) of every parser that takes outside input.

For any input: the parser either returns a valid result or raises its one client-error
type with a message naming a field; never another exception (which the servers would
answer with a 500). What it returns is always within the feature domains, so nothing
invalid is ever accepted. ``FUZZ_EXAMPLES`` (make fuzz) raises the number of examples.
"""

from __future__ import annotations

import math
import os
import re

import numpy as np
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.features import FEATURE_NAMES
from monitoring.events import ClientError, NotAPrediction, parse_event
from monitoring.service import parse_feedback
from serving.schema import InvalidRequestError, decode_v2, parse_v1, parse_v2

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# A message starts with the field it is about: instances[0].weight, inputs.weight, inputs['odd name'], ce-id
FIELD = re.compile(r"^([\w.\-]|\[\d+\]|\['[^\n]*?'\]|\[\"[^\n]*?\"\])+( \([^)]*\))?: [^\n]*$")


def _serialisable(value) -> bool:
    try:
        orjson.dumps(value)
    except TypeError:
        return False
    return True


def _dumps(value) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError:  # integers beyond 64 bits: what a client could not send as JSON numbers anyway
        return b"null"


json_leaves = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=20)
json_values = st.recursive(
    json_leaves,
    lambda inner: st.lists(inner, max_size=9) | st.dictionaries(st.text(max_size=15), inner, max_size=9),
    max_leaves=60,
)
feature_value = st.one_of(
    st.integers(-5, 2200),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1970, 1976, 2, 4, 8, 3, 1, 3500, 15.5]),
    st.text(max_size=6),
    st.none(),
    st.booleans(),
)
near_valid_v1 = st.fixed_dictionaries(
    {
        "instances": st.lists(
            st.one_of(
                st.lists(feature_value, min_size=6, max_size=8),
                st.dictionaries(st.sampled_from([*FEATURE_NAMES, "colour"]), feature_value, max_size=8),
            ),
            max_size=4,
        )
    }
)


#: The feature domains as the README documents them, written out again here: the oracle must not be the code
#: under test (core.features.domain_problems), or a bug there would be a bug here too.
DOMAINS = {
    "cylinders": lambda v: v in {2, 3, 4, 5, 6, 8, 10, 12, 16},
    "displacement": lambda v: 1 <= v <= 1000,
    "horsepower": lambda v: 1 <= v <= 2000,
    "weight": lambda v: 100 <= v <= 20000,
    "acceleration": lambda v: 1 <= v <= 60,
    "model_year": lambda v: 1900 <= v <= 2100 and v == int(v),
    "origin": lambda v: v in {1, 2, 3},
}


def _valid(matrix: np.ndarray) -> bool:
    """Every cell of a non-empty (n, 7) matrix a finite number inside its documented domain, cell by cell."""
    if matrix.ndim != 2 or matrix.shape[1] != len(DOMAINS) or len(matrix) == 0:
        return False
    return all(
        math.isfinite(v) and ok(v) for row in matrix.tolist() for v, ok in zip(row, DOMAINS.values(), strict=True)
    )


def test_the_oracle_names_the_features_in_their_order():
    assert list(DOMAINS) == list(FEATURE_NAMES)


@FUZZ
@given(json_values | near_valid_v1)
def test_v1_parsing_accepts_only_valid_cars_and_names_the_field_otherwise(payload):
    try:
        matrix = parse_v1(payload)
    except InvalidRequestError as e:
        assert FIELD.match(str(e)), str(e)
        assert e.status in (400, 413)
    else:
        assert _valid(matrix)


v2_input = st.fixed_dictionaries(
    {
        "name": st.text(max_size=10),
        "shape": st.lists(st.integers(-2, 9), max_size=3),
        "datatype": st.sampled_from(["FP64", "FP32", "INT64", "INT32", "BYTES", "BOOL", "FP16", "x"]),
        "data": st.lists(feature_value, max_size=21) | json_values,
    }
)


@FUZZ
@given(st.lists(v2_input, max_size=3) | json_values)
def test_v2_json_bodies_accept_only_valid_cars(inputs):
    body = orjson.dumps({"inputs": inputs}, option=orjson.OPT_SERIALIZE_NUMPY) if _serialisable(inputs) else b"{"
    try:
        decoded = decode_v2(body)
        matrix = parse_v2([(i.name, list(i.shape), i.datatype, i.data) for i in decoded.inputs])
    except InvalidRequestError as e:
        assert FIELD.match(str(e)), str(e)
    else:
        assert _valid(matrix)


@FUZZ
@given(st.binary(max_size=300), st.one_of(st.none(), st.integers(-5, 400).map(str), st.text(max_size=5)))
def test_v2_binary_bodies_never_break_the_decoder(body, header_length):
    try:
        decode_v2(body, header_length)
    except InvalidRequestError as e:
        assert FIELD.match(str(e)), str(e)


headers = st.fixed_dictionaries(
    {},
    optional={
        "ce-specversion": st.sampled_from(["1.0", "0.3", ""]),
        "ce-id": st.text(max_size=30),
        "ce-type": st.sampled_from(
            ["org.kubeflow.serving.inference.request", "org.kubeflow.serving.inference.response", "x"]
        ),
        "ce-source": st.text(max_size=10),
        "ce-time": st.text(max_size=30),
        "ce-inferenceservicename": st.text(max_size=10),
        "ce-namespace": st.text(max_size=10),
        "content-type": st.sampled_from(["application/json", "application/cloudevents+json", "text/plain"]),
    },
)


@FUZZ
@given(headers, st.one_of(st.binary(max_size=200), json_values.map(_dumps)))
def test_monitor_events_are_a_half_not_a_prediction_or_a_client_error(event_headers, body):
    try:
        half = parse_event(event_headers, body, 1.8e9)
    except ClientError as e:
        assert 400 <= e.status < 500 and FIELD.match(str(e)), str(e)
    except NotAPrediction as e:
        assert str(e), "says what it was"
    else:
        assert half.kind in ("request", "response") and half.event_id
        if half.kind == "request":
            assert _valid(np.array(half.rows, dtype=float))


@FUZZ
@given(json_values.map(_dumps) | st.binary(max_size=100))
def test_feedback_is_parsed_or_refused_by_field(body):
    try:
        request_id, row, mpg = parse_feedback(body)
    except ClientError as e:
        assert e.status == 400 and FIELD.match(str(e)), str(e)
    else:
        assert request_id and row >= 0 and 1 <= mpg <= 200

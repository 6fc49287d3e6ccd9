"""OpenAPI 3.1 description of the monitor's routes (see serving/openapi.py for why and how it is used)."""

from __future__ import annotations

from typing import Any

from core.features import MPG_L100KM_FACTOR, TARGET_DOMAIN
from monitoring.events import MAX_ID, PRINTABLE_PATTERN, REQUEST_TYPE, RESPONSE_TYPE
from serving.openapi import ERROR, json_body, predictor_openapi
from serving.schema import MAX_INSTANCES


def monitor_openapi() -> dict[str, Any]:
    predictor = predictor_openapi()["paths"]["/v1/models/mpg:predict"]["post"]
    v1_request = predictor["requestBody"]["content"]["application/json"]["schema"]
    v1_response = predictor["responses"]["200"]["content"]["application/json"]["schema"]
    low, high = TARGET_DOMAIN

    def header(name: str, schema: dict, required: bool = True) -> dict[str, Any]:
        return {"name": name, "in": "header", "required": required, "schema": schema}

    error = {"content": {"application/json": {"schema": ERROR}}}
    feedback = {
        "type": "object",
        "required": ["request_id"],
        "additionalProperties": False,
        "properties": {
            "request_id": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": PRINTABLE_PATTERN},
            "row": {"type": "integer", "minimum": 0, "maximum": MAX_INSTANCES - 1},
            "actual_mpg": {"type": "number", "minimum": low, "maximum": high},
            "actual_l_per_100km": {
                "type": "number",
                "minimum": round(MPG_L100KM_FACTOR / high, 4) + 0.0001,
                "maximum": round(MPG_L100KM_FACTOR / low, 4) - 0.0001,
            },
        },
        "oneOf": [{"required": ["actual_mpg"]}, {"required": ["actual_l_per_100km"]}],
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "mpg monitor", "version": "1", "description": "KServe payload log and stakeholder feedback"},
        "paths": {
            "/": {
                "post": {
                    "operationId": "event",
                    "description": "A binary-mode CloudEvent from KServe's inference logger",
                    "parameters": [
                        header("ce-specversion", {"const": "1.0"}),
                        header(
                            "ce-id",
                            {"type": "string", "minLength": 1, "maxLength": MAX_ID, "pattern": PRINTABLE_PATTERN},
                        ),
                        header("ce-type", {"enum": [REQUEST_TYPE, RESPONSE_TYPE]}),
                        header("ce-source", {"type": "string", "minLength": 1}),
                        header("ce-inferenceservicename", {"type": "string"}, required=False),
                        header("ce-namespace", {"type": "string"}, required=False),
                    ],
                    # What the logger logs through the predictor: a prediction's request (V1 or V2) or response,
                    # stored; anything else (an empty GET body, /metrics text, binary tensors, a refused request,
                    # an error answer) is a well-formed event of no prediction: counted, answered 202, not stored.
                    "requestBody": {
                        "required": False,
                        "content": {
                            "application/json": {"schema": {"anyOf": [v1_request, v1_response, {}]}},
                            "text/plain": {"schema": {"type": "string"}},
                            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                        },
                    },
                    "responses": {
                        "202": {"description": "accepted (a redelivery too), or counted as no prediction"},
                        "400": {"description": "a malformed event; the header or field is named", **error},
                        "413": {"description": "a body over the size limit", **error},
                        "415": {"description": "not a CloudEvent", **error},
                        "503": {"description": "the writer is too far behind its database", **error},
                    },
                }
            },
            "/feedback": {
                "post": {
                    "operationId": "feedback",
                    "requestBody": json_body(feedback),
                    "responses": {
                        "201": {"description": "recorded (a second report for a car replaces the first)"},
                        "400": {"description": "a malformed report; the field is named", **error},
                        "401": {"description": "an Authorization that is not a reporter's token", **error},
                        "404": {"description": "no prediction with this id (yet)", **error},
                        "429": {
                            "description": "this client reported too often (--feedback-rate); retry after Retry-After",
                            "headers": {"Retry-After": {"schema": {"type": "integer"}}},
                            **error,
                        },
                    },
                }
            },
            "/summary": {"get": {"operationId": "summary", "responses": {"200": {"description": "counts"}}}},
            "/healthz": {"get": {"operationId": "healthz", "responses": {"200": {"description": "alive"}}}},
            "/readyz": {"get": {"operationId": "readyz", "responses": {"200": {"description": "database answers"}}}},
        },
    }

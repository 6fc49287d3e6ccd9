"""OpenAPI 3.1 description of the predictor's routes, generated from the feature schema.

The servers do not publish it (their surface is the routes they serve, nothing else);
it describes the contract for API users and drives the schema-based fuzzing
(``tests/fuzz``, ``make fuzz``): every body valid here must be answered 200, every
invalid one 4xx, nothing 5xx. The domains come from ``core.features``, the limits from
``serving.schema``, so the description cannot drift from the checks.
"""

from __future__ import annotations

from typing import Any

from core.features import FEATURES, ORIGIN_NAMES
from serving.routes import PUBLIC
from serving.schema import MAX_INSTANCES, V2_DATATYPES

ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string", "description": "the field at fault first, then what is wrong"}},
}


def feature_schema(feature, names: bool = False) -> dict[str, Any]:
    """One feature's JSON schema: its domain, whole numbers where it counts, allowed values where it has them."""
    if feature.allowed:
        schema: dict[str, Any] = {"enum": list(feature.allowed)}
        if names and feature.name == "origin":
            schema = {"oneOf": [schema, {"type": "string", "enum": sorted(ORIGIN_NAMES)}]}
        return {**schema, "description": feature.unit}
    kind = "integer" if feature.integer else "number"
    return {"type": kind, "minimum": feature.minimum, "maximum": feature.maximum, "description": feature.unit}


def json_body(schema: dict) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _responses(ok: dict) -> dict[str, Any]:
    error = {"content": {"application/json": {"schema": ERROR}}}
    return {
        "200": {"description": "the answer", "content": {"application/json": {"schema": ok}}},
        "400": {"description": "a malformed request; the field is named", **error},
        "413": {"description": f"more than {MAX_INSTANCES} cars, or a body over the size limit", **error},
    }


def predictor_openapi(model: str = "mpg") -> dict[str, Any]:
    positional = {
        "type": "array",
        "prefixItems": [feature_schema(f) for f in FEATURES],
        "minItems": len(FEATURES),
        "maxItems": len(FEATURES),
        "description": "the seven features in canonical order",
    }
    named = {
        "type": "object",
        "required": [f.name for f in FEATURES],
        "additionalProperties": False,
        "properties": {f.name: feature_schema(f, names=True) for f in FEATURES},
    }
    prediction = {
        "type": "object",
        "required": ["mpg", "l_per_100km", "outside_training_range"],
        "properties": {
            "mpg": {"type": "number"},
            "l_per_100km": {"type": "number"},
            "outside_training_range": {"type": "array", "items": {"type": "string"}},
        },
    }
    v1_request = {
        "type": "object",
        "required": ["instances"],
        "additionalProperties": False,
        "properties": {
            "instances": {
                "type": "array",
                "minItems": 1,
                "maxItems": MAX_INSTANCES,
                "items": {"oneOf": [positional, named]},
            },
            "parameters": {"type": "object"},
        },
    }
    v1_response = {
        "type": "object",
        "required": ["model_id", "predictions"],
        "properties": {"model_id": {"type": "string"}, "predictions": {"type": "array", "items": prediction}},
    }
    v2_input = {
        "type": "object",
        "required": ["name", "shape", "datatype", "data"],
        "additionalProperties": False,
        "properties": {
            "name": {"type": "string", "minLength": 1},
            "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 1, "maxItems": 2},
            "datatype": {"enum": list(V2_DATATYPES)},
            "data": {"type": "array"},
            "parameters": {"type": "object"},
        },
        "description": "a [n, 7] tensor named after the model, or one [n] tensor per feature",
    }
    v2_request = {
        "type": "object",
        "required": ["inputs"],
        "additionalProperties": False,
        "properties": {
            "id": {"type": "string"},
            "inputs": {"type": "array", "minItems": 1, "maxItems": len(FEATURES), "items": v2_input},
            "outputs": {"type": "array", "items": {"type": "object", "required": ["name"]}},
            "parameters": {"type": "object"},
            # KServe's client sends these too (InferRequest.to_rest): the URL's model, one of its versions
            "model_name": {"type": "string", "description": "must be the model the URL names"},
            "model_version": {"type": "string", "description": "must be one of the model's versions"},
        },
    }
    v2_response = {
        "type": "object",
        "required": ["model_name", "outputs"],
        "properties": {"model_name": {"type": "string"}, "id": {"type": "string"}, "outputs": {"type": "array"}},
    }
    operations = {
        "predict": {
            "operationId": "predict",
            "requestBody": json_body(v1_request),
            "responses": _responses(v1_response),
        },
        "infer": {"operationId": "infer", "requestBody": json_body(v2_request), "responses": _responses(v2_response)},
        "metadata": {
            "operationId": "metadata",
            "responses": {"200": {"description": "inputs, outputs, versions (the model id)"}},
        },
        "ready": {"operationId": "ready", "responses": {"200": {"description": "loaded and verified"}}},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "mpg predictor", "version": "1", "description": "KServe V1 and V2 over the fuel model"},
        "paths": {route.for_model(model): {route.method.lower(): operations[route.name]} for route in PUBLIC},
    }

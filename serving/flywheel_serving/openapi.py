"""The OpenAPI 3.1 document of the REST API, served at `/v2/openapi.json` and `/openapi.json`."""

from __future__ import annotations

from typing import Any

from flywheel_serving.tensors import DATATYPES

ERROR = {"$ref": "#/components/schemas/Error"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "Malformed request (JSON, shape, datatype).",
        404: "No such model, version or endpoint.",
        408: "The request's headers or body arrived too slowly (the connection closes).",
        413: "The body is larger than the server accepts.",
        415: "A compressed body (Content-Encoding); send it uncompressed.",
        422: "Well-formed, but not valid for this model (features, missing or non-finite "
        "values, a value beyond float32, an output that would not be finite).",
        431: "The request's headers are too many or too large (the connection closes).",
        503: "The model is not loaded and verified, or the server is shutting down.",
    }
    return {str(code): _json(ERROR, text[code]) for code in codes}


def document(model: str) -> dict[str, Any]:
    """The OpenAPI document for a server of `model`."""
    name = {
        "name": "model_name",
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
        "example": model,
    }
    version = {
        "name": "model_version",
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
    }
    infer = {
        "summary": "Predict (Open Inference Protocol v2, with the binary tensor data extension).",
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/InferenceRequest"}},
                "application/octet-stream": {
                    "schema": {"type": "string", "format": "binary"},
                    "description": "The JSON request (its length in the "
                    "Inference-Header-Content-Length header), then the raw input bytes.",
                },
            },
        },
        "responses": {
            "200": _json({"$ref": "#/components/schemas/InferenceResponse"}, "Predictions."),
            **_errors(400, 404, 408, 413, 415, 422, 431, 503),
        },
    }
    feedback = {
        "summary": "Report true labels for earlier predictions (counted in the metrics).",
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Feedback"}}},
        },
        "responses": {
            "200": _json(
                {"type": "object", "properties": {"accepted": {"type": "integer"}}}, "Counted."
            ),
            **_errors(400, 404, 413, 422, 503),
        },
    }
    metadata = {
        "summary": "Model metadata: inputs, outputs, versions.",
        "responses": {
            "200": _json({"$ref": "#/components/schemas/ModelMetadata"}, "The model."),
            **_errors(404, 503),
        },
    }
    ready = {
        "summary": "Whether the model is ready.",
        "responses": {"200": _json({"type": "object"}, "Ready."), **_errors(404, 503)},
    }
    baseline = {
        "summary": "The training baseline the feature metrics are binned on "
        "(flywheel.dev/stats/v1), for the ModelMonitor.",
        "responses": {"200": _json({"type": "object"}, "The baseline."), **_errors(404, 503)},
    }
    paths: dict[str, Any] = {
        "/v2/health/live": {
            "get": {
                "summary": "Liveness.",
                "responses": {"200": _json({"type": "object"}, "Alive.")},
            }
        },
        "/v2/health/ready": {
            "get": {
                "summary": "Readiness: loaded, verified, warmed up.",
                "responses": {"200": _json({"type": "object"}, "Ready."), **_errors(503)},
            }
        },
        "/v2": {
            "get": {
                "summary": "Server metadata.",
                "responses": {"200": _json({"type": "object"}, "The server.")},
            }
        },
        "/v1/models/{model_name}:predict": {
            "post": {
                "summary": 'Predict with {"instances": [...]} (rows as lists or objects).',
                "parameters": [name],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["instances"],
                                "properties": {"instances": {"type": "array"}},
                            }
                        }
                    },
                },
                "responses": {
                    "200": _json(
                        {"type": "object", "properties": {"predictions": {"type": "array"}}},
                        "Predictions.",
                    ),
                    **_errors(400, 404, 413, 422, 503),
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics (text format).",
                "responses": {"200": {"description": "Metrics.", "content": {"text/plain": {}}}},
            }
        },
    }
    for prefix, parameters in (
        ("/v2/models/{model_name}", [name]),
        ("/v2/models/{model_name}/versions/{model_version}", [name, version]),
    ):
        paths[prefix] = {"get": {**metadata, "parameters": parameters}}
        paths[f"{prefix}/ready"] = {"get": {**ready, "parameters": parameters}}
        paths[f"{prefix}/infer"] = {"post": {**infer, "parameters": parameters}}
        paths[f"{prefix}/feedback"] = {"post": {**feedback, "parameters": parameters}}
        paths[f"{prefix}/baseline"] = {"get": {**baseline, "parameters": parameters}}
    tensor = {
        "type": "object",
        "required": ["name", "shape", "datatype"],
        "description": "`data`, or (binary tensor data extension) `parameters.binary_data_size`: "
        "that many raw little-endian bytes after the JSON, whose length the "
        "`Inference-Header-Content-Length` header gives; BYTES elements each prefixed by a "
        "4-byte little-endian length.",
        "properties": {
            "name": {
                "type": "string",
                "description": "A feature name, or any name for one "
                "2-D tensor holding every feature in order.",
            },
            "shape": {
                "type": "array",
                "items": {"type": "integer", "minimum": 0},
                "minItems": 1,
                "maxItems": 2,
            },
            "datatype": {"enum": sorted(DATATYPES)},
            "data": {"type": "array", "description": "Row-major values, flat or nested."},
            "parameters": {
                "type": "object",
                "properties": {"binary_data_size": {"type": "integer", "minimum": 0}},
            },
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": f"Flywheel model server ({model})",
            "version": "0.1.0",
            "description": "Open Inference Protocol v2 REST, plus label feedback.",
        },
        "paths": paths,
        "components": {
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {"error": {"type": "string"}},
                },
                "Tensor": tensor,
                "InferenceRequest": {
                    "type": "object",
                    "required": ["inputs"],
                    "properties": {
                        "id": {"type": "string"},
                        "parameters": {
                            "type": "object",
                            "properties": {
                                "binary_data_output": {
                                    "type": "boolean",
                                    "description": "Every output as raw bytes after the JSON.",
                                }
                            },
                        },
                        "inputs": {
                            "type": "array",
                            "minItems": 1,
                            "items": {"$ref": "#/components/schemas/Tensor"},
                        },
                        "outputs": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["name"],
                                "properties": {
                                    "name": {"type": "string"},
                                    "parameters": {
                                        "type": "object",
                                        "properties": {"binary_data": {"type": "boolean"}},
                                    },
                                },
                            },
                        },
                    },
                },
                "InferenceResponse": {
                    "type": "object",
                    "properties": {
                        "model_name": {"type": "string"},
                        "model_version": {"type": "string"},
                        "id": {"type": "string"},
                        "parameters": {"type": "object"},
                        "outputs": {
                            "type": "array",
                            "items": {"$ref": "#/components/schemas/Tensor"},
                        },
                    },
                },
                "ModelMetadata": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string"},
                        "versions": {"type": "array"},
                        "platform": {"type": "string"},
                        "inputs": {"type": "array"},
                        "outputs": {"type": "array"},
                    },
                },
                "Feedback": {
                    "type": "object",
                    "description": "One item ({prediction, label}), "
                    "parallel lists ({predictions, labels}) or {items: [...]}.",
                    "properties": {
                        "id": {"type": "string"},
                        "prediction": {},
                        "label": {},
                        "predictions": {"type": "array"},
                        "labels": {"type": "array"},
                        "items": {"type": "array"},
                    },
                },
            }
        },
    }

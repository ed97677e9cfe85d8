"""The OpenAPI 3 document of ``modelport serve``'s HTTP surface, served at ``/openapi.json`` and
shipped as docs/openapi.json (regenerate: ``python -m modelport.serve.http.openapi >
docs/openapi.json``; a test checks the two agree).

KServe V2 (with Triton's binary tensor extension headers), TF Serving REST, TorchServe inference
and the management API (on its own port: the operations say so with a ``servers`` override).
"""

from __future__ import annotations

import json
from typing import Any

from ... import __version__

__all__ = ["openapi_document"]

_JSON = "application/json"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {"content": {_JSON: {"schema": schema}}}
    out["description"] = description or "JSON"
    return out


def _errors(*codes: int, shape: str = "Error") -> dict[str, Any]:
    texts = {
        400: "malformed request, wrong input name/datatype/shape, inputs disagreeing on a shared "
        "dimension, bad parameter",
        401: "inference auth is on and the bearer token is missing or wrong",
        403: "management/repository call from a non-loopback peer or without the management token",
        404: "unknown model, version or label",
        409: "the version already exists",
        413: "body over --max-request-mb (also after inflation), or rows/elements over the "
        "model's max_request_rows / max_tensor_elements",
        415: "Content-Encoding other than gzip, deflate or identity",
        429: "TF Serving's status for RESOURCE_EXHAUSTED (over a limit)",
        431: "request line and headers over 64 KB",
        499: "the client went away",
        501: "not implemented (TF Serving :classify/:regress, load parameters)",
        503: "model loading, failed, unloaded or its queue full; or too many connections",
        504: "not answered within the model's timeout_ms",
    }
    return {str(c): _json(_ref(shape), texts[c]) for c in codes}


def _params(*names: str) -> list[dict[str, Any]]:
    schemas = {
        "name": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]*$"},
        "version": {"type": "string", "pattern": "^[0-9]+$"},
        "label": {"type": "string"},
    }
    return [{"name": n, "in": "path", "required": True, "schema": schemas[n]} for n in names]


def _schemas() -> dict[str, Any]:
    shape = {"type": "array", "items": {"type": "integer", "minimum": 0}}
    datatype = {
        "type": "string",
        "enum": [
            "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
            "FP16", "FP32", "FP64", "BYTES",
        ],
    }  # fmt: skip
    tensor_params = {
        "type": "object",
        "properties": {"binary_data_size": {"type": "integer", "minimum": 0}},
    }
    return {
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {"error": {"type": "string"}},
        },
        "TorchServeError": {
            "type": "object",
            "required": ["code", "type", "message"],
            "properties": {
                "code": {"type": "integer"},
                "type": {"type": "string"},
                "message": {"type": "string"},
            },
        },
        "RequestInput": {
            "type": "object",
            "required": ["name", "shape", "datatype"],
            "properties": {
                "name": {"type": "string"},
                "shape": shape,
                "datatype": datatype,
                "parameters": tensor_params,
                "data": {"description": "flat or nested list (absent for binary inputs)"},
            },
        },
        "RequestOutput": {
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
        "InferenceRequest": {
            "type": "object",
            "required": ["inputs"],
            "properties": {
                "id": {"type": "string"},
                "parameters": {
                    "type": "object",
                    "properties": {
                        "binary_data_output": {"type": "boolean"},
                        "timeout": {"type": "integer", "description": "microseconds"},
                    },
                },
                "inputs": {"type": "array", "minItems": 1, "items": _ref("RequestInput")},
                "outputs": {"type": "array", "items": _ref("RequestOutput")},
            },
        },
        "ResponseOutput": {
            "type": "object",
            "required": ["name", "shape", "datatype"],
            "properties": {
                "name": {"type": "string"},
                "shape": shape,
                "datatype": datatype,
                "parameters": tensor_params,
                "data": {"type": "array"},
            },
        },
        "InferenceResponse": {
            "type": "object",
            "required": ["model_name", "outputs"],
            "properties": {
                "model_name": {"type": "string"},
                "model_version": {"type": "string"},
                "id": {"type": "string"},
                "outputs": {"type": "array", "items": _ref("ResponseOutput")},
            },
        },
        "ModelMetadata": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "versions": {"type": "array", "items": {"type": "string"}},
                "platform": {"type": "string"},
                "inputs": {"type": "array", "items": {"type": "object"}},
                "outputs": {"type": "array", "items": {"type": "object"}},
            },
        },
        "RepositoryIndex": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "version": {"type": "string"},
                    "state": {"type": "string"},
                    "reason": {"type": "string"},
                },
            },
        },
        "PredictRequest": {
            "type": "object",
            "description": 'row format ("instances") or columnar format ("inputs"), not both',
            "properties": {
                "signature_name": {"type": "string"},
                "instances": {"type": "array"},
                "inputs": {},
            },
        },
    }


def _op(summary: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"summary": summary, "responses": responses, **extra}


def _empty(description: str) -> dict[str, Any]:
    return {"description": description}


def _v2_paths() -> dict[str, Any]:
    m, mv = "/v2/models/{name}", "/v2/models/{name}/versions/{version}"
    infer_body = {
        "required": True,
        "content": {
            _JSON: {"schema": _ref("InferenceRequest")},
            "application/octet-stream": {
                "schema": {
                    "type": "string",
                    "format": "binary",
                    "description": "the JSON header (Inference-Header-Content-Length bytes), "
                    "then the binary tensors in input order",
                },
            },
        },
    }
    infer_headers = [
        {
            "name": "Inference-Header-Content-Length",
            "in": "header",
            "required": False,
            "description": "length of the JSON part when binary tensors follow (decimal digits)",
            "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"},
        },
        {
            "name": "Content-Encoding",
            "in": "header",
            "required": False,
            "schema": {"type": "string", "enum": ["gzip", "deflate", "identity"]},
        },
    ]
    infer_ok = {
        "description": "the outputs; binary outputs follow the JSON when asked for (response "
        "header Inference-Header-Content-Length)",
        "headers": {
            "Inference-Header-Content-Length": {"schema": {"type": "string"}},
        },
        "content": {
            _JSON: {"schema": _ref("InferenceResponse")},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
    infer_errors = _errors(400, 401, 404, 413, 415, 431, 499, 503, 504)
    paths: dict[str, Any] = {
        "/v2/health/live": {"get": _op("Liveness", {"200": _empty("live")})},
        "/v2/health/ready": {
            "get": _op(
                "Readiness (strict: every model that should be loaded is ready)",
                {"200": _empty("ready"), "400": _empty("not ready")},
            )
        },
        "/v2": {"get": _op("Server metadata", {"200": _json({"type": "object"})} | _errors(401))},
        "/metrics": {
            "get": _op(
                "Prometheus metrics",
                {"200": {"description": "text format", "content": {"text/plain": {}}}},
            )
        },
        "/openapi.json": {"get": _op("This document", {"200": _json({"type": "object"})})},
    }
    for base, params in ((m, _params("name")), (mv, _params("name", "version"))):
        paths[base] = {
            "parameters": params,
            "get": _op(
                "Model metadata",
                {"200": _json(_ref("ModelMetadata"))} | _errors(400, 401, 404, 503),
            ),
        }
        paths[base + "/ready"] = {
            "parameters": params,
            "get": _op(
                "Model readiness",
                {"200": _empty("ready"), "400": _empty("not ready")} | _errors(401),
            ),
        }
        paths[base + "/config"] = {
            "parameters": params,
            "get": _op(
                "Triton-style model configuration (dynamic batching, limits)",
                {"200": _json({"type": "object"})} | _errors(400, 401, 404, 503),
            ),
        }
        paths[base + "/infer"] = {
            "parameters": params,
            "post": _op(
                "Inference (KServe V2, binary tensor extension)",
                {"200": infer_ok} | infer_errors,
                requestBody=infer_body,
            ),
        }
        paths[base + "/infer"]["post"]["parameters"] = infer_headers
    control = _errors(400, 401, 403, 404, 501, 503)
    paths["/v2/repository/index"] = {
        "post": _op(
            "Repository index (loopback, management token)",
            {"200": _json(_ref("RepositoryIndex"))} | control,
        )
    }
    for action in ("load", "unload"):
        paths[f"/v2/repository/models/{{name}}/{action}"] = {
            "parameters": _params("name"),
            "post": _op(
                f"{action.capitalize()} a model (loopback, management token)",
                {"200": _empty("done")} | control,
            ),
        }
    return paths


def _tfs_paths() -> dict[str, Any]:
    paths: dict[str, Any] = {
        "/v1/models": {
            "get": _op("Model names (KServe V1)", {"200": _json({"type": "object"})} | _errors(401))
        }
    }
    variants = (
        ("/v1/models/{name}", _params("name")),
        ("/v1/models/{name}/versions/{version}", _params("name", "version")),
        ("/v1/models/{name}/labels/{label}", _params("name", "label")),
    )
    for base, params in variants:
        paths[base] = {
            "parameters": params,
            "get": _op(
                "TF Serving model status",
                {"200": _json({"type": "object"})} | _errors(400, 401, 404, 503),
            ),
        }
        paths[base + "/metadata"] = {
            "parameters": params,
            "get": _op(
                "TF Serving signature_def",
                {"200": _json({"type": "object"})} | _errors(400, 401, 404, 503),
            ),
        }
        paths[base + ":predict"] = {
            "parameters": params,
            "post": _op(
                "TF Serving predict (row or columnar JSON)",
                {"200": _json({"type": "object"})}
                | _errors(400, 401, 404, 415, 429, 431, 499, 503, 504),
                requestBody={
                    "required": True,
                    "content": {_JSON: {"schema": _ref("PredictRequest")}},
                },
            ),
        }
        for verb in ("classify", "regress"):
            paths[base + f":{verb}"] = {
                "parameters": params,
                "post": _op(
                    f"TF Serving :{verb} (not implemented for ONNX models)", _errors(401, 501)
                ),
            }
    return paths


def _torchserve_paths() -> dict[str, Any]:
    body = {
        "required": True,
        "content": {
            _JSON: {"schema": {}},
            "application/octet-stream": {
                "schema": {
                    "type": "string",
                    "format": "binary",
                    "description": "the bytes of a .npy file (one-input models)",
                },
            },
        },
    }
    ts = lambda *c: _errors(*c, shape="TorchServeError")  # noqa: E731
    out: dict[str, Any] = {
        "/ping": {
            "get": _op(
                "TorchServe health",
                {"200": _json({"type": "object"}), "500": _json({"type": "object"}, "Unhealthy")},
            )
        }
    }
    for path, params in (
        ("/predictions/{name}", _params("name")),
        ("/predictions/{name}/{version}", _params("name", "version")),
    ):
        op = _op(
            "TorchServe inference",
            {"200": _json({})} | ts(400, 401, 404, 413, 415, 431, 499, 503, 504),
            requestBody=body,
        )
        out[path] = {"parameters": params, "post": op, "put": op}
    return out


def _management_paths() -> dict[str, Any]:
    servers = [{"url": "http://127.0.0.1:8081", "description": "the management port"}]
    ts = lambda *c: _errors(*c, shape="TorchServeError")  # noqa: E731
    ok = {"200": _json({})}
    query = lambda *names: [  # noqa: E731
        {"name": n, "in": "query", "required": False, "schema": {"type": "string"}} for n in names
    ]
    return {
        "/models": {
            "servers": servers,
            "get": _op(
                "List models (management)",
                ok | ts(400, 401, 403),
                parameters=query("limit", "next_page_token"),
            ),
            "post": _op(
                "Register a model (management)",
                ok | ts(400, 401, 403, 404, 409, 413, 503),
                parameters=query(
                    "url",
                    "model_name",
                    "model_version",
                    "batch_size",
                    "max_batch_delay",
                    "initial_workers",
                    "response_timeout",
                    "synchronous",
                ),
            ),  # fmt: skip
        },
        "/models/{name}": {
            "servers": servers,
            "parameters": _params("name"),
            "get": _op("Describe a model (management)", ok | ts(400, 401, 403, 404)),
            "put": _op(
                "Scale a model (management)",
                ok | ts(400, 401, 403, 404),
                parameters=query("min_worker", "max_worker"),
            ),
            "delete": _op("Unregister a model (management)", ok | ts(400, 401, 403, 404)),
        },
        "/models/{name}/{version}": {
            "servers": servers,
            "parameters": _params("name", "version"),
            "get": _op("Describe a version (management)", ok | ts(400, 401, 403, 404)),
            "put": _op(
                "Scale (management)",
                ok | ts(400, 401, 403, 404),
                parameters=query("min_worker", "max_worker"),
            ),
            "delete": _op("Unregister a version (management)", ok | ts(400, 401, 403, 404)),
        },
        "/models/{name}/{version}/set-default": {
            "servers": servers,
            "parameters": _params("name", "version"),
            "put": _op("Set the default version (management)", ok | ts(400, 401, 403, 404, 503)),
        },
    }


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document (a plain dict)."""
    paths = {**_v2_paths(), **_tfs_paths(), **_torchserve_paths(), **_management_paths()}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "modelport serve",
            "version": __version__,
            "description": "KServe V2 / Open Inference Protocol with Triton's binary tensor "
            "extension, TF Serving REST and TorchServe inference on the HTTP port; the "
            "management API on its own port. See docs/serve.md and docs/serve-compat.md.",
        },
        "servers": [{"url": "http://127.0.0.1:8000"}],
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{}, {"bearer": []}],
        "paths": paths,
    }


if __name__ == "__main__":
    print(json.dumps(openapi_document(), indent=2))

"""The gateway's own endpoints on the traffic port, as OpenAPI path items: public, never
proxied, never limited. What operators alone may see (every instance, breakers, metrics,
reasons, configuration) lives on the admin listener, which this document does not describe."""

from __future__ import annotations

from api_gateway.docs.components import Json

JSON_OBJECT: Json = {"type": "object"}

READY_SCHEMA: Json = {
    "type": "object",
    "required": ["status", "checks", "failed"],
    "properties": {
        "status": {"type": "string", "enum": ["ready", "not ready", "draining"]},
        "checks": {
            "type": "object",
            "description": "Per dependency: `ok` or `failed` (why, on the admin listener only).",
            "additionalProperties": {"type": "string"},
        },
        "failed": {"type": "array", "items": {"type": "string"}},
    },
}
HEALTH_SCHEMA: Json = {
    "type": "object",
    "required": ["status", "uptime"],
    "properties": {
        "status": {"type": "string"},
        "uptime": {"type": "number", "description": "Seconds since the worker started."},
    },
}


def _get(summary: str, responses: Json) -> Json:
    operation_id = "gateway_" + summary.split(":")[0].lower().replace(" ", "_")
    return {
        "get": {
            "operationId": operation_id,
            "tags": ["gateway"],
            "summary": summary,
            "security": [],
            "responses": responses,
        }
    }


def _content(media_type: str, schema: Json, description: str) -> Json:
    return {"description": description, "content": {media_type: {"schema": schema}}}


def gateway_paths() -> Json:
    paths = _paths()
    # The original gateway's paths for the same two probes (operation ids must stay unique).
    for name in ("ready", "live"):
        operation = dict(paths["/" + name]["get"])
        operation["operationId"] = f"gateway_health_{name}"
        paths["/health/" + name] = {"get": operation}
    return paths


def _paths() -> Json:
    return {
        "/health": _get(
            "Health: whether the gateway runs, and for how long",
            {"200": _content("application/json", HEALTH_SCHEMA, "Always, while it runs.")},
        ),
        "/ready": _get(
            "Ready: whether this worker should get traffic",
            {
                "200": _content(
                    "application/json",
                    READY_SCHEMA,
                    "The gateway can serve: listening, configured, not draining. Each "
                    "dependency it checks (Redis, auth-service, venue-service) is in `checks`.",
                ),
                "503": _content(
                    "application/json",
                    READY_SCHEMA,
                    "The worker is shutting down, or a dependency the configuration requires "
                    "(`readiness.require`) failed (named in `failed`).",
                ),
            },
        ),
        "/live": _get(
            "Live: the process runs",
            {"200": _content("application/json", JSON_OBJECT, "Always, while it runs.")},
        ),
        "/docs": _get(
            "Docs: this document, rendered (works offline)",
            {"200": _content("text/html", {"type": "string"}, "The documentation page.")},
        ),
        "/docs/openapi.json": _get(
            "OpenAPI: this document",
            {"200": _content("application/json", JSON_OBJECT, "The OpenAPI 3.1 document.")},
        ),
    }

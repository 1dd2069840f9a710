"""The gateway's own endpoints, as OpenAPI path items: public, never proxied, never limited."""

from __future__ import annotations

from api_gateway.docs.components import Json, error_refs

JSON_OBJECT: Json = {"type": "object"}

READY_SCHEMA: Json = {
    "type": "object",
    "required": ["status", "checks", "failed"],
    "properties": {
        "status": {"type": "string", "enum": ["ready", "not ready", "draining"]},
        "checks": {"type": "object", "additionalProperties": {"type": "string"}},
        "failed": {"type": "array", "items": {"type": "string"}},
    },
}
HEALTH_SCHEMA: Json = {
    "type": "object",
    "required": ["status", "uptime"],
    "description": "Status and uptime to anyone; the rest to `admin.allow` addresses only.",
    "properties": {
        "status": {"type": "string"},
        "uptime": {"type": "number", "description": "Seconds since the worker started."},
        "memory": {"type": "object", "properties": {"rss": {"type": "integer"}}},
        "pid": {"type": "integer"},
        "services": {"type": "object", "description": "Per service: breaker state and events."},
        "instances": {"type": "object", "description": "Per service: every instance's state."},
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


def admin_paths() -> Json:
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
            "Health: the process, its services' breakers and instances",
            {"200": _content("application/json", HEALTH_SCHEMA, "Always, while it runs.")},
        ),
        "/ready": _get(
            "Ready: whether this worker should get traffic",
            {
                "200": _content(
                    "application/json",
                    READY_SCHEMA,
                    "Redis (if configured), auth-service and venue-service answer.",
                ),
                "503": _content(
                    "application/json",
                    READY_SCHEMA,
                    "A dependency failed (named in `failed`), or the worker is shutting down.",
                ),
            },
        ),
        "/live": _get(
            "Live: the process runs",
            {"200": _content("application/json", JSON_OBJECT, "Always, while it runs.")},
        ),
        "/metrics": _get(
            "Metrics: Prometheus text exposition",
            {
                "200": _content("text/plain", {"type": "string"}, "Counters, gauges, histograms."),
                **error_refs(["403"]),  # an address outside admin.allow
            },
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

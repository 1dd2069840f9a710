"""The reusable parts of the OpenAPI document: problem schema, error responses, headers, auth."""

from __future__ import annotations

import re
from typing import Any

from api_gateway.config.settings import LimitConfig
from api_gateway.errors import PROBLEM_BASE

Json = dict[str, Any]

PROBLEM_TYPE = "application/problem+json"


def operation_id(method: str, path: str) -> str:
    return method.lower() + "_" + re.sub(r"[^A-Za-z0-9]+", "_", path).strip("_")


def limit_facts(name: str, limit: LimitConfig, key: tuple[str, ...] = ()) -> Json:
    """A rate limit as the ``x-gateway`` facts of an operation show it."""
    described: Json = {"name": name, "max": limit.max, "window_ms": limit.window_ms}
    if limit.block_ms:
        described["block_ms"] = limit.block_ms
    if key:
        described["key"] = list(key)
    return described


def ref(kind: str, name: str) -> Json:
    return {"$ref": f"#/components/{kind}/{name}"}


def _header(description: str, kind: str = "integer") -> Json:
    return {"description": description, "schema": {"type": kind}}


RATE_LIMIT_HEADERS: dict[str, str] = {
    "RateLimit-Limit": "RateLimitLimit",
    "RateLimit-Remaining": "RateLimitRemaining",
    "RateLimit-Reset": "RateLimitReset",
    "X-RateLimit-Limit": "XRateLimitLimit",
    "X-RateLimit-Remaining": "XRateLimitRemaining",
    "X-RateLimit-Reset": "XRateLimitReset",
}
COMMON_HEADERS: dict[str, str] = {
    "X-Request-ID": "RequestId",
    "X-Correlation-ID": "CorrelationId",
    "X-Response-Time": "ResponseTime",
}

HEADERS: Json = {
    "RateLimitLimit": _header("Requests allowed per window by the tightest limit that applies."),
    "RateLimitRemaining": _header("Requests left in that limit's window."),
    "RateLimitReset": _header("Seconds until that limit's bucket is full again."),
    "XRateLimitLimit": _header("Same as RateLimit-Limit, for clients of the previous gateway."),
    "XRateLimitRemaining": _header("Same as RateLimit-Remaining."),
    "XRateLimitReset": _header("Same as RateLimit-Reset."),
    "RetryAfter": _header("Seconds to wait before trying again."),
    "RequestId": _header("The request's id: a valid incoming X-Request-ID, else new.", "string"),
    "CorrelationId": _header("The request id again (a client's own is replaced).", "string"),
    "ResponseTime": _header("Time to the response head, e.g. `1.204ms`.", "string"),
    "XCache": {
        "description": "Whether the answer came from the gateway's response cache.",
        "schema": {"type": "string", "enum": ["HIT", "MISS"]},
    },
    "WWWAuthenticate": _header("`Bearer` challenge naming what was wrong.", "string"),
    "Allow": _header("The methods the route accepts.", "string"),
}

PROBLEM_SCHEMA: Json = {
    "type": "object",
    "description": "An RFC 9457 problem document: every error the gateway answers itself.",
    "required": [
        "type",
        "title",
        "status",
        "detail",
        "request_id",
        "error",
        "message",
        "correlationId",
        "timestamp",
    ],
    "properties": {
        "type": {
            "type": "string",
            "format": "uri",
            "description": f"`{PROBLEM_BASE}<slug>`, e.g. `{PROBLEM_BASE}rate-limited`.",
        },
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string"},
        "instance": {"type": "string", "description": "The canonical request path."},
        "request_id": {"type": "string", "description": "Same as the X-Request-ID header."},
        "error": {"type": "string", "description": "Same as `title` (the original gateway's)."},
        "message": {"type": "string", "description": "Same as `detail` (the original's)."},
        "correlationId": {"type": "string", "description": "Same as X-Correlation-ID."},
        "timestamp": {"type": "string", "format": "date-time", "description": "UTC, in ms."},
        "rateLimit": {
            "type": "object",
            "description": "On a 429: the refusing limit, and when it resets.",
            "required": ["limit", "remaining", "reset"],
            "properties": {
                "limit": {"type": "integer"},
                "remaining": {"type": "integer"},
                "reset": {"type": "string", "format": "date-time"},
            },
        },
        "errors": {
            "type": "array",
            "description": "Every failed field of a `validation-failed` problem.",
            "items": {
                "type": "object",
                "required": ["field", "message"],
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
}

# status -> (component name, description, extra headers)
ERRORS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "400": ("BadRequest", "Malformed request, refused path or host, or failed validation.", ()),
    "401": ("Unauthorized", "Missing or invalid bearer token.", ("WWW-Authenticate",)),
    "403": ("Forbidden", "Not allowed for this token's tenant, or a refused CORS origin.", ()),
    "404": ("NotFound", "No route for this path.", ()),
    "405": ("MethodNotAllowed", "The route does not accept this method.", ("Allow",)),
    "413": ("PayloadTooLarge", "The body exceeds the route's limit.", ()),
    "409": (
        "Conflict",
        "A request with this Idempotency-Key is still in flight, or its answer was not kept.",
        ("Retry-After",),
    ),
    "415": ("UnsupportedMediaType", "The route takes JSON bodies only.", ()),
    "422": ("UnprocessableContent", "The Idempotency-Key was used for another request.", ()),
    "429": ("TooManyRequests", "A rate limit refused the request.", ("Retry-After",)),
    "502": ("BadGateway", "The service refused, reset or answered garbage.", ()),
    "503": (
        "ServiceUnavailable",
        "The service's circuit is open, or a dependency cannot answer.",
        ("Retry-After",),
    ),
    "504": ("GatewayTimeout", "The service did not answer within the deadline.", ()),
}
HEADER_REFS = {
    "WWW-Authenticate": "WWWAuthenticate",
    "Allow": "Allow",
    "Retry-After": "RetryAfter",
}


def _error_response(
    description: str, extra: tuple[str, ...], status: str, schema: str = "Problem"
) -> Json:
    headers = {name: ref("headers", HEADER_REFS[name]) for name in extra}
    if status == "429":
        headers |= {name: ref("headers", key) for name, key in RATE_LIMIT_HEADERS.items()}
    headers |= {name: ref("headers", key) for name, key in COMMON_HEADERS.items()}
    return {
        "description": description,
        "headers": headers,
        "content": {PROBLEM_TYPE: {"schema": ref("schemas", schema)}},
    }


def problem_response(status: str, description: str, schema: str) -> Json:
    """A problem response of ``status`` with its own description and schema (which extends
    ``Problem``), and the headers of that status's shared response."""
    return _error_response(description, ERRORS[status][2], status, schema)


def _forwarded(cacheable: bool) -> Json:
    names = RATE_LIMIT_HEADERS | COMMON_HEADERS | ({"X-Cache": "XCache"} if cacheable else {})
    return {
        "description": "The service's answer, forwarded"
        + (" or served from the gateway's cache." if cacheable else "."),
        "headers": {name: ref("headers", key) for name, key in names.items()},
    }


def components() -> Json:
    return {
        "securitySchemes": {
            "bearerAuth": {
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "JWT",
                "description": "An access token of an allowed algorithm (`JWT_ALGORITHMS`) with "
                "the user id and tenant claims (`jwt.claims`), `exp`, the configured `iss`, and "
                "the configured audience in `aud` when one is set.",
            },
            "cookieAuth": {
                "type": "apiKey",
                "in": "cookie",
                "name": "access_token",
                "description": "The same access token, from a browser (`jwt.cookie`).",
            },
            "apiKeyAuth": {
                "type": "apiKey",
                "in": "header",
                "name": "X-API-Key",
                "description": "An API key (`api-gateway apikey create`), on routes that accept "
                "keys; `Authorization: ApiKey <key>` works too.",
            },
        },
        "schemas": {"Problem": PROBLEM_SCHEMA},
        "headers": HEADERS,
        "responses": {
            "Forwarded": _forwarded(cacheable=False),
            "ForwardedCacheable": _forwarded(cacheable=True),
            **{
                name: _error_response(description, extra, status)
                for status, (name, description, extra) in ERRORS.items()
            },
        },
    }


def error_refs(statuses: list[str]) -> Json:
    return {status: ref("responses", ERRORS[status][0]) for status in statuses}

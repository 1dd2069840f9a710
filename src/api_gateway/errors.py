"""Every error the gateway answers itself, and the one place that turns them into responses.

    GatewayError (500 internal-error)
    ├── BadRequest (400 bad-request)
    │   ├── MalformedRequest (400 malformed-request, closes the connection)
    │   ├── InvalidPath (400 invalid-path)
    │   ├── ValidationFailed (400 validation-failed, with per-field ``errors``)
    │   ├── HeaderNotAllowed (400 header-not-allowed)
    │   ├── InvalidHost (400 invalid-host)
    │   └── InvalidWebhookSignature (400 invalid-webhook-signature)
    ├── Unauthorized (401 unauthorized, WWW-Authenticate: Bearer)
    │   └── TokenRevoked (401 token-revoked): auth-service logged the token out
    ├── Forbidden (403 forbidden)
    │   └── CrossSiteRequest (403 cross-site-request): a cookie's token from another site
    ├── RouteNotFound (404 not-found)
    ├── MethodNotAllowed (405 method-not-allowed)
    ├── LastInstance (409 last-instance): an operator may not eject the last instance
    ├── RequestTimeout (408 request-timeout)
    ├── PayloadTooLarge (413 payload-too-large)
    ├── UriTooLong (414 uri-too-long)
    ├── UnsupportedMediaType (415 unsupported-media-type)
    ├── RateLimited (429 rate-limited, Retry-After)
    ├── HeadersTooLarge (431 headers-too-large)
    ├── BadGateway (502 bad-gateway): upstream refused, reset or answered garbage
    │   ├── UpstreamReset (502 bad-gateway): the connection closed before the whole answer
    │   ├── ConnectFailed (502 bad-gateway): no connection, so nothing of the request was sent
    │   └── UnusableResponse (502 bad-gateway): an answer that cannot be passed on; not retried
    ├── ServiceUnavailable (503 service-unavailable)
    │   ├── Overloaded (503 service-unavailable): as many WebSockets as the gateway may hold
    │   ├── CircuitOpen (503 circuit-open, Retry-After)
    │   └── ReloadUnavailable (503 reload-unavailable): POST /reload without a supervisor
    └── UpstreamTimeout (504 upstream-timeout)
        ├── ConnectTimeout (504 upstream-timeout): nothing of the request was sent
        └── DeadlineExceeded (504 deadline-exceeded): the request's own deadline ran out

Foreign exceptions (socket errors, parser errors, Redis errors) are translated into these where
they arise, so nothing above the data plane ever sees them. Their text never reaches a client:
a socket error's names the address it failed on. A detail says what happened in the client's
terms; the data plane calls the upstream ``THE_SERVICE``, and the caller that knows which
service it was puts its name in (``name_service``). Addresses go to the logs only.

Each class also says, in one word, why the gateway answered itself (``reason``, the access
log's field on a 5xx): ``connect_refused``, ``connect_timeout``, ``reset``, ``upstream_timeout``,
``deadline_exceeded``, ``stream_idle_timeout``, ``bad_response``, ``breaker_open``,
``overloaded``, ``keys_not_loaded``, ``unavailable``, ``internal_error``.
"""

from __future__ import annotations

import time
from typing import ClassVar

import orjson

from api_gateway.types import Headers, Response

PROBLEM_BASE = "https://docs.tickettoken.io/gateway/problems/"
# How the data plane's details name the upstream, which it knows only by address.
THE_SERVICE = "the service"
PROBLEM_CONTENT_TYPE = (b"content-type", b"application/problem+json")


class GatewayError(Exception):
    status: ClassVar[int] = 500
    slug: ClassVar[str] = "internal-error"
    title: ClassVar[str] = "Internal error"
    closes_connection: ClassVar[bool] = False
    # Whether any byte of the request may have reached the upstream (decides what is retried).
    request_sent: ClassVar[bool] = True
    # Why the gateway answered this itself, in a word: the access log's ``reason`` of a 5xx.
    reason: ClassVar[str] = "internal_error"

    def __init__(self, detail: str = "", headers: Headers | None = None) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.headers: Headers = headers or []
        # Extension members of the problem document (RFC 9457 §3.2).
        self.extensions: dict[str, object] = {}


class BadRequest(GatewayError):
    status, slug, title = 400, "bad-request", "Bad request"


class MalformedRequest(BadRequest):
    slug, title = "malformed-request", "Malformed HTTP request"
    closes_connection = True


class InvalidPath(BadRequest):
    slug, title = "invalid-path", "Invalid request path"


class ValidationFailed(BadRequest):
    slug, title = "validation-failed", "Request validation failed"

    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__("; ".join(f"{e['field']}: {e['message']}" for e in errors))
        self.extensions["errors"] = errors


class HeaderNotAllowed(BadRequest):
    slug, title = "header-not-allowed", "Header not allowed"


class Unauthorized(GatewayError):
    status, slug, title = 401, "unauthorized", "Authentication required"

    def __init__(self, detail: str = "", error: str = "invalid_token") -> None:
        challenge = f'Bearer realm="api-gateway", error="{error}"'.encode()
        if error == "":
            challenge = b'Bearer realm="api-gateway"'
        super().__init__(detail, [(b"www-authenticate", challenge)])


class UnknownKey(Unauthorized):
    """A token names a ``kid`` no loaded key has: a key set that can be refreshed may know it."""

    def __init__(self, kid: str) -> None:
        super().__init__("the access token names a signing key the gateway does not know")
        self.kid = kid


class TokenRevoked(Unauthorized):
    """auth-service revoked the token (logout): ``revocation.py``."""

    slug, title = "token-revoked", "Token revoked"

    def __init__(self) -> None:
        super().__init__("the access token has been revoked")


class Forbidden(GatewayError):
    status, slug, title = 403, "forbidden", "Forbidden"


class CrossSiteRequest(Forbidden):
    slug, title = "cross-site-request", "Cross-site request refused"


class RouteNotFound(GatewayError):
    status, slug, title = 404, "not-found", "Not found"


class MethodNotAllowed(GatewayError):
    status, slug, title = 405, "method-not-allowed", "Method not allowed"


class RequestTimeout(GatewayError):
    status, slug, title = 408, "request-timeout", "Request timeout"
    closes_connection = True


class PayloadTooLarge(GatewayError):
    status, slug, title = 413, "payload-too-large", "Payload too large"
    closes_connection = True


class UriTooLong(GatewayError):
    status, slug, title = 414, "uri-too-long", "URI too long"
    closes_connection = True


class UnsupportedMediaType(GatewayError):
    status, slug, title = 415, "unsupported-media-type", "Unsupported media type"


class RateLimited(GatewayError):
    """``limit`` and ``remaining`` describe the refusing limit, and ``reset_s`` when it resets
    (seconds from now; ``retry_after_s`` when not given): the ``rateLimit`` member of the problem
    document. Without ``limit``, it is read from the rate-limit headers, if any."""

    status, slug, title = 429, "rate-limited", "Too many requests"

    def __init__(
        self,
        detail: str,
        retry_after_s: int,
        headers: Headers | None = None,
        limit: int | None = None,
        remaining: int = 0,
        reset_s: int | None = None,
    ) -> None:
        retry_after_s = max(retry_after_s, 1)
        retry_after = (b"retry-after", str(retry_after_s).encode())
        super().__init__(detail, [retry_after, *(headers or [])])
        self.limit, self.remaining = limit, remaining
        self.reset_s = retry_after_s if reset_s is None else reset_s


class HeadersTooLarge(GatewayError):
    status, slug, title = 431, "headers-too-large", "Request header fields too large"
    closes_connection = True


class BadGateway(GatewayError):
    status, slug, title = 502, "bad-gateway", "Bad gateway"
    reason = "bad_response"


class UpstreamReset(BadGateway):
    """The upstream closed or reset the connection before its answer was complete."""

    reason = "reset"


class ConnectFailed(BadGateway):
    request_sent = False
    reason = "connect_refused"


class UnusableResponse(BadGateway):
    """The upstream answered, with something the gateway cannot pass on (a protocol switch it did
    not ask for, a head over the size cap): the request reached the service, and asking again
    would get the same answer at the same cost, so it is never retried."""


class ServiceUnavailable(GatewayError):
    status, slug, title = 503, "service-unavailable", "Service unavailable"
    reason = "unavailable"


class Overloaded(ServiceUnavailable):
    """The gateway holds as much of something as it may (WebSocket tunnels)."""

    reason = "overloaded"


class KeysNotLoaded(ServiceUnavailable):
    """No signing key set was ever loaded (the JWKS has been unreachable since start-up)."""

    reason = "keys_not_loaded"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, [(b"retry-after", b"5")])


class CircuitOpen(ServiceUnavailable):
    slug, title = "circuit-open", "Upstream circuit open"
    reason = "breaker_open"

    def __init__(self, detail: str, retry_after_s: int) -> None:
        super().__init__(detail, [(b"retry-after", str(max(retry_after_s, 1)).encode())])


class UpstreamTimeout(GatewayError):
    status, slug, title = 504, "upstream-timeout", "Upstream timeout"
    reason = "upstream_timeout"


class StreamIdleTimeout(UpstreamTimeout):
    """A streamed response (an event stream) was quiet longer than its idle bound."""

    slug, title = "stream-idle-timeout", "Stream idle timeout"
    reason = "stream_idle_timeout"


class ConnectTimeout(UpstreamTimeout):
    request_sent = False
    reason = "connect_timeout"


class DeadlineExceeded(UpstreamTimeout):
    slug, title = "deadline-exceeded", "Request deadline exceeded"
    reason = "deadline_exceeded"


def name_service(error: GatewayError, label: str) -> GatewayError:
    """``error`` with ``label`` (``ticket-service``) for the data plane's ``THE_SERVICE``."""
    if error.detail.startswith(THE_SERVICE):
        error.detail = label + error.detail[len(THE_SERVICE) :]
    return error


def problem_response(
    error: GatewayError, request_id: str, instance: str = "", now_s: float | None = None
) -> Response:
    """The single place an error becomes an RFC 9457 problem document.

    Its extension members are what the original gateway's clients read: ``error`` (the title),
    ``message`` (the detail), ``correlationId`` (the request id), ``timestamp`` (ISO 8601, UTC),
    and on a 429 ``rateLimit`` (``limit``, ``remaining``, ``reset`` as an ISO 8601 time)."""
    now_s = time.time() if now_s is None else now_s
    document: dict[str, object] = {
        "type": PROBLEM_BASE + error.slug,
        "title": error.title,
        "status": error.status,
        "detail": error.detail,
        "request_id": request_id,
        "error": error.title,
        "message": error.detail,
        "correlationId": request_id,
        "timestamp": iso_timestamp(now_s),
    }
    if instance:
        document["instance"] = instance
    if isinstance(error, RateLimited):
        quota = rate_limit_member(error, now_s)
        if quota is not None:
            document["rateLimit"] = quota
    if error.extensions:
        document.update(error.extensions)
    body = orjson.dumps(document)
    headers: Headers = [PROBLEM_CONTENT_TYPE, (b"cache-control", b"no-store"), *error.headers]
    response = Response(error.status, headers, body)
    response.close = error.closes_connection
    return response


def iso_timestamp(epoch_s: float) -> str:
    """``2026-12-06T22:57:35.123Z``: JavaScript's ``toISOString``, which the clients parse."""
    millis = int(epoch_s * 1000)
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(millis // 1000))
    return f"{seconds}.{millis % 1000:03d}Z"


def rate_limit_member(error: RateLimited, now_s: float) -> dict[str, object] | None:
    """The refusing limit, from the error's fields or else its rate-limit headers."""
    limit, remaining = error.limit, error.remaining
    if limit is None:
        fields = {name.removeprefix(b"x-"): value for name, value in error.headers}
        try:
            limit = int(fields[b"ratelimit-limit"])
            remaining = int(fields.get(b"ratelimit-remaining", b"0"))
        except (KeyError, ValueError):
            return None
    return {"limit": limit, "remaining": remaining, "reset": iso_timestamp(now_s + error.reset_s)}


class InvalidHost(BadRequest):
    slug, title = "invalid-host", "Invalid Host header"


class InvalidWebhookSignature(BadRequest):
    """A Stripe webhook without a valid ``Stripe-Signature`` (policies/webhooks.py)."""

    slug, title = "invalid-webhook-signature", "Invalid webhook signature"


# Idempotency keys (policies/idempotency.py): a bad or missing key is a 400, a repeat while the
# first request is in flight (or whose answer was too large to keep) a 409, the key reused for
# another request a 422.
class InvalidIdempotencyKey(BadRequest):
    slug, title = "invalid-idempotency-key", "Invalid Idempotency-Key"


class IdempotencyKeyRequired(BadRequest):
    slug, title = "idempotency-key-required", "Idempotency-Key required"


class IdempotencyConflict(GatewayError):
    status, slug, title = 409, "idempotency-conflict", "Request with this key in progress"

    def __init__(self, detail: str, retry_after_s: int) -> None:
        super().__init__(detail, [(b"retry-after", str(max(retry_after_s, 1)).encode())])


class IdempotencyAnswerNotKept(GatewayError):
    status, slug, title = 409, "idempotency-answer-not-kept", "Answer to this key not kept"


class IdempotencyKeyReused(GatewayError):
    status, slug, title = 422, "idempotency-key-reused", "Idempotency-Key reused"


class LastInstance(GatewayError):
    """An operator asked to eject a service's only instance left in rotation (admin API)."""

    status, slug, title = 409, "last-instance", "Last instance in rotation"


class ReloadUnavailable(ServiceUnavailable):
    status, slug, title = 503, "reload-unavailable", "Reload unavailable"


class ReloadRefused(GatewayError):
    """``POST /reload`` with a configuration the gateway would not start with: nothing changed."""

    status, slug, title = 422, "invalid-configuration", "Configuration refused"


class ReloadTimedOut(GatewayError):
    """The supervisor did not record the reload in time; it may still complete (/health)."""

    status, slug, title = 504, "reload-timeout", "Reload not confirmed in time"

"""The one request-path signature: every policy and the terminal handler speak these types.

Header names are lower-case ``bytes`` and values are ``bytes`` exactly as received; the data plane
lower-cases names once while parsing so that nothing above it has to.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Final, Protocol

if TYPE_CHECKING:
    from api_gateway.observability.spans import TraceContext

Headers = list[tuple[bytes, bytes]]


class BodySource(Protocol):
    """A request or response body that arrives over time (the data plane's stream)."""

    def __aiter__(self) -> AsyncIterator[bytes]: ...

    def abort(self) -> None: ...


Body = bytes | BodySource


class Request:
    """One client request, as the data plane parsed it and the policies enriched it."""

    __slots__ = (
        "attempts",
        "body",
        "cache",
        "claims",
        "client_correlation_id",
        "client_ip",
        "content_length",
        "deadline_ms",
        "headers",
        "http_version",
        "keep_alive",
        "limit_at",
        "limit_remaining",
        "method",
        "path",
        "peer_ip",
        "query",
        "request_id",
        "response_headers",
        "route",
        "server_port",
        "start",
        "target",
        "trace",
        "trace_fields",
        "trace_id",
        "upgrade",
        "upstream",
        "upstream_block",
        "upstream_headers",
        "upstream_ms",
        "user_agent",
    )

    def __init__(
        self,
        method: str,
        target: bytes,
        headers: Headers,
        body: Body,
        peer_ip: str,
        http_version: str = "1.1",
        content_length: int | None = None,
        server_port: int = 0,
        start: float = 0.0,
    ) -> None:
        self.method = method
        self.target = target
        # Set by routing from ``target``: the canonical path and the raw query string.
        self.path = ""
        self.query = b""
        self.headers = headers
        self.body = body
        self.peer_ip = peer_ip
        self.client_ip = peer_ip
        self.http_version = http_version
        self.content_length = content_length
        self.server_port = server_port
        self.start = start
        self.keep_alive = True
        self.request_id = ""
        # The X-Correlation-ID the client sent ("" if none), for the access log only: upstreams
        # and the client hear the request id under that name.
        self.client_correlation_id = ""
        self.route = "unmatched"  # the matched route's prefix, a label for logs and metrics
        # Set by the data plane when the request asks to switch protocols (websocket.py kinds).
        self.upgrade = 0
        self.claims: Claims | None = None
        # Headers the gateway itself adds for the upstream, after the client's were filtered.
        self.upstream_headers: Headers = []
        # Header lines the gateway adds for the upstream, already in wire form (``HeaderTrust``).
        self.upstream_block = b""
        # Headers a policy wants on whatever response this request gets, an error included.
        self.response_headers: Headers = []
        # Where the reported rate limit's headers sit in response_headers (-1: none yet), and
        # what it has left: when several limits apply, the tightest is the one reported.
        self.limit_at = -1
        self.limit_remaining = 0
        # For the access log and traces: the instance of the last attempt ("" when none was
        # made), how many attempts were made, and the response cache's verdict (HIT, MISS).
        self.upstream = ""
        self.attempts = 0
        self.cache = ""
        # For the access log: the time spent waiting on the upstream's attempts (ms, summed),
        # and the trace id (32 hex digits) when tracing is on.
        self.upstream_ms = 0.0
        self.trace_id = ""
        # With tracing on, the request's trace as its attempts send it on (and the aggregate
        # calls it fans out into): its context, or for a new trace that is not sampled only its
        # ids in wire form, of which ``render_head`` makes the ``traceparent`` (Sampler.ids).
        self.trace: TraceContext | bytes | None = None
        # Whether the head had a ``traceparent`` or ``tracestate`` field, as the reader noted
        # while parsing it; None for a request it did not parse (tracing looks for itself).
        self.trace_fields: bool | None = None
        # The client's User-Agent (b"" when none), kept by the pass that looks for its request id.
        self.user_agent = b""
        # The upstream call's deadline for this request in place of the route's (0: the
        # route's): an idempotent request keeps working after its client got a 504.
        self.deadline_ms = 0

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def header_list(self, name: bytes) -> bytes | None:
        """All values of a list-valued header, joined as one (RFC 9110 §5.3)."""
        values = [value for key, value in self.headers if key == name]
        return b", ".join(values) if values else None


# The identity lines of ``Claims``, each value's line closed by the next piece.
TENANT_LINE: Final = b"x-tenant-id: "
API_KEY_LINE: Final = b"\r\nx-api-key-id: "
API_KEY_METHOD_LINE: Final = b"\r\nx-auth-method: api_key\r\n"
USER_LINE: Final = b"\r\nx-user-id: "
ROLE_LINE: Final = b"\r\nx-user-role: "
JWT_METHOD_LINE: Final = b"\r\nx-auth-method: jwt\r\n"


class Claims:
    """The identity a verified credential carries, already checked to be header-safe.

    An access token's claims, or an API key's: then ``key_id`` names the key (``user_id`` is
    ``key:<id>``, what per-user limits and caches key by), ``key_rate`` is its own rate limit
    (requests, window in milliseconds; a plain tuple, so this module imports nothing),
    and the upstream hears ``x-api-key-id`` and ``x-auth-method: api_key`` instead of a user.
    """

    __slots__ = (
        "checked_until",
        "email",
        "expires_at",
        "identity",
        "key_id",
        "key_rate",
        "revoked_until",
        "role",
        "tenant_id",
        "user_id",
    )

    def __init__(
        self,
        user_id: str,
        tenant_id: str,
        role: str,
        email: str,
        expires_at: float,
        key_id: str = "",
        key_rate: tuple[int, int] | None = None,
    ) -> None:
        self.user_id = user_id
        self.tenant_id = tenant_id
        self.role = role
        self.email = email
        self.expires_at = expires_at
        self.key_id = key_id
        self.key_rate = key_rate
        # Until when (the verifier's clock, seconds) a token is known not revoked, or known
        # revoked: Redis is asked again after that (``revocation.py``).
        self.checked_until = 0.0
        self.revoked_until = 0.0
        # The identity header lines for upstreams (``name: value\r\n`` each), rendered once
        # per credential (cached): pieces joined once, no (name, value) pairs to render.
        parts = [TENANT_LINE, tenant_id.encode("ascii")]
        if key_id:
            parts.append(API_KEY_LINE)
            parts.append(key_id.encode("ascii"))
            parts.append(API_KEY_METHOD_LINE)
        else:
            parts.append(USER_LINE)
            parts.append(user_id.encode("ascii"))
            if role:
                parts.append(ROLE_LINE)
                parts.append(role.encode("ascii"))
            parts.append(JWT_METHOD_LINE)
        self.identity = b"".join(parts)


class Response:
    """What goes back to the client. ``body`` is bytes or a stream from an upstream.

    ``length`` is the body's declared length when it is known but not in hand (a stream, or
    the answer to HEAD); ``rendered`` holds header lines already in wire form
    (``name: value\r\n``...), for fixed headers that would otherwise be formatted for every
    response; ``close`` asks for the connection to be closed after it.
    """

    __slots__ = ("body", "close", "headers", "length", "rendered", "status", "switched")

    def __init__(self, status: int, headers: Headers, body: Body = b"") -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.length: bytes | None = None
        self.rendered = b""
        self.close = False
        # A 101 that switched protocols: the upstream side the client is to be tunnelled to.
        self.switched: Switched | None = None


class Switched:
    """What a ``101`` hands the data plane: the upstream connection, taken out of the pool, to
    be joined to the client's in a byte tunnel, and the route's terms for that tunnel.

    ``transport`` is the upstream connection's; ``buffered`` the bytes it sent after the 101's
    head (already read, not yet relayed). ``idle_timeout_s`` ends a tunnel with no byte either
    way for that long; ``on_close`` is called once when the tunnel ends, however it ends, with
    the bytes the client sent, the bytes the upstream sent, and why it ended ("client" or
    "upstream" closed, "idle", "going_away", "gateway").
    """

    __slots__ = ("buffered", "idle_timeout_s", "on_close", "transport")

    def __init__(
        self,
        transport: asyncio.Transport,
        buffered: bytes,
        idle_timeout_s: float = 600.0,
        on_close: Callable[[int, int, str], None] | None = None,
    ) -> None:
        self.transport = transport
        self.buffered = buffered
        self.idle_timeout_s = idle_timeout_s
        self.on_close = on_close


Handler = Callable[[Request], Awaitable[Response]]


class Pool(Protocol):
    """Upstream connections: one request out, its response (head in, body streaming) back."""

    def request(
        self,
        address: tuple[str, int],
        head: bytes,
        body: Body,
        chunked: bool,
        timeout_s: float,
        method: str,
        upgrade: bool = False,
        stream_idle_s: float = 0.0,
    ) -> Awaitable[Response]: ...


class Policy(Protocol):
    """``__call__(request, call_next)`` returns the awaitable response.

    A policy that acts on the response too is ``async def`` and awaits ``call_next``; one that
    only acts before passing the request on returns ``call_next(request)`` itself, which spares
    a coroutine layer per request. Either may raise a ``GatewayError``.
    """

    def __call__(self, request: Request, call_next: Handler) -> Awaitable[Response]: ...

"""Property-based fuzzing of the boundaries hostile input crosses: the request parser, path
normalization and the public-path decision, header trust, and the bearer-token pre-checks.

Short in ``make test``; the long run (see the README) is
``HYPOTHESIS_PROFILE=long .venv/bin/pytest tests/hostile -k fuzz --timeout=0``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api_gateway.errors import GatewayError, HeaderNotAllowed, InvalidPath, Unauthorized
from api_gateway.http.framing import HOP_BY_HOP
from api_gateway.http.server import Connections, HttpConnection, ServerBounds
from api_gateway.network import TrustedProxies
from api_gateway.policies.auth import authorization, bearer
from api_gateway.policies.headers import BLOCKED_EXACT, BLOCKED_PREFIXES, HeaderTrust
from api_gateway.routing import PublicPaths, normalize
from api_gateway.types import Request, Response
from api_gateway.upstream.forward import render_head

# -- paths --------------------------------------------------------------------------------------

SEGMENTS = [
    "a", "health", "webhooks", "stripe", "..", ".", "", "%2e", "%2E%2e", ".%2e", "..;", "..;x",
    ".;", "a;b", "%3b", "%2f", "%5c", "%25", "%252e", "%c0%ae", "%41", "~", "%7e", "x.", "..x",
    "\\", "%00", "%zz", "é", "a b", "?", "#",
]  # fmt: skip
paths = st.lists(st.sampled_from(SEGMENTS), max_size=10).map(lambda s: "/" + "/".join(s))
# Paths starting inside a public subtree or at a public name, where an escape would matter.
public_starts = st.sampled_from(["", "/webhooks", "/health", "/webhooks/stripe"])
PREFIX = "/api/v1/payments"
PUBLIC = PublicPaths.parse(["/health", "/metrics", "/webhooks/*"])


def normalized(raw: str) -> str | None:
    try:
        return normalize(raw.encode("utf-8"))
    except InvalidPath:
        return None


@given(paths)
def test_fuzz_normalize_is_idempotent_and_leaves_no_dot_segments(raw: str) -> None:
    path = normalized(raw)
    if path is None:
        return
    assert normalize(path.encode()) == path
    segments = path.split("/")[1:]
    assert path.startswith("/") and "//" not in path
    for segment in segments:
        assert segment.partition(";")[0] not in (".", ".."), path


def upstream_views(path: str) -> list[str]:
    """How servers behind the gateway may read a forwarded path: as is, with path parameters
    stripped (Tomcat, Spring), or percent-decoded once before resolving dot segments."""
    stripped = "/".join(segment.partition(";")[0] for segment in path.split("/"))
    decoded = path.replace("%2E", ".").replace("%2e", ".")
    return [resolve(view) for view in (path, stripped, decoded)]


def resolve(path: str) -> str:
    out: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if out:
                out.pop()
        elif segment not in ("", "."):
            out.append(segment)
    return "/" + "/".join(out)


def is_public(path: str) -> bool:
    return path.startswith(PREFIX + "/") and path[len(PREFIX) :] in PUBLIC


@given(public_starts, paths)
def test_fuzz_public_decision_holds_for_the_path_forwarded(start: str, raw: str) -> None:
    path = normalized(PREFIX + start + raw)
    if path is None or not is_public(path):
        return
    # What the gateway forwards is exactly what it decided on, and every reading of it an
    # upstream may make is public too.
    assert normalize(path.encode()) == path
    for view in upstream_views(path):
        assert is_public(view), (raw, path, view)


# -- the parser boundary ------------------------------------------------------------------------

REQUEST_LINES = [
    b"GET / HTTP/1.1", b"POST /api/v1/search/q HTTP/1.1", b"GET /a HTTP/1.0", b"GET /a HTTP/2.0",
    b"GET /a", b"get /a HTTP/1.1", b"GET  /a HTTP/1.1", b"GET http://h.test/a HTTP/1.1",
    b"CONNECT h.test:443 HTTP/1.1", b"OPTIONS * HTTP/1.1", b"GET /a\x00 HTTP/1.1", b"",
]  # fmt: skip
HEADER_LINES = [
    b"Host: h.test", b"Host: other.test", b"host:", b"Content-Length: 5", b"Content-Length: 0",
    b"Content-Length: 5, 5", b"Content-Length: -1", b"Transfer-Encoding: chunked",
    b"Transfer-Encoding: chunked ", b"Transfer-Encoding: xchunked",
    b"Transfer-Encoding:\x0bchunked", b"Transfer-Encoding : chunked", b"Connection: close",
    b"Connection: keep-alive, x-a",
    b"Connection: upgrade", b"Upgrade: websocket", b"Expect: 100-continue", b"X-A: b",
    b" folded", b"\tfolded", b"X-A: a\rb", b"X_A: b", b"X-A:\x7f", b": empty", b"Keep-Alive: 5",
    b"TE: trailers", b"Trailer: x-a", b"Proxy-Connection: keep-alive", b"X-\xff: 1",
]  # fmt: skip
ENDINGS = [b"\r\n", b"\n", b"\r"]
BODIES = [
    b"",
    b"hello",
    b"0\r\n\r\n",
    b"5\r\nhello\r\n0\r\n\r\n",
    b"5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n",
]
SUCH_SMALL_HEADS = ServerBounds(max_header_bytes=512, max_header_count=8, max_uri_bytes=256)
ERROR_STATUSES = {400, 405, 408, 413, 414, 431}


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    # Mostly near-valid messages, so the fuzz gets past the request line.
    line = draw(st.sampled_from(REQUEST_LINES[:3]) | st.sampled_from(REQUEST_LINES))
    if draw(st.integers(0, 9)) == 0:
        line = draw(st.binary(max_size=40))
    headers = draw(st.lists(st.sampled_from(HEADER_LINES) | st.binary(max_size=30), max_size=6))
    if draw(st.booleans()):
        headers = [b"Host: h.test", *headers]
    ending = draw(st.sampled_from(ENDINGS)) if draw(st.integers(0, 9)) == 0 else b"\r\n"
    head = ending.join([line, *headers]) + ending + ending
    return head + draw(st.sampled_from(BODIES))


class FakeTransport:
    def __init__(self) -> None:
        self.written = bytearray()
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    abort = close

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def get_extra_info(self, name: str) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else None


class RecordingApp:
    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.rejected: list[GatewayError] = []

    async def handle(self, request: Request) -> Response:
        self.requests.append(request)
        if not isinstance(request.body, bytes):
            async for _ in request.body:
                pass
        return Response(200, [], b"ok")

    def reject(self, error: GatewayError, peer_ip: str) -> Response:
        self.rejected.append(error)
        return Response(error.status, [], b"")


def serve(data: bytes, cuts: list[int]) -> tuple[RecordingApp, FakeTransport]:
    """Feed ``data`` to a real connection protocol in pieces, and let it answer."""
    loop = asyncio.new_event_loop()
    try:
        app, transport = RecordingApp(), FakeTransport()
        connections = Connections(loop)
        connection = HttpConnection(app, SUCH_SMALL_HEADS, connections, 8080)
        connection.connection_made(transport)  # type: ignore[arg-type]
        start = 0
        for cut in [*sorted(cuts), len(data)]:
            connection.data_received(data[start:cut])
            start = max(start, cut)
            loop.run_until_complete(asyncio.sleep(0))
        for _ in range(5):
            loop.run_until_complete(asyncio.sleep(0))
        connection.connection_lost(None)
        loop.run_until_complete(asyncio.sleep(0))
        if connections._sweeper is not None:
            connections._sweeper.cancel()
        return app, transport
    finally:
        loop.close()


def assert_well_formed(request: Request) -> None:
    assert request.http_version in ("1.0", "1.1")
    names = [name for name, _ in request.headers]
    assert names.count(b"host") == (1 if request.http_version == "1.1" else names.count(b"host"))
    assert names.count(b"host") <= 1
    for name, value in request.headers:
        assert name == name.lower() and name, name
        assert name not in HOP_BY_HOP and name not in (b"content-length", b"expect"), name
        assert not any(byte in value for byte in b"\r\n\x00"), value


@given(messages(), st.lists(st.integers(min_value=0, max_value=400), max_size=4))
def test_fuzz_parser_answers_4xx_or_passes_a_well_formed_request(
    data: bytes, cuts: list[int]
) -> None:
    app, transport = serve(data, cuts)

    for request in app.requests:
        assert_well_formed(request)
    assert all(error.status in ERROR_STATUSES for error in app.rejected), app.rejected
    statuses = [
        int(line[9:12]) for line in transport.written.split(b"\r\n") if line[:9] == b"HTTP/1.1 "
    ]
    assert all(status == 200 or status in ERROR_STATUSES or status == 100 for status in statuses)
    if not app.requests and not app.rejected:
        assert not transport.written  # an incomplete head is simply waited for


@given(st.binary(max_size=300), st.lists(st.integers(min_value=0, max_value=300), max_size=4))
def test_fuzz_parser_survives_arbitrary_bytes(data: bytes, cuts: list[int]) -> None:
    app, _ = serve(data, cuts)

    for request in app.requests:
        assert_well_formed(request)


# -- header trust and the bearer pre-checks ------------------------------------------------------

NAMES = [
    b"x-tenant-id", b"x-user-id", b"x-user-role", b"x-internal-secret", b"x-gateway-internal",
    b"x-venue-id", b"x-admin-token", b"x-forwarded-for", b"x-forwarded-host", b"x-request-id",
    b"x_tenant_id", b"x-user_id", b"host", b"accept", b"x-a", b"x-users", b"x-internal",
    b"authorization", b"cookie",
]  # fmt: skip
header_lists = st.lists(
    st.tuples(st.sampled_from(NAMES) | st.binary(min_size=1, max_size=12).map(bytes.lower),
              st.binary(max_size=12)),
    max_size=10,
)  # fmt: skip


def blocked(name: bytes) -> bool:
    return name in BLOCKED_EXACT or name.startswith(BLOCKED_PREFIXES)


@given(header_lists)
def test_fuzz_header_trust_forwards_no_client_identity(headers: list[tuple[bytes, bytes]]) -> None:
    trust = HeaderTrust(TrustedProxies(()), 8080)
    request = Request("GET", b"/", list(headers), b"", "10.0.0.1")
    request.request_id = "r1"
    seen: list[Request] = []

    async def upstream(request: Request) -> Response:
        seen.append(request)
        return Response(200, [])

    if any(ord("_") in name for name, _ in headers):
        with pytest.raises(HeaderNotAllowed):
            trust(request, upstream)
        return
    asyncio.run(_await(trust(request, upstream)))
    kept = [name for name, _ in seen[0].headers]
    assert not [name for name in kept if blocked(name) or name == b"host"], kept
    head, _ = render_head(seen[0], b"host: upstream", 1000)
    added = [line.partition(b":")[0] for line in head.split(b"\r\n")[2:-2]]
    assert not {b"x-tenant-id", b"x-user-id", b"x-user-role"} & set(added)
    assert added.count(b"x-forwarded-host") <= 1


async def _await(awaitable: Any) -> Any:
    return await awaitable


@given(st.binary(max_size=60))
def test_fuzz_bearer_precheck_returns_a_token_or_401(header: bytes) -> None:
    try:
        token = bearer(header)
    except Unauthorized:
        return
    assert token and token == token.strip() and token.isascii()


@given(st.lists(st.sampled_from([b"authorization", b"accept"]), max_size=4))
def test_fuzz_more_than_one_authorization_is_refused(names: list[bytes]) -> None:
    request = Request("GET", b"/", [(name, b"Bearer t") for name in names], b"", "10.0.0.1")
    if names.count(b"authorization") == 1:
        assert authorization(request) == b"Bearer t"
    elif names.count(b"authorization") == 0:
        assert authorization(request) is None
    else:
        with pytest.raises(Unauthorized):
            authorization(request)

"""Framing attacks: an ambiguous or malformed request gets 400, the connection is closed, and not
one byte of it reaches an upstream."""

from __future__ import annotations

import pytest
from support.assertions import assert_nothing_reached, assert_problem
from support.client import RawConnection, build_request
from support.gateway import Fleet, GatewayProcess

# A public path, so authentication plays no part in what the gateway decides.
TARGET = "/api/v1/search/q"
HEAD = f"POST {TARGET} HTTP/1.1\r\nHost: gateway.test\r\n"
SMUGGLED = b"GET /admin HTTP/1.1\r\nHost: gateway.test\r\n\r\n"


def request_with(headers: str, body: bytes = b"") -> bytes:
    return (HEAD + headers + "\r\n").encode("latin-1") + body


MALFORMED = [
    pytest.param(
        request_with("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n"),
        id="content-length-and-transfer-encoding",
    ),
    pytest.param(
        request_with("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", b"0\r\n\r\n"),
        id="transfer-encoding-then-content-length",
    ),
    pytest.param(
        request_with("Content-Length: 5\r\nContent-Length: 5\r\n", b"hello"),
        id="duplicate-content-length-same",
    ),
    pytest.param(
        request_with("Content-Length: 5\r\nContent-Length: 6\r\n", b"hello!"),
        id="duplicate-content-length-different",
    ),
    pytest.param(request_with("Content-Length: +5\r\n", b"hello"), id="content-length-plus"),
    pytest.param(request_with("Content-Length: 5, 5\r\n", b"hello"), id="content-length-list"),
    pytest.param(request_with("Content-Length: -1\r\n", b"hello"), id="content-length-negative"),
    pytest.param(request_with("Content-Length: abc\r\n", b"hello"), id="content-length-text"),
    pytest.param(request_with("Content-Length: 0x5\r\n", b"hello"), id="content-length-hex"),
    pytest.param(request_with("Transfer-Encoding: xchunked\r\n", b"0\r\n\r\n"), id="te-xchunked"),
    pytest.param(
        request_with("Transfer-Encoding: chunked, identity\r\n", b"0\r\n\r\n"),
        id="te-chunked-identity",
    ),
    pytest.param(
        request_with("Transfer-Encoding: identity, chunked\r\n", b"0\r\n\r\n"),
        id="te-identity-chunked",
    ),
    pytest.param(
        request_with("Transfer-Encoding : chunked\r\n", b"0\r\n\r\n"), id="te-space-before-colon"
    ),
    pytest.param(
        request_with("Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n", b"0\r\n\r\n"),
        id="te-two-headers",
    ),
    pytest.param(
        request_with("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n"),
        id="te-chunked-twice",
    ),
    pytest.param(
        f"POST {TARGET} HTTP/1.0\r\nHost: gateway.test\r\nTransfer-Encoding: chunked\r\n\r\n"
        "5\r\nhello\r\n0\r\n\r\n".encode(),
        id="te-in-http-1.0",
    ),
    pytest.param(
        f"GET {TARGET} HTTP/1.1\nHost: gateway.test\n\n".encode(), id="bare-lf-line-endings"
    ),
    pytest.param(
        f"GET {TARGET} HTTP/1.1\r\nHost: gateway.test\nX-A: b\r\n\r\n".encode(),
        id="one-bare-lf",
    ),
    pytest.param(request_with("X-A: a\rb\r\nContent-Length: 0\r\n"), id="bare-cr-in-header"),
    pytest.param(request_with("X-A: a\r\n folded\r\nContent-Length: 0\r\n"), id="obs-fold-space"),
    pytest.param(request_with("X-A: a\r\n\tfolded\r\nContent-Length: 0\r\n"), id="obs-fold-tab"),
    pytest.param(request_with("X A: b\r\nContent-Length: 0\r\n"), id="space-in-header-name"),
    pytest.param(request_with("X-A: a\x00b\r\nContent-Length: 0\r\n"), id="nul-in-header-value"),
    pytest.param(request_with(": novalue\r\nContent-Length: 0\r\n"), id="empty-header-name"),
    pytest.param(
        request_with("Transfer-Encoding: chunked\r\n", b"zz\r\nhello\r\n0\r\n\r\n"),
        id="invalid-chunk-size",
    ),
    pytest.param(
        request_with("Transfer-Encoding: chunked\r\n", b"-5\r\nhello\r\n0\r\n\r\n"),
        id="negative-chunk-size",
    ),
    pytest.param(
        request_with("Transfer-Encoding: chunked\r\n", b"5\r\nhelloXX0\r\n\r\n"),
        id="chunk-without-crlf",
    ),
    pytest.param(
        request_with(
            "Content-Length: 0\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n" + SMUGGLED
        ),
        id="smuggle-cl-te",
    ),
    pytest.param(
        request_with(
            f"Content-Length: {4 + len(SMUGGLED)}\r\nTransfer-Encoding: chunked\r\n",
            b"0\r\n\r\n" + SMUGGLED,
        ),
        id="smuggle-te-cl",
    ),
    pytest.param(
        request_with(
            f"Transfer-Encoding: xchunked\r\nContent-Length: {5 + len(SMUGGLED)}\r\n",
            b"0\r\n\r\n" + SMUGGLED,
        ),
        id="smuggle-obfuscated-te",
    ),
    pytest.param(b"GET /api/v1/search/q HTTP/1.1\r\n\r\n", id="http-1.1-without-host"),
]


@pytest.mark.parametrize("raw", MALFORMED)
def test_malformed_framing_is_refused_and_never_forwarded(
    gateway: GatewayProcess, services: Fleet, raw: bytes
) -> None:
    with RawConnection(gateway.port) as connection:
        connection.send_tolerant(raw)
        response = connection.read_response()

        assert_problem(response, 400)
        assert connection.is_closed_by_peer(), "the connection stayed open after a framing error"
    assert_nothing_reached(services)


def test_a_smuggled_request_never_reaches_any_upstream(
    gateway: GatewayProcess, services: Fleet
) -> None:
    attack = request_with(
        "Content-Length: 6\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n" + SMUGGLED
    )

    with RawConnection(gateway.port) as connection:
        connection.send_tolerant(attack)
        connection.read_until_closed(timeout_s=3)

    assert_nothing_reached(services)


def test_a_body_that_looks_like_a_request_stays_a_body(
    gateway: GatewayProcess, services: Fleet
) -> None:
    with RawConnection(gateway.port) as connection:
        connection.send(build_request("POST", TARGET, body=SMUGGLED))
        response = connection.read_response()
        connection.send(build_request("GET", "/api/v1/search/next"))
        following = connection.read_response()

    assert (response.status, following.status) == (200, 200)
    targets = [request.target for request in services["search"].wait_for_requests(2)]
    assert targets == [TARGET, "/api/v1/search/next"]
    assert services["search"].requests[0].body == SMUGGLED
    assert "/admin" not in [r.target for u in services.upstreams.values() for r in u.requests]


def test_a_valid_request_after_a_refused_one_needs_a_new_connection(
    gateway: GatewayProcess, services: Fleet
) -> None:
    with RawConnection(gateway.port) as connection:
        connection.send_tolerant(
            request_with("Content-Length: 1\r\nContent-Length: 2\r\n", b"ab")
            + build_request("GET", "/api/v1/search/after")
        )
        first = connection.read_response()
        rest = connection.read_until_closed(timeout_s=3)

    assert first.status == 400
    assert b"HTTP/1.1 200" not in rest
    assert_nothing_reached(services)


NEXT = "/api/v1/search/next"
SMUGGLED_SEARCH = b"GET /api/v1/search/smuggled HTTP/1.1\r\nHost: gateway.test\r\n\r\n"


def request_carrying(
    method: str, target: str, headers: list[tuple[str, str]], body: bytes
) -> bytes:
    """A request with ``body``, chunked when the headers ask for it."""
    if ("Transfer-Encoding", "chunked") in headers:
        framed = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
        return build_request(method, target, headers) + framed
    return build_request(method, target, headers, body=body)


@pytest.mark.parametrize(
    ("method", "target", "headers", "status"),
    [
        pytest.param("POST", "/api/v1/tickets/1", [], 401, id="unauthorized"),
        pytest.param("POST", "/api/v1/nowhere", [], 404, id="not-found"),
        pytest.param("GET", "/api/v1/webhooks/stripe", [], 405, id="method-not-allowed"),
        pytest.param("POST", "/api/v1/search/a%2fb", [], 400, id="invalid-path"),
        pytest.param("POST", "/api/v1/search/a", [("x_y", "1")], 400, id="underscore-header"),
        pytest.param(
            "POST", "/api/v1/tickets/1", [("Transfer-Encoding", "chunked")], 401, id="chunked"
        ),
    ],
)
def test_the_body_of_a_refused_request_is_never_read_as_a_request(
    gateway: GatewayProcess,
    services: Fleet,
    method: str,
    target: str,
    headers: list[tuple[str, str]],
    status: int,
) -> None:
    refused = request_carrying(method, target, headers, SMUGGLED_SEARCH)
    with RawConnection(gateway.port) as connection:
        connection.send(refused + build_request("GET", NEXT))
        first = connection.read_response()
        rest = connection.read_until_closed(timeout_s=1.0)

    assert first.status == status
    assert rest.count(b"HTTP/1.1 ") <= 1, "the refused request's body was answered as a request"
    seen = [r.target for u in services.upstreams.values() for r in u.requests]
    assert "/api/v1/search/smuggled" not in seen
    assert set(seen) <= {NEXT}


def test_a_body_sent_after_a_refused_expect_is_never_read_as_a_request(
    gateway: GatewayProcess, services: Fleet
) -> None:
    headers = [("Expect", "100-continue"), ("Content-Length", str(len(SMUGGLED_SEARCH)))]
    with RawConnection(gateway.port) as connection:
        connection.send(build_request("POST", "/api/v1/tickets/1", headers))
        refusal = connection.read_response()
        connection.send_tolerant(SMUGGLED_SEARCH)
        connection.read_until_closed(timeout_s=1.0)

    assert refusal.status == 401
    assert_nothing_reached(services)

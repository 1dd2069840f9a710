"""Pipelined requests sent in one write: every request parsed before a bad one is answered, in
order, then the bad one's error, then the connection closes; and the head-size cap counts the
bytes of the head itself, never the body or the heads before it, nor a line still arriving
beyond the cap."""

from __future__ import annotations

import time
from typing import Any

import pytest
from support.assertions import assert_nothing_reached
from support.client import IncompleteResponse, RawConnection, RawResponse, build_request
from support.gateway import Fleet, GatewayProcess

PUBLIC = "/api/v1/search"  # public: authentication plays no part
MAX_HEADER_BYTES = 16384
MAX_URI_BYTES = 8192
# Far longer than any answer here takes: a 431 or 414 that waits for it has waited for the 408.
HEADER_TIMEOUT_MS = 8000
ANSWER_WITHIN_S = 3.0
MAX_ANSWERS = 40


@pytest.fixture(scope="module")
def gateway_config() -> dict[str, Any]:
    return {"server": {"header_timeout_ms": HEADER_TIMEOUT_MS}}


def read_all(connection: RawConnection, limit: int = MAX_ANSWERS) -> tuple[list[RawResponse], bool]:
    """Every response until the gateway closes (or ``limit`` answers): and whether it closed."""
    responses: list[RawResponse] = []
    for _ in range(limit):
        try:
            responses.append(connection.read_response())
        except IncompleteResponse:
            return responses, True
    return responses, connection.is_closed_by_peer(ANSWER_WITHIN_S)


def get(name: str, headers: list[tuple[str, str]] | None = None) -> bytes:
    return build_request("GET", f"{PUBLIC}/{name}", headers or [])


def echoed_target(response: RawResponse) -> str:
    return str(response.json()["target"]) if response.status == 200 else ""


MALFORMED = {
    "bad-request-line": (b"GET /x HTTP/1.1 junk\r\nHost: g\r\n\r\n", 400),
    "two-hosts": (b"GET /x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    "cl-and-te": (
        b"POST /x HTTP/1.1\r\nHost: g\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        400,
    ),
    "oversized-header": (get("big", [("X-Big", "a" * (MAX_HEADER_BYTES + 100))]), 431),
    "oversized-uri": (build_request("GET", "/" + "u" * (MAX_URI_BYTES + 100)), 414),
}


@pytest.mark.parametrize(("bad", "status"), list(MALFORMED.values()), ids=list(MALFORMED))
def test_requests_before_a_malformed_one_are_answered_in_order_then_its_error(
    gateway: GatewayProcess, services: Fleet, bad: bytes, status: int
) -> None:
    with RawConnection(gateway.port) as connection:
        connection.send(get("first") + get("second") + bad)
        responses, closed = read_all(connection)

    assert [r.status for r in responses] == [200, 200, status]
    assert [echoed_target(r) for r in responses[:2]] == [f"{PUBLIC}/first", f"{PUBLIC}/second"]
    # Only the last answer ends the connection: the earlier ones promise nothing they break.
    assert [r.header("connection") for r in responses] == [None, None, "close"]
    assert responses[2].header("content-type") == "application/problem+json"
    assert responses[2].json()["request_id"]
    assert closed


def send_split(connection: RawConnection, first: bytes, rest: bytes) -> None:
    """``first`` in one write (so one read at the gateway), ``rest`` once that was read."""
    connection.send(first)
    time.sleep(0.2)
    connection.send(rest)


def test_a_body_is_not_counted_as_head_bytes_of_the_next_request(
    gateway: GatewayProcess, services: Fleet
) -> None:
    # The next head arrives half in the body's read: the half must not be taken for a 30 KB head.
    body = b'{"pad": "' + b"p" * 30_000 + b'"}'
    after = get("after")
    with RawConnection(gateway.port) as connection:
        upload = build_request("POST", f"{PUBLIC}/upload", [], body)
        send_split(connection, upload + after[:20], after[20:])
        first, second = connection.read_response(), connection.read_response()

    assert (first.status, second.status) == (200, 200)
    assert echoed_target(second) == f"{PUBLIC}/after"
    uploads = [r for r in services["search"].requests if r.path == f"{PUBLIC}/upload"]
    assert [r.body for r in uploads] == [body]


def test_a_chunked_body_is_not_counted_as_head_bytes_of_the_next_request(
    gateway: GatewayProcess, services: Fleet
) -> None:
    chunks = b"".join(b"%x\r\n%s\r\n" % (1000, b"c" * 1000) for _ in range(30)) + b"0\r\n\r\n"
    head = build_request("POST", f"{PUBLIC}/chunked", [("Transfer-Encoding", "chunked")])
    after = get("after")
    with RawConnection(gateway.port) as connection:
        send_split(connection, head + chunks + after[:20], after[20:])
        first, second = connection.read_response(), connection.read_response()

    assert (first.status, second.status) == (200, 200)
    assert echoed_target(second) == f"{PUBLIC}/after"


def test_many_pipelined_heads_are_not_one_head(gateway: GatewayProcess, services: Fleet) -> None:
    # Ten heads of 3 KB each and the start of an eleventh in one read: no head is near the cap.
    heads = [get(f"n{i}", [("X-Pad", "p" * 3000)]) for i in range(11)]
    with RawConnection(gateway.port) as connection:
        send_split(connection, b"".join(heads)[:-100], heads[-1][-100:])
        responses = [connection.read_response() for _ in heads]

    assert [r.status for r in responses] == [200] * len(heads)
    assert [echoed_target(r) for r in responses] == [f"{PUBLIC}/n{i}" for i in range(11)]


def test_a_head_just_under_the_cap_after_a_large_body_is_accepted(
    gateway: GatewayProcess, services: Fleet
) -> None:
    pad = "p" * (MAX_HEADER_BYTES - 200)  # the whole header section stays under 16 KiB
    after = get("big", [("X-P", pad)])
    with RawConnection(gateway.port) as connection:
        upload = build_request("POST", f"{PUBLIC}/up", [], b"b" * 20_000)
        send_split(connection, upload + after[:-10], after[-10:])
        first, second = connection.read_response(), connection.read_response()

    assert (first.status, second.status) == (200, 200)


UNFINISHED = {
    # Just past the header cap, never finished: answered at once, not after the header timeout.
    "header-line": (get("q")[:-2] + b"X-Long: " + b"a" * (MAX_HEADER_BYTES + 10), 431),
    "header-name": (get("q")[:-2] + b"X-" + b"n" * (MAX_HEADER_BYTES + 10), 431),
    "many-lines-then-partial": (
        get("q")[:-2] + (b"X-A: " + b"a" * 1000 + b"\r\n") * 15 + b"X-B: " + b"b" * 1500,
        431,
    ),
    "uri": (b"GET /" + b"u" * (MAX_URI_BYTES + 10), 414),
}


@pytest.mark.parametrize(("raw", "status"), list(UNFINISHED.values()), ids=list(UNFINISHED))
def test_an_unfinished_head_past_the_cap_is_refused_at_once(
    gateway: GatewayProcess, services: Fleet, raw: bytes, status: int
) -> None:
    with RawConnection(gateway.port, timeout_s=ANSWER_WITHIN_S) as connection:
        started = time.monotonic()
        connection.send_tolerant(raw)
        response = connection.read_response()
        waited = time.monotonic() - started
        closed = connection.is_closed_by_peer(ANSWER_WITHIN_S)

    assert response.status == status
    assert waited < ANSWER_WITHIN_S
    assert closed
    assert_nothing_reached(services)


def test_an_unfinished_line_after_a_pipelined_request_is_refused_at_the_cap(
    gateway: GatewayProcess, services: Fleet
) -> None:
    partial = get("q")[:-2] + b"X-Long: " + b"a" * (MAX_HEADER_BYTES + 10)
    with RawConnection(gateway.port, timeout_s=ANSWER_WITHIN_S) as connection:
        connection.send(get("first") + partial)
        responses, closed = read_all(connection)

    assert [r.status for r in responses] == [200, 431]
    assert closed


def test_a_head_dripped_across_reads_is_refused_at_the_cap(
    gateway: GatewayProcess, services: Fleet
) -> None:
    with RawConnection(gateway.port, timeout_s=ANSWER_WITHIN_S) as connection:
        connection.send(get("q")[:-2] + b"X-Long: ")
        piece = b"a" * 1024
        refused = False
        for _ in range(MAX_HEADER_BYTES // len(piece) + 4):
            if not connection.send_tolerant(piece) or connection.is_closed_by_peer(0.02):
                refused = True
                break
        response = connection.read_response()

    assert refused
    assert response.status == 431


def chunked_upload(name: str) -> bytes:
    return build_request("POST", f"{PUBLIC}/{name}", [("Transfer-Encoding", "chunked")])


@pytest.mark.parametrize("streamed", [False, True], ids=["in-one-read", "streamed"])
def test_an_unfinished_trailer_line_is_refused_at_the_cap(
    gateway: GatewayProcess, services: Fleet, streamed: bool
) -> None:
    # A trailer field is buffered until its line ends: it may not grow past the header cap.
    body = b"5\r\nhello\r\n0\r\nX-Trailer: "
    with RawConnection(gateway.port, timeout_s=ANSWER_WITHIN_S) as connection:
        if streamed:
            send_split(connection, chunked_upload("trailer"), body)
        else:
            connection.send(chunked_upload("trailer") + body)
        piece = b"t" * 4096
        for _ in range(MAX_HEADER_BYTES // len(piece) + 4):
            if not connection.send_tolerant(piece) or connection.is_closed_by_peer(0.02):
                break
        answer = bytes(connection.buffer) + connection.read_until_closed(ANSWER_WITHIN_S)

    assert answer.startswith(b"HTTP/1.1 4"), answer[:80]
    assert not [r for r in services["search"].requests if r.body_complete]


def test_a_trailer_within_the_cap_is_dropped_and_the_body_passes(
    gateway: GatewayProcess, services: Fleet
) -> None:
    trailer = b"X-Trailer: " + b"t" * 8000 + b"\r\n"
    with RawConnection(gateway.port) as connection:
        connection.send(chunked_upload("trailed") + b"5\r\nhello\r\n0\r\n" + trailer + b"\r\n")
        response = connection.read_response()

    assert response.status == 200
    upload = services["search"].only_request()
    assert upload.body == b"hello" and not upload.trailers


def test_requests_before_an_upgrade_request_are_answered(
    gateway: GatewayProcess, services: Fleet
) -> None:
    # An upgrade request ends the connection's HTTP exchanges (a protocol the gateway does not
    # tunnel is served as plain HTTP/1.1, then the connection closes), but what came before it
    # on the socket is answered first, and nothing after it is parsed as a request.
    upgrade = get("h2", [("Connection", "Upgrade"), ("Upgrade", "h2c")])
    with RawConnection(gateway.port) as connection:
        connection.send(get("before") + upgrade + get("after"))
        responses, closed = read_all(connection)

    assert [echoed_target(r) for r in responses] == [f"{PUBLIC}/before", f"{PUBLIC}/h2"]
    assert [r.header("connection") for r in responses] == [None, "close"]
    assert closed


def test_requests_before_a_malformed_websocket_handshake_are_answered(
    gateway: GatewayProcess, services: Fleet
) -> None:
    upgrade = get("ws", [("Connection", "Upgrade"), ("Upgrade", "websocket")])  # no key
    with RawConnection(gateway.port) as connection:
        connection.send(get("before") + upgrade + get("after"))
        responses, closed = read_all(connection)

    assert [r.status for r in responses] == [200, 400]
    assert echoed_target(responses[0]) == f"{PUBLIC}/before"
    assert responses[1].header("connection") == "close"
    assert closed

"""HTTP/1.1 as a client speaks it: 100-continue, HEAD, pipelining, keep-alive, chunked bodies in
both directions, and HTTP/1.0 clients."""

from __future__ import annotations

import hashlib
import time

import pytest
from support.assertions import assert_problem
from support.client import RawConnection, build_request
from support.gateway import Fleet, GatewayProcess
from support.patterns import pattern_sha256
from support.tokens import mint
from support.upstream import Behaviour, Reply

UPSTREAM_CLOSE_SETTLE_S = 0.05
PAYLOAD = b'{"seat": "A-12", "note": "bytes \xff\x00 and \r\n inside"}'


def auth() -> tuple[str, str]:
    return ("Authorization", f"Bearer {mint()}")


def test_expect_100_continue_gets_100_then_the_final_response(
    gateway: GatewayProcess, services: Fleet
) -> None:
    headers = [auth(), ("Content-Length", str(len(PAYLOAD))), ("Expect", "100-continue")]
    with RawConnection(gateway.port) as connection:
        connection.send(build_request("POST", "/api/v1/events/hold", headers))
        interim = connection.read_response()
        connection.send(PAYLOAD)
        final = connection.read_response()

    assert interim.status == 100
    assert final.status == 200
    assert services["event"].only_request().body == PAYLOAD


def test_expect_100_continue_without_a_token_gets_401_and_no_100(
    gateway: GatewayProcess, services: Fleet
) -> None:
    headers = [("Content-Length", str(len(PAYLOAD))), ("Expect", "100-continue")]
    with RawConnection(gateway.port) as connection:
        connection.send(build_request("POST", "/api/v1/events/hold", headers))
        first = connection.read_response()

    assert_problem(first, 401)
    assert not services["event"].requests


def test_head_returns_headers_without_a_body_and_the_connection_stays_usable(
    gateway: GatewayProcess, services: Fleet
) -> None:
    services["search"].respond(Reply(body=b"x" * 1234))
    with RawConnection(gateway.port) as connection:
        connection.send(build_request("HEAD", "/api/v1/search/q"))
        head = connection.read_response("HEAD")
        connection.send(build_request("GET", "/api/v1/search/after-head"))
        following = connection.read_response()

    assert head.status == 200
    assert head.header("content-length") == "1234"
    assert following.status == 200
    assert following.body == b"x" * 1234
    assert [r.method for r in services["search"].wait_for_requests(2)] == ["HEAD", "GET"]


def test_head_to_a_chunked_upstream_does_not_wait_for_a_body(
    gateway: GatewayProcess, services: Fleet
) -> None:
    services["search"].respond(Reply(chunked=True, body=b"abc"))
    with RawConnection(gateway.port) as connection:
        connection.send(
            build_request("HEAD", "/api/v1/search/h") + build_request("GET", "/api/v1/search/g")
        )
        head = connection.read_response("HEAD")
        following = connection.read_response()

    assert (head.status, following.status, following.body) == (200, 200, b"abc")


def test_pipelined_requests_are_answered_in_order(gateway: GatewayProcess, services: Fleet) -> None:
    services["search"].respond(Reply(delay_s=0.3), path="/api/v1/search/first")
    paths = ["/api/v1/search/first", "/api/v1/search/second", "/api/v1/search/third"]
    with RawConnection(gateway.port) as connection:
        connection.send(b"".join(build_request("GET", path) for path in paths))
        responses = [connection.read_response() for _ in paths]

    assert [r.status for r in responses] == [200, 200, 200]
    assert [r.json()["target"] for r in responses] == paths


def test_pipelined_requests_mixing_bodies_and_routes_stay_in_order(
    gateway: GatewayProcess, services: Fleet
) -> None:
    requests = [
        build_request("POST", "/api/v1/events/a", [auth()], body=b"first"),
        build_request("GET", "/api/v1/search/b"),
        build_request("PUT", "/api/v1/events/c", [auth()], body=b"third"),
    ]
    with RawConnection(gateway.port) as connection:
        connection.send(b"".join(requests))
        responses = [connection.read_response() for _ in requests]

    assert [r.json()["target"] for r in responses] == [
        "/api/v1/events/a",
        "/api/v1/search/b",
        "/api/v1/events/c",
    ]
    assert [r.body for r in services["event"].wait_for_requests(2)] == [b"first", b"third"]


def test_several_requests_share_one_kept_alive_connection(
    gateway: GatewayProcess, services: Fleet
) -> None:
    with RawConnection(gateway.port) as connection:
        for index in range(5):
            connection.send(build_request("GET", f"/api/v1/search/{index}"))
            assert connection.read_response().status == 200
        assert not connection.is_closed_by_peer(timeout_s=0.2)

    assert len(services["search"].wait_for_requests(5)) == 5


def test_a_chunked_request_body_reaches_the_upstream_decoded(
    gateway: GatewayProcess, services: Fleet
) -> None:
    chunks = [PAYLOAD[:7], PAYLOAD[7:20], PAYLOAD[20:]]
    body = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks)
    body = body.replace(b"\r\n", b";ext=1\r\n", 1) + b"0\r\n\r\n"
    with RawConnection(gateway.port) as connection:
        connection.send(
            build_request("POST", "/api/v1/events/hold", [auth(), ("Transfer-Encoding", "chunked")])
            + body
        )
        response = connection.read_response()

    assert response.status == 200
    request = services["event"].only_request()
    assert request.body == PAYLOAD
    assert request.body_complete


def test_a_chunked_upstream_response_reaches_the_client_intact(
    gateway: GatewayProcess, services: Fleet
) -> None:
    size = 300_000
    services["search"].respond(Reply(generated_size=size, chunked=True))

    response = gateway.get("/api/v1/search/stream")

    assert response.status == 200
    assert hashlib.sha256(response.body).hexdigest() == pattern_sha256(size)


def test_an_http_1_0_client_gets_a_delimited_response_it_understands(
    gateway: GatewayProcess, services: Fleet
) -> None:
    size = 100_000
    services["search"].respond(Reply(generated_size=size, chunked=True))
    with RawConnection(gateway.port) as connection:
        connection.send(b"GET /api/v1/search/old HTTP/1.0\r\nHost: gateway.test\r\n\r\n")
        closed = connection.is_closed_by_peer(timeout_s=5)
        raw = bytes(connection.buffer)

    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith((b"HTTP/1.0 200", b"HTTP/1.1 200")), head
    assert b"chunked" not in head.lower()
    assert closed or f"content-length: {size}".encode() in head.lower(), "no way to find the end"
    assert hashlib.sha256(body).hexdigest() == pattern_sha256(size)


def test_an_empty_body_with_content_length_zero_is_forwarded(
    gateway: GatewayProcess, services: Fleet
) -> None:
    response = gateway.request("POST", "/api/v1/events/empty", body=b"", token=mint())

    assert response.status == 200
    request = services["event"].only_request()
    assert request.body == b""
    assert request.body_complete


def test_upstream_connections_are_reused_across_requests(
    gateway: GatewayProcess, services: Fleet
) -> None:
    upstream = services["search"]
    gateway.get("/api/v1/search/warm-up")
    before = upstream.connections_accepted

    statuses = [gateway.get(f"/api/v1/search/{index}").status for index in range(10)]

    assert statuses == [200] * 10
    assert upstream.connections_accepted - before <= 1, "each request opened a new connection"


def test_refusals_do_not_close_a_kept_alive_connection(
    gateway: GatewayProcess, services: Fleet
) -> None:
    with RawConnection(gateway.port) as connection:
        statuses = []
        for target in ("/api/v1/nowhere", "/api/v1/tickets/1", "/api/v1/search/ok"):
            connection.send(build_request("GET", target))
            statuses.append(connection.read_response().status)

    assert statuses == [404, 401, 200]


def test_a_refusal_inside_a_pipeline_keeps_the_order(
    gateway: GatewayProcess, services: Fleet
) -> None:
    targets = ["/api/v1/search/1", "/api/v1/tickets/2", "/api/v1/search/3"]
    with RawConnection(gateway.port) as connection:
        connection.send(b"".join(build_request("GET", target) for target in targets))
        responses = [connection.read_response() for _ in targets]

    assert [r.status for r in responses] == [200, 401, 200]
    assert responses[2].json()["target"] == "/api/v1/search/3"


def test_a_204_from_the_upstream_has_no_body_and_the_connection_stays_usable(
    gateway: GatewayProcess, services: Fleet
) -> None:
    services["search"].respond(Reply(status=204, body=b""), path="/api/v1/search/empty")
    with RawConnection(gateway.port) as connection:
        connection.send(build_request("GET", "/api/v1/search/empty"))
        empty = connection.read_response()
        connection.send(build_request("GET", "/api/v1/search/full"))
        full = connection.read_response()

    assert (empty.status, empty.body) == (204, b"")
    assert full.json()["target"] == "/api/v1/search/full"


def test_connection_close_from_the_client_closes_after_the_response(
    gateway: GatewayProcess, services: Fleet
) -> None:
    with RawConnection(gateway.port) as connection:
        connection.send(build_request("GET", "/api/v1/search/q", [("Connection", "close")]))
        response = connection.read_response()

        assert response.status == 200
        assert connection.is_closed_by_peer()


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(Reply(headers=(("Connection", "close"),)), id="announced"),
        pytest.param(Reply(behaviour=Behaviour.RESPOND_THEN_CLOSE), id="silent"),
    ],
)
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_an_upstream_that_closes_after_each_response_still_serves_every_request(
    gateway: GatewayProcess, services: Fleet, reply: Reply, method: str
) -> None:
    services["event"].respond(reply)
    statuses = []
    for index in range(4):
        body = b"{}" if method == "POST" else None
        statuses.append(
            gateway.request(method, f"/api/v1/events/{index}", body=body, token=mint()).status
        )
        time.sleep(UPSTREAM_CLOSE_SETTLE_S)  # the upstream's FIN arrives before the next request

    assert statuses == [200] * 4
    assert len(services["event"].requests) == 4


@pytest.mark.parametrize(
    ("version", "connection", "stays_open"),
    [
        ("1.1", None, True),
        ("1.1", "close", False),
        ("1.1", "keep-alive", True),
        ("1.0", None, False),
        ("1.0", "keep-alive", True),
        ("1.0", "close", False),
    ],
)
def test_keep_alive_follows_the_version_and_the_connection_header(
    gateway: GatewayProcess, services: Fleet, version: str, connection: str | None, stays_open: bool
) -> None:
    head = f"GET /api/v1/search/kept HTTP/{version}\r\nHost: gateway.test\r\n"
    if connection is not None:
        head += f"Connection: {connection}\r\n"
    with RawConnection(gateway.port) as raw:
        raw.send((head + "\r\n").encode())
        response = raw.read_response()
        closed = raw.is_closed_by_peer(timeout_s=1)

    assert response.status == 200
    assert closed is not stays_open
    if version == "1.0" and stays_open:
        assert response.header("connection") == "keep-alive"
    if not stays_open:
        assert response.header("connection") == "close"
    assert services["search"].only_request().header("connection") is None


def test_options_asterisk_says_what_the_gateway_allows(
    gateway: GatewayProcess, services: Fleet
) -> None:
    with RawConnection(gateway.port) as connection:
        connection.send(b"OPTIONS * HTTP/1.1\r\nHost: gateway\r\n\r\n")
        response = connection.read_response()
        assert response.status == 200, response.body
        allowed = {m.strip() for m in (response.header("allow") or "").split(",")}
        assert {"GET", "POST", "OPTIONS"} <= allowed and "TRACE" not in allowed
        # the connection stays usable, and * means nothing to other methods
        connection.send(b"GET * HTTP/1.1\r\nHost: gateway\r\n\r\n")
        assert_problem(connection.read_response(), 400)
    assert services.total_requests() == 0

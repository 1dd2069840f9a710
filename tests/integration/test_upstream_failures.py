"""When an upstream fails, the client gets a clear 502/504 problem, and when the client gives up,
the upstream is told."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from support.assertions import assert_problem
from support.client import IncompleteResponse, RawConnection, build_request
from support.gateway import Fleet, GatewayProcess, running_gateway
from support.ports import closed_port_url
from support.tokens import mint
from support.upstream import Behaviour, Reply

SLOW_REPLY_S = 2.0
TICKET_TIMEOUT_MS = 300
ABANDONED_UPLOAD = 1_000_000
FILE_TIMEOUT_MS = 1000
SLOW_UPLOAD_PIECES = 30
SLOW_UPLOAD_PAUSE_S = 0.1  # 30 pieces take ~3 s: three times the file service's timeout
STALLED_BODY_BYTES = 1_000_000  # large enough to be streamed rather than buffered
STALL_GIVE_UP_S = 5.0


@pytest.fixture(scope="module")
def gateway_config() -> dict[str, Any]:
    return {
        "services": {
            "ticket": {"timeout_ms": TICKET_TIMEOUT_MS},
            "file": {"timeout_ms": FILE_TIMEOUT_MS},
        }
    }


# One service per failure mode, so one test's failures never trip another's circuit breaker.
@pytest.mark.parametrize(
    ("behaviour", "service", "prefix"),
    [
        (Behaviour.CLOSE_WITHOUT_RESPONSE, "marketplace", "/marketplace"),
        (Behaviour.GARBAGE, "analytics", "/analytics"),
        (Behaviour.TRUNCATED_HEAD, "notification", "/notifications"),
    ],
)
def test_an_upstream_that_breaks_before_answering_gives_502(
    gateway: GatewayProcess, services: Fleet, behaviour: Behaviour, service: str, prefix: str
) -> None:
    services[service].respond(Reply(behaviour=behaviour))

    response = gateway.get(f"/api/v1{prefix}/1", token=mint())

    assert_problem(response, 502)
    assert services[service].wait_for_requests(1)


@pytest.mark.parametrize(
    ("reply", "service", "prefix"),
    [
        pytest.param(
            Reply(headers=(("Content-Length", "5"),), chunked=True, body=b"hello"),
            "integration",
            "/integrations",
            id="content-length-and-chunked",
        ),
        pytest.param(
            Reply(headers=(("Content-Length", "5"), ("Content-Length", "7")), body=b"hello"),
            "monitoring",
            "/monitoring",
            id="two-content-lengths",
        ),
    ],
)
def test_an_upstream_response_with_ambiguous_framing_gives_502(
    gateway: GatewayProcess, services: Fleet, reply: Reply, service: str, prefix: str
) -> None:
    services[service].respond(reply)

    response = gateway.get(f"/api/v1{prefix}/1", token=mint())

    assert_problem(response, 502)


def test_an_upstream_that_breaks_mid_body_never_looks_complete(
    gateway: GatewayProcess, services: Fleet
) -> None:
    services["compliance"].respond(
        Reply(behaviour=Behaviour.TRUNCATED_BODY, body=b"0123456789" * 1000)
    )

    with RawConnection(gateway.port) as connection:
        connection.send(
            build_request("GET", "/api/v1/compliance/1", [("Authorization", f"Bearer {mint()}")])
        )
        try:
            response = connection.read_response()
        except IncompleteResponse:
            return  # the client saw the truncation: the connection closed early
    assert response.status == 502, f"a truncated body was passed off as {response.status}"


def test_an_upstream_that_is_not_listening_gives_502(service_fleet: Fleet, tmp_path: Path) -> None:
    urls = service_fleet.urls() | {"queue": closed_port_url()}
    with running_gateway(tmp_path, urls) as gateway:
        response = gateway.get("/api/v1/queue/jobs", token=mint())

    assert_problem(response, 502)


def test_an_upstream_slower_than_the_service_timeout_gives_504(
    gateway: GatewayProcess, services: Fleet
) -> None:
    services["ticket"].respond(Reply(delay_s=SLOW_REPLY_S))

    response = gateway.get("/api/v1/tickets/slow", token=mint())

    assert_problem(response, 504)


def test_a_slow_upload_is_not_mistaken_for_a_slow_upstream(
    gateway: GatewayProcess, services: Fleet
) -> None:
    piece = b"u" * 1000
    size = len(piece) * SLOW_UPLOAD_PIECES
    headers = [("Authorization", f"Bearer {mint()}"), ("Content-Length", str(size))]
    with RawConnection(gateway.port) as connection:
        connection.send(build_request("PUT", "/api/v1/files/upload", headers))
        for _ in range(SLOW_UPLOAD_PIECES):
            if not connection.send_tolerant(piece):
                break
            time.sleep(SLOW_UPLOAD_PAUSE_S)
        response = connection.read_response()

    assert response.status == 200, response.body
    assert services["file"].only_request().body_length == size


def test_a_body_that_stalls_midway_is_cut_off_after_the_service_timeout(
    gateway: GatewayProcess, services: Fleet
) -> None:
    body = b"f" * STALLED_BODY_BYTES
    services["file"].respond(Reply(body=body, behaviour=Behaviour.STALLED_BODY, stall_s=10.0))
    headers = [("Authorization", f"Bearer {mint()}")]
    started = time.monotonic()
    with RawConnection(gateway.port) as connection:
        connection.send(build_request("GET", "/api/v1/files/big", headers))
        received = connection.read_until_closed(STALL_GIVE_UP_S)
    waited = time.monotonic() - started

    assert received.startswith(b"HTTP/1.1 200"), received[:100]
    head, _, partial = received.partition(b"\r\n\r\n")
    assert b"content-length: %d" % len(body) in head.lower()
    assert len(partial) < len(body), "a stalled body must not look complete"
    assert waited < STALL_GIVE_UP_S, "the gateway waited on a stalled upstream body"


def test_the_timeout_is_per_service(gateway: GatewayProcess, services: Fleet) -> None:
    services["event"].respond(Reply(delay_s=TICKET_TIMEOUT_MS / 1000 * 2))

    response = gateway.get("/api/v1/events/slow-but-fine", token=mint())

    assert response.status == 200


def test_a_client_that_hangs_up_cancels_the_upstream_request(
    gateway: GatewayProcess, services: Fleet
) -> None:
    upstream = services["venue"]
    upstream.respond(Reply(delay_s=SLOW_REPLY_S * 2))

    with RawConnection(gateway.port) as connection:
        connection.send(
            build_request("GET", "/api/v1/venues", [("Authorization", f"Bearer {mint()}")])
        )
        assert upstream.wait_for_requests(1), "the request never reached the upstream"

    assert upstream.wait_until("client_gone_before_reply", timeout_s=SLOW_REPLY_S), (
        "the gateway kept the upstream request running after the client left"
    )


def test_an_upload_the_client_abandons_never_arrives_complete(
    gateway: GatewayProcess, services: Fleet
) -> None:
    upstream = services["file"]
    headers = [("Authorization", f"Bearer {mint()}"), ("Content-Length", str(ABANDONED_UPLOAD))]
    with RawConnection(gateway.port) as connection:
        connection.send(build_request("PUT", "/api/v1/files/upload", headers))
        connection.send(b"p" * (ABANDONED_UPLOAD // 10))
        upstream.wait_for_requests(1, timeout_s=1.0)  # a streaming gateway forwards at once

    if upstream.requests:
        assert upstream.wait_until("body_read_ended"), "the upstream connection was left open"
    assert not [r for r in upstream.requests if r.body_complete]


def test_the_gateway_answers_normally_after_upstream_failures(
    gateway: GatewayProcess, services: Fleet
) -> None:
    response = gateway.get("/api/v1/search/after-failures")

    assert response.status == 200

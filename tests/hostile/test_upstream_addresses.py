"""No answer of the gateway names an internal host or port, whatever went wrong behind it.

Every kind of upstream failure is driven through a real gateway (refused, reset in the middle
of the head, cut in the middle of the body, closed without answering, too slow, garbage instead
of HTTP, an open circuit, aggregates with a failing source, a WebSocket whose upstream refuses,
a Redis that is down), and the raw bytes of every answer (head and body) are searched for
``127.0.0.1``, ``localhost``, any upstream's port and the Redis URL. The addresses go to the
logs only. A service's redirect to its own address (built from the Host the gateway sent, the
instance's) reaches the client as the path it points at.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.client import RawConnection, RawResponse, build_request
from support.fault_proxy import FaultProxy, Mode
from support.gateway import Fleet, GatewayProcess, running_gateway
from support.ports import closed_port_url, free_port
from support.tokens import mint
from support.upstream import Behaviour, RecordingUpstream, Reply

BAD = "/api/v1/marketplace"  # the misbehaving service: one path per failure
SLOW_MS = 400
BREAKER_CALLS = 20
OUTSIDE = [("X-Forwarded-For", "203.0.113.7")]
QUIET = {"volume_threshold": 100_000}
EVENT = b'{"id": "e-1", "venueId": "v-1"}'
# The sources' answers, so that no body is an echo of the request (which holds the Host sent).
ANSWERS = {
    "event": (EVENT, "/api/v1/events/e-1"),
    "ticket": (b"[]", None),
    "auth": (b'{"id": "u-1"}', None),
    "notification": (b"[]", None),
}
DEAD = ("search", "compliance", "venue", "order", "queue")


def port_of(url: str) -> str:
    return url.rpartition(":")[2].partition("/")[0]


@pytest.fixture(scope="module")
def bad() -> Iterator[RecordingUpstream]:
    upstream = RecordingUpstream("marketplace").start()
    moved = f"http://127.0.0.1:{upstream.port}{BAD}/moved-here"
    for path, reply in {
        "/refused-later": Reply(behaviour=Behaviour.CLOSE_WITHOUT_RESPONSE),
        "/garbage": Reply(behaviour=Behaviour.GARBAGE),
        "/half-head": Reply(behaviour=Behaviour.TRUNCATED_HEAD),
        "/half-body": Reply(body=b"x" * 1000, behaviour=Behaviour.TRUNCATED_BODY),
        "/slow": Reply(body=b"late", delay_s=SLOW_MS * 3 / 1000),
        "/listings": Reply(behaviour=Behaviour.GARBAGE),
        "/moved": Reply(status=302, headers=(("Location", moved),), body=b""),
    }.items():
        upstream.respond(reply, BAD + path)
    yield upstream
    upstream.stop()


@pytest.fixture(scope="module")
def resetting(service_fleet: Fleet) -> Iterator[FaultProxy]:
    service_fleet["analytics"].respond(Reply(body=b"{}"))
    proxy = FaultProxy(service_fleet["analytics"].port).start()
    proxy.set(Mode.RESET, after_bytes=10)
    yield proxy
    proxy.stop()


@pytest.fixture(scope="module")
def urls(service_fleet: Fleet, bad: RecordingUpstream, resetting: FaultProxy) -> dict[str, str]:
    for name, (body, path) in ANSWERS.items():
        service_fleet[name].respond(Reply(body=body), path)
    return service_fleet.urls() | {
        "marketplace": bad.url,
        "analytics": resetting.url,
        **{name: closed_port_url() for name in DEAD},
    }


@pytest.fixture(scope="module")
def gateway(urls: dict[str, str], module_dir: Path) -> Iterator[GatewayProcess]:
    config: dict[str, Any] = {
        "tenancy": {"domain_routing": False, "venue_isolation": False},
        "services": {
            "marketplace": {
                "timeout_ms": SLOW_MS,
                "retry": {"attempts": 1},
                "circuit_breaker": QUIET,
                "health_check": {"enabled": False},
            },
            "analytics": {"retry": {"attempts": 1}, "circuit_breaker": QUIET},
            "compliance": {"retry": {"attempts": 1}, "circuit_breaker": {"volume_threshold": 3}},
        },
    }
    env = {"TRUSTED_PROXIES": "127.0.0.1/32"}
    with running_gateway(module_dir, urls, config, env) as process:
        yield process


def internal_names(urls: dict[str, str], *more: str) -> list[re.Pattern[bytes]]:
    """What must never appear: loopback, localhost, every upstream's port as a number of its
    own (a request id's hex digits may hold the same digits), and anything in ``more``."""
    ports = sorted({port_of(url) for url in urls.values()})
    words = [re.escape(b"127.0.0.1"), b"(?i:localhost)"]
    words += [rb"(?<![0-9A-Za-z])" + port.encode() + rb"(?![0-9])" for port in ports]
    words += [re.escape(text.encode()) for text in more]
    return [re.compile(word) for word in words]


def assert_names_nothing_internal(
    answer: RawResponse, forbidden: list[re.Pattern[bytes]], what: str
) -> None:
    raw = answer.raw_head + answer.body
    found = [pattern.pattern for pattern in forbidden if pattern.search(raw)]
    assert not found, f"{what}: {found} in {raw!r}"


def call(gateway: GatewayProcess, path: str, **kwargs: Any) -> RawResponse:
    return gateway.get(path, token=mint(), **kwargs)


# path -> the status the failure must give (so each case really is the failure it names)
FAILURES = {
    "/api/v1/search/anything": 502,  # refused
    "/api/v1/analytics/report": 502,  # reset in the middle of the head
    f"{BAD}/refused-later": 502,  # accepted, then closed without a byte
    f"{BAD}/garbage": 502,  # not HTTP
    f"{BAD}/half-head": 502,
    f"{BAD}/half-body": 502,
    f"{BAD}/slow": 504,
    "/api/v1/aggregate/events/e-1": 502,  # a required source refused, an optional one garbage
    "/api/v1/aggregate/dashboard": 200,  # an optional source refused: its fallback, and why
}


@pytest.mark.parametrize("path", list(FAILURES))
def test_a_failure_behind_the_gateway_is_told_without_an_address(
    gateway: GatewayProcess, urls: dict[str, str], path: str
) -> None:
    answer = call(gateway, path)

    assert answer.status == FAILURES[path], answer.body
    assert_names_nothing_internal(answer, internal_names(urls), path)
    if answer.status >= 500:
        assert answer.header("content-type") == "application/problem+json"
        detail = answer.json()["detail"]
        assert "-service " in detail or "deadline" in detail, detail  # said in words


def test_the_refusal_names_the_service_in_words(gateway: GatewayProcess) -> None:
    problem = call(gateway, "/api/v1/search/anything").json()
    sources = call(gateway, "/api/v1/aggregate/events/e-1").json()["meta"]["sources"]
    dashboard = call(gateway, "/api/v1/aggregate/dashboard").json()["meta"]["sources"]

    assert problem["detail"] == "search-service refused the connection"
    assert sources["venue"]["error"] == "venue: venue-service refused the connection"
    assert dashboard["orders"] == {
        "status": "fallback",
        "duration_ms": dashboard["orders"]["duration_ms"],
        "error": "order-service refused the connection",
    }


def test_an_open_circuit_is_told_without_an_address(
    gateway: GatewayProcess, urls: dict[str, str]
) -> None:
    answers = [call(gateway, "/api/v1/compliance/checks") for _ in range(BREAKER_CALLS)]

    assert 503 in [a.status for a in answers], [a.status for a in answers]
    for answer in answers:
        assert_names_nothing_internal(answer, internal_names(urls), "compliance")


def test_a_websocket_whose_upstream_refuses_is_told_without_an_address(
    gateway: GatewayProcess, urls: dict[str, str]
) -> None:
    head = build_request(
        "GET",
        "/api/v1/queue/live",
        [
            ("Authorization", f"Bearer {mint()}"),
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("Sec-WebSocket-Version", "13"),
        ],
    )
    with RawConnection(gateway.port) as connection:
        connection.send(head)
        answer = connection.read_response()

    assert answer.status == 502
    assert_names_nothing_internal(answer, internal_names(urls), "websocket")


def test_a_redirect_to_the_instance_reaches_the_client_as_its_path(
    gateway: GatewayProcess, urls: dict[str, str]
) -> None:
    answer = call(gateway, f"{BAD}/moved")

    assert answer.status == 302
    assert answer.header("location") == f"{BAD}/moved-here"
    assert_names_nothing_internal(answer, internal_names(urls), "redirect")


def test_the_probes_tell_an_outside_client_no_address(
    gateway: GatewayProcess, urls: dict[str, str]
) -> None:
    for path in ("/ready", "/health", "/health/ready", "/live", "/docs/openapi.json"):
        answer = gateway.get(path, headers=OUTSIDE)
        assert answer.status in (200, 503), path
        assert_names_nothing_internal(answer, internal_names(urls), path)


def test_a_redis_that_is_down_is_never_named(service_fleet: Fleet, tmp_path: Path) -> None:
    redis_url = f"redis://127.0.0.1:{free_port()}/0"
    urls = service_fleet.urls() | {name: closed_port_url() for name in ("search",)}
    env = {"REDIS_URL": redis_url, "TRUSTED_PROXIES": "127.0.0.1/32"}
    forbidden = internal_names(urls, redis_url, redis_url.removeprefix("redis://"))
    with running_gateway(tmp_path, urls, None, env) as gateway:
        answers = {
            "/api/v1/search/anything": gateway.get("/api/v1/search/anything"),
            "/api/v1/tickets/1": call(gateway, "/api/v1/tickets/1"),
            "/ready": gateway.get("/ready", headers=OUTSIDE),
            "/health": gateway.get("/health", headers=OUTSIDE),
        }

    assert answers["/api/v1/search/anything"].status == 502
    for path, answer in answers.items():
        assert_names_nothing_internal(answer, forbidden, path)

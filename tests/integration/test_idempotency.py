"""Idempotency keys through the real gateway: the in-memory store (one worker), then real Redis
shared by two gateway processes."""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from support.bodies import PURCHASE_BODY, purchase_body
from support.client import RawResponse, http_request
from support.gateway import Fleet, GatewayProcess, running_gateway
from support.metrics import metrics_text
from support.redis import RedisServer
from support.tokens import mint
from support.upstream import Behaviour, Reply

ORDERS = "/api/v1/orders/checkout"
PURCHASE = "/api/v1/tickets/purchase"
REQUIRED = "/api/v1/compliance/filings"
DUPLICATES = 12
SLOW_S = 2.0
TOKEN = mint(sub="buyer-1", tenant_id="tenant-1")
# /orders answers within 1 s or the client gets a 504; the first request may go on for 3 s.
CONFIG: dict[str, Any] = {
    "idempotency": {"lock_ms": 8000},
    "routes": {
        "/orders": {"timeout_ms": 1000},
        "/compliance": {"idempotency": "required"},
        "/payments": {"fail_closed": True},
    },
    "redis": {"timeout_ms": 2000},
}


@pytest.fixture(scope="module")
def gateway_config() -> dict[str, Any]:
    return CONFIG


def new_key() -> str:
    return uuid.uuid4().hex


def post(
    port: int, path: str, key: str | None, body: bytes = b'{"seats": 2}', token: str = TOKEN
) -> RawResponse:
    headers = [("Content-Type", "application/json")]
    if key is not None:
        headers.append(("Idempotency-Key", key))
    return http_request(port, "POST", path, headers, body, token=token)


def concurrent_posts(ports: list[int], path: str, key: str) -> list[RawResponse]:
    with ThreadPoolExecutor(DUPLICATES) as pool:
        calls = [pool.submit(post, ports[i % len(ports)], path, key) for i in range(DUPLICATES)]
        return [call.result() for call in calls]


def assert_one_forwarded(services: Fleet, responses: list[RawResponse]) -> None:
    time.sleep(0.2)  # any duplicate that slipped through would have reached the upstream by now
    assert len(services["order"].requests) == 1
    first = [r for r in responses if r.status == 200 and r.header("idempotency-replayed") is None]
    assert len(first) == 1
    for response in responses:
        if response.status == 200:
            assert response.body == first[0].body
        else:
            assert response.status == 409, response.body
            assert response.header("retry-after") == "1"


# -- the in-memory store ----------------------------------------------------------------------


def test_concurrent_duplicates_reach_the_service_once(
    gateway: GatewayProcess, services: Fleet
) -> None:
    services["order"].respond(Reply(delay_s=0.25))
    responses = concurrent_posts([gateway.port], ORDERS, new_key())
    assert_one_forwarded(services, responses)
    assert {r.status for r in responses} == {200, 409}


def test_a_repeat_after_completion_is_replayed_without_the_service(
    gateway: GatewayProcess, services: Fleet
) -> None:
    services["order"].respond(Reply(status=201, headers=(("X-Order", "o-1"),), body=b'{"id": 1}'))
    key = new_key()
    first = post(gateway.port, ORDERS, key)
    second = post(gateway.port, ORDERS, key)

    assert (first.status, first.body) == (201, b'{"id": 1}')
    assert first.header("idempotency-replayed") is None
    assert (second.status, second.body) == (201, b'{"id": 1}')
    assert second.header("idempotency-replayed") == "true"
    assert second.header("x-order") == "o-1"
    assert second.header("x-request-id") not in (None, first.header("x-request-id"))
    assert len(services["order"].requests) == 1
    assert services["order"].requests[0].header("idempotency-key") == key


def test_the_same_key_for_another_body_or_path_is_422(
    gateway: GatewayProcess, services: Fleet
) -> None:
    key = new_key()
    assert post(gateway.port, ORDERS, key).status == 200
    other_body = post(gateway.port, ORDERS, key, body=b'{"seats": 3}')
    other_path = post(gateway.port, ORDERS + "/2", key)

    assert other_body.status == other_path.status == 422
    assert other_body.json()["type"].endswith("/idempotency-key-reused")
    assert len(services["order"].requests) == 1


def test_the_path_is_compared_canonical_and_the_query_counts(
    gateway: GatewayProcess, services: Fleet
) -> None:
    key = new_key()
    assert post(gateway.port, ORDERS, key).status == 200
    same = post(gateway.port, "/api/v1/orders//x/../checkout", key)
    assert same.header("idempotency-replayed") == "true"
    assert post(gateway.port, ORDERS + "?coupon=1", key).status == 422
    assert len(services["order"].requests) == 1


def test_keys_are_per_user(gateway: GatewayProcess, services: Fleet) -> None:
    key = new_key()
    assert post(gateway.port, ORDERS, key).status == 200
    other_user = mint(sub="buyer-2", tenant_id="tenant-1")
    answer = post(gateway.port, ORDERS, key, body=b'{"seats": 3}', token=other_user)
    assert answer.status == 200
    assert answer.header("idempotency-replayed") is None
    assert len(services["order"].requests) == 2


@pytest.mark.parametrize(
    "key", ["", "k" * 129, "has space", "tab\there", "semi;colon", "ünïcode", "a\x7fb"]
)
def test_bad_keys_are_400_before_the_service(
    gateway: GatewayProcess, services: Fleet, key: str
) -> None:
    answer = post(gateway.port, ORDERS, key)
    assert answer.status == 400, answer.body
    # A control character is refused by the HTTP parser already (and the connection closed).
    slug = "/malformed-request" if "\x7f" in key else "/invalid-idempotency-key"
    assert answer.json()["type"].endswith(slug)
    assert services["order"].requests == []


def test_two_key_lines_are_400(gateway: GatewayProcess, services: Fleet) -> None:
    headers = [("Idempotency-Key", "a"), ("Idempotency-Key", "b")]
    answer = http_request(gateway.port, "POST", ORDERS, headers, b"{}", token=TOKEN)
    assert answer.status == 400
    assert services["order"].requests == []


def test_a_key_of_128_characters_is_accepted(gateway: GatewayProcess, services: Fleet) -> None:
    assert post(gateway.port, ORDERS, "K-_9" * 32).status == 200


def test_required_without_a_key_is_400_and_with_one_passes(
    gateway: GatewayProcess, services: Fleet
) -> None:
    refused = post(gateway.port, REQUIRED, None)
    assert refused.status == 400
    assert refused.json()["type"].endswith("/idempotency-key-required")
    assert services["compliance"].requests == []
    assert post(gateway.port, REQUIRED, new_key()).status == 200
    # Reads are never keyed.
    assert http_request(gateway.port, "GET", REQUIRED, token=TOKEN).status == 200


def test_optional_without_a_key_is_forwarded_each_time(
    gateway: GatewayProcess, services: Fleet
) -> None:
    assert post(gateway.port, ORDERS, None).status == 200
    assert post(gateway.port, ORDERS, None).status == 200
    assert len(services["order"].requests) == 2


def test_a_504_then_a_retry_gets_the_answer_once_the_first_finishes(
    gateway: GatewayProcess, services: Fleet
) -> None:
    services["order"].respond(Reply(status=201, body=b'{"bought": true}', delay_s=SLOW_S))
    key = new_key()
    started = time.monotonic()
    timed_out = post(gateway.port, ORDERS, key)
    assert timed_out.status == 504
    assert time.monotonic() - started < SLOW_S
    while_working = post(gateway.port, ORDERS, key)
    assert while_working.status == 409
    assert while_working.header("retry-after") == "1"

    time.sleep(SLOW_S)
    replay = post(gateway.port, ORDERS, key)
    assert (replay.status, replay.body) == (201, b'{"bought": true}')
    assert replay.header("idempotency-replayed") == "true"
    assert len(services["order"].requests) == 1
    assert services["order"].requests[0].client_gone_before_reply is False


def test_a_503_from_the_service_releases_the_key(gateway: GatewayProcess, services: Fleet) -> None:
    services["order"].respond(Reply(status=503, body=b"busy"))
    key = new_key()
    assert post(gateway.port, ORDERS, key).status == 503
    tried = len(services["order"].requests)
    services["order"].respond(Reply(status=201, body=b"done"))
    retry = post(gateway.port, ORDERS, key)
    assert (retry.status, retry.body) == (201, b"done")
    assert retry.header("idempotency-replayed") is None
    assert len(services["order"].requests) == tried + 1


def test_a_gateway_502_releases_the_key(gateway: GatewayProcess, services: Fleet) -> None:
    """The service hangs up without an answer: the gateway's own 502 is not kept."""
    services["order"].respond(Reply(behaviour=Behaviour.CLOSE_WITHOUT_RESPONSE))
    key = new_key()
    assert post(gateway.port, ORDERS, key).status == 502
    tried = len(services["order"].requests)
    assert tried == 2  # a keyed POST is retried once the connection broke (attempts: 2)
    services["order"].respond(Reply(status=201, body=b"done"))
    assert post(gateway.port, ORDERS, key).status == 201
    assert len(services["order"].requests) == tried + 1


def test_replays_and_conflicts_do_not_count_against_the_purchase_limit(
    gateway: GatewayProcess, services: Fleet
) -> None:
    """ticket_purchase allows 5 a minute per user: 20 repeats of one purchase are all answered."""
    buyer = mint(sub=f"buyer-{uuid.uuid4().hex[:8]}", tenant_id="tenant-1")
    key = new_key()
    answers = [post(gateway.port, PURCHASE, key, PURCHASE_BODY, buyer) for _ in range(20)]
    assert {a.status for a in answers} == {200}
    assert sum(a.header("idempotency-replayed") == "true" for a in answers) == 19
    assert len(services["ticket"].requests) == 1
    # Other purchases still meet the limit: 4 more are allowed, the 5th after those is not.
    others = [
        post(gateway.port, PURCHASE, new_key(), purchase_body(str(uuid.uuid4())), buyer).status
        for _ in range(5)
    ]
    assert others == [200, 200, 200, 200, 429]


def test_a_replay_storm_is_served_from_the_store(gateway: GatewayProcess, services: Fleet) -> None:
    key = new_key()
    assert post(gateway.port, ORDERS, key).status == 200
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: post(gateway.port, ORDERS, key), range(200)))
    assert {a.status for a in answers} == {200}
    assert all(a.header("idempotency-replayed") == "true" for a in answers)
    assert len(services["order"].requests) == 1
    metrics = metrics_text(gateway)
    replayed = 'gateway_idempotency_requests_total{route="/api/v1/orders",outcome="replayed"}'
    counted = [line for line in metrics.splitlines() if line.startswith(replayed)]
    assert counted and float(counted[0].split()[-1]) >= 200


# -- real Redis, two gateway processes ----------------------------------------------------------


@pytest.fixture
def shared(
    tmp_path: Path, services: Fleet, redis_server: RedisServer
) -> Iterator[tuple[GatewayProcess, GatewayProcess]]:
    env = {"REDIS_URL": redis_server.url}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    urls = services.urls()
    with (
        running_gateway(tmp_path / "a", urls, config=CONFIG, env=env) as first,
        running_gateway(tmp_path / "b", urls, config=CONFIG, env=env) as second,
    ):
        yield first, second


def test_two_gateways_on_redis_forward_concurrent_duplicates_once(
    shared: tuple[GatewayProcess, GatewayProcess], services: Fleet
) -> None:
    services["order"].respond(Reply(delay_s=0.25))
    key = new_key()
    responses = concurrent_posts([g.port for g in shared], ORDERS, key)
    assert_one_forwarded(services, responses)
    # Once done, either gateway replays it.
    for gateway in shared:
        replay = post(gateway.port, ORDERS, key)
        assert replay.header("idempotency-replayed") == "true"
        assert replay.body == responses[0].body or replay.status == 200
    assert len(services["order"].requests) == 1


def test_two_gateways_on_redis_504_then_the_other_replays(
    shared: tuple[GatewayProcess, GatewayProcess], services: Fleet
) -> None:
    first, second = shared
    services["order"].respond(Reply(status=201, body=b"ok", delay_s=SLOW_S))
    key = new_key()
    assert post(first.port, ORDERS, key).status == 504
    assert post(second.port, ORDERS, key).status == 409
    assert post(second.port, ORDERS, key, body=b"other").status == 422
    time.sleep(SLOW_S)
    replay = post(second.port, ORDERS, key)
    assert (replay.status, replay.body) == (201, b"ok")
    assert len(services["order"].requests) == 1


def test_redis_stopped_fail_closed_is_503_else_forwarded_unchecked(
    shared: tuple[GatewayProcess, GatewayProcess], services: Fleet, redis_server: RedisServer
) -> None:
    gateway = shared[0]
    key = new_key()
    assert post(gateway.port, ORDERS, key).status == 200
    redis_server.stop()

    closed = post(gateway.port, "/api/v1/payments/process", new_key())
    assert closed.status == 503
    assert closed.header("retry-after") == "1"
    assert services["payment"].requests == []
    # /orders fails open: forwarded without a key check (logged), so a repeat reaches it too.
    assert post(gateway.port, ORDERS, key).status == 200
    assert len(services["order"].requests) == 2
    assert "idempotency store unavailable" in gateway.output()

    redis_server.start()  # the same port, empty: keys are checked again
    fresh = new_key()
    deadline = time.monotonic() + 5
    while post(gateway.port, "/api/v1/payments/process", fresh).status == 503:
        assert time.monotonic() < deadline, "keys not checked again after Redis came back"
        time.sleep(0.2)
    replay = post(gateway.port, "/api/v1/payments/process", fresh)
    assert replay.header("idempotency-replayed") == "true"


def test_redis_frozen_fail_closed_is_503_else_forwarded_then_checked_again(
    shared: tuple[GatewayProcess, GatewayProcess], services: Fleet, redis_server: RedisServer
) -> None:
    gateway = shared[1]
    redis_server.signal(signal.SIGSTOP)
    try:
        assert post(gateway.port, "/api/v1/payments/process", new_key()).status == 503
        assert post(gateway.port, ORDERS, new_key()).status == 200
        assert services["payment"].requests == []
    finally:
        redis_server.signal(signal.SIGCONT)
    key = new_key()
    deadline = time.monotonic() + 5
    while post(gateway.port, ORDERS, key).header("idempotency-replayed") != "true":
        assert time.monotonic() < deadline, "keys not checked again after Redis thawed"
        time.sleep(0.2)

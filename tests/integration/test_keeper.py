"""Several workers, no Redis: limits are exact across the workers of one gateway (the keeper)."""

from __future__ import annotations

import os
import signal
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from support.bodies import purchase_body
from support.gateway import Fleet, GatewayProcess, running_gateway
from support.ports import closed_port_url
from support.tokens import mint
from support.upstream import Reply

WORKERS = 2
GLOBAL_LIMIT = 10
PURCHASE = "/api/v1/tickets/purchase"
PURCHASE_LIMIT = 5  # rate_limit.ticket_purchase.max in defaults.yaml
RESTART_TIMEOUT_S = 15.0
POLL_S = 0.1


def keeper_pid(gateway: GatewayProcess) -> int | None:
    keeper = gateway.keeper()
    return None if keeper is None else int(keeper.pid)


def wait_for_keeper(gateway: GatewayProcess, excluding: int | None = None) -> int:
    deadline = time.monotonic() + RESTART_TIMEOUT_S
    while time.monotonic() < deadline:
        pid = keeper_pid(gateway)
        if pid is not None and pid != excluding:
            return pid
        time.sleep(POLL_S)
    raise AssertionError(f"no keeper:\n{gateway.output()[-3000:]}")


def statuses(gateway: GatewayProcess, count: int, target: str = "/api/v1/search/q") -> list[int]:
    # A new connection for each request: the kernel spreads them over both workers.
    return [gateway.get(target).status for _ in range(count)]


def test_a_limit_holds_exactly_across_two_workers(service_fleet: Fleet, tmp_path: Path) -> None:
    env = {"RATE_LIMIT_MAX": str(GLOBAL_LIMIT)}
    with running_gateway(
        tmp_path, service_fleet.urls(), env=env, extra_args=["--workers", str(WORKERS)]
    ) as gateway:
        answers = statuses(gateway, 3 * GLOBAL_LIMIT)

    assert answers.count(200) == GLOBAL_LIMIT, answers
    assert answers.count(429) == 2 * GLOBAL_LIMIT, answers


def test_the_purchase_limit_holds_across_two_workers(service_fleet: Fleet, tmp_path: Path) -> None:
    buyer = mint(sub="keeper-buyer")
    with running_gateway(
        tmp_path, service_fleet.urls(), extra_args=["--workers", str(WORKERS)]
    ) as gateway:
        answers = [
            gateway.request(
                "POST", PURCHASE, body=purchase_body(str(uuid.uuid4())), token=buyer
            ).status
            for _ in range(8)
        ]

    assert answers == [200] * PURCHASE_LIMIT + [429] * 3, answers


def test_a_killed_keeper_is_replaced_and_limits_are_shared_again(
    service_fleet: Fleet, tmp_path: Path
) -> None:
    env = {"RATE_LIMIT_MAX": str(GLOBAL_LIMIT), "TRUSTED_PROXIES": "127.0.0.1/32"}
    with running_gateway(
        tmp_path, service_fleet.urls(), env=env, extra_args=["--workers", str(WORKERS)]
    ) as gateway:
        first = wait_for_keeper(gateway)
        os.kill(first, signal.SIGKILL)
        # Meanwhile every worker decides alone: the gateway keeps answering.
        assert all(status in (200, 429) for status in statuses(gateway, 4))
        second = wait_for_keeper(gateway, excluding=first)
        # Each worker's store finds the new keeper at its next probe (every second).
        time.sleep(2.5)
        # The buckets the workers filled alone expire with the window: a fresh client address
        # is what the shared limit counts from zero.
        answers = [
            gateway.get("/api/v1/search/q", headers={"x-forwarded-for": "198.51.100.7"}).status
            for _ in range(3 * GLOBAL_LIMIT)
        ]
        assert gateway.process.poll() is None

    assert second != first
    assert "the keeper (pid" in gateway.output()
    assert answers.count(200) == GLOBAL_LIMIT, answers


def test_breakers_count_every_worker_s_failures_and_open_together(
    service_fleet: Fleet, tmp_path: Path
) -> None:
    """Ten refused connections open the breaker, however the kernel spread them over the two
    workers (neither saw ten itself); then every worker fails fast."""
    document = {
        "services": {
            "ticket": {"retry": {"attempts": 1}, "circuit_breaker": {"volume_threshold": 10}}
        }
    }
    urls = service_fleet.urls() | {"ticket": closed_port_url()}
    token = mint(sub="keeper-breaker")
    with running_gateway(
        tmp_path, urls, document, extra_args=["--workers", str(WORKERS)]
    ) as gateway:
        refused = [gateway.get("/api/v1/tickets/1", token=token).status for _ in range(10)]
        time.sleep(0.5)  # a few sync periods
        after = [gateway.get("/api/v1/tickets/1", token=token).status for _ in range(8)]

    assert refused.count(502) >= 9, refused  # the tenth may already meet an open circuit
    assert after == [503] * 8, after


def test_idempotency_keys_are_shared_by_the_workers(service_fleet: Fleet, tmp_path: Path) -> None:
    """Duplicates of one keyed POST over fresh connections (spread over both workers): the
    service is asked once; a later repeat is the kept answer."""
    orders = service_fleet["order"]
    orders.reset()
    orders.respond(Reply(status=201, body=b'{"order": 1}', delay_s=0.5))
    token = mint(sub="keeper-idempotent")
    headers = [("Content-Type", "application/json"), ("Idempotency-Key", "keeper-order-1")]

    def order() -> int:
        return gateway.request(
            "POST", "/api/v1/orders", headers=headers, body=b'{"seats": 2}', token=token
        ).status

    with running_gateway(
        tmp_path, service_fleet.urls(), extra_args=["--workers", str(WORKERS)]
    ) as gateway:
        with ThreadPoolExecutor(8) as pool:
            concurrent = list(pool.map(lambda _: order(), range(8)))
        later = gateway.request(
            "POST", "/api/v1/orders", headers=headers, body=b'{"seats": 2}', token=token
        )

    assert len(orders.requests) == 1
    assert sorted(set(concurrent)) <= [201, 409] and concurrent.count(201) >= 1, concurrent
    assert later.status == 201 and later.header("idempotency-replayed") == "true"

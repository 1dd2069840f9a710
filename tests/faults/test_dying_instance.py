"""An instance that dies under load: its requests in flight fail over, however many there are,
and the retry budget still caps the retries of a service that keeps failing.

The retry budget allows ``budget_min_concurrent`` (3) retries at once, or 20 % of the requests
in flight. An instance that dies with eight GETs in flight breaks eight connections at once: one
event, and the GETs were load the service had already accepted. Counted one by one they would
exhaust the budget and five of them would get 502 while another instance stands idle.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.gateway import Fleet, GatewayProcess, running_gateway
from support.tokens import mint
from support.upstream import Behaviour, RecordingUpstream, Reply

TOKEN = mint()
# Long enough that every request sent to the doomed instance is still in flight when it dies.
HELD_S = 30.0
WAIT_S = 10.0


@pytest.fixture
def instances() -> Iterator[list[RecordingUpstream]]:
    upstreams = [RecordingUpstream(f"ticket-{n}").start() for n in range(2)]
    yield upstreams
    for upstream in upstreams:
        upstream.stop()


def gateway_for(tmp_path: Path, fleet: Fleet, urls: list[str], ticket: dict[str, Any]) -> Any:
    document = {"services": {"ticket": ticket}}
    return running_gateway(tmp_path, fleet.urls() | {"ticket": ",".join(urls)}, document)


def get(gateway: GatewayProcess) -> int:
    return int(gateway.get("/api/v1/tickets/1", token=TOKEN).status)


def test_every_get_in_flight_on_a_dying_instance_fails_over(
    service_fleet: Fleet, tmp_path: Path, instances: list[RecordingUpstream]
) -> None:
    doomed, survivor = instances
    doomed.respond(Reply(delay_s=HELD_S, body=b"{}"))
    clients = 16  # round robin: eight of them on the doomed instance
    ticket = {"circuit_breaker": {"volume_threshold": 100_000}}

    with (
        gateway_for(tmp_path, service_fleet, [doomed.url, survivor.url], ticket) as gateway,
        concurrent.futures.ThreadPoolExecutor(clients) as pool,
    ):
        futures = [pool.submit(get, gateway) for _ in range(clients)]
        held = doomed.wait_for_requests(clients // 2, timeout_s=WAIT_S)
        assert len(held) == clients // 2, "the doomed instance never held its share"
        doomed.stop()
        statuses = [f.result(timeout=WAIT_S) for f in futures]

    assert statuses == [200] * clients
    # Its own half, and the doomed half once each.
    assert len([r for r in survivor.requests if r.path == "/api/v1/tickets/1"]) == clients


def test_the_budget_caps_a_storm_of_broken_connections(
    service_fleet: Fleet, tmp_path: Path, instances: list[RecordingUpstream]
) -> None:
    # The only instance breaks every connection it gets: each request in flight when it first
    # broke gets one failover retry; every other retry needs a slot of the budget.
    broken = instances[0]
    broken.respond(Reply(delay_s=0.3, behaviour=Behaviour.CLOSE_WITHOUT_RESPONSE))
    clients, attempts = 30, 4
    ticket = {
        "retry": {"attempts": attempts, "base_ms": 1, "budget_pct": 20, "budget_min_concurrent": 3},
        "circuit_breaker": {"volume_threshold": 100_000},
    }
    with (
        gateway_for(tmp_path, service_fleet, [broken.url], ticket) as gateway,
        concurrent.futures.ThreadPoolExecutor(clients) as pool,
    ):
        statuses = list(pool.map(lambda _: get(gateway), range(clients)))

    assert statuses == [502] * clients
    retry_cap = max(3, clients * 20 // 100) * (attempts - 1)
    sent = [r for r in broken.requests if r.path == "/api/v1/tickets/1"]
    assert clients < len(sent) <= clients * 2 + retry_cap
    assert len(sent) < clients * attempts


def test_a_dying_instance_does_not_open_the_circuit_of_the_whole_service(
    service_fleet: Fleet, tmp_path: Path, instances: list[RecordingUpstream]
) -> None:
    # Half of twelve POSTs die with the instance (a POST that may have been acted on is never
    # sent again): counted one by one, that is the breaker's 50 % of 10 calls, and every client
    # of the service would get 503 for 30 s while the other instance stands idle.
    doomed, survivor = instances
    doomed.respond(Reply(delay_s=HELD_S, body=b"{}"))
    clients = 12

    def post() -> int:
        response = gateway.request("POST", "/api/v1/tickets/orders", body=b"{}", token=TOKEN)
        return int(response.status)

    with (
        gateway_for(tmp_path, service_fleet, [doomed.url, survivor.url], {}) as gateway,
        concurrent.futures.ThreadPoolExecutor(clients) as pool,
    ):
        futures = [pool.submit(post) for _ in range(clients)]
        held = doomed.wait_for_requests(clients // 2, timeout_s=WAIT_S)
        assert len(held) == clients // 2, "the doomed instance never held its share"
        doomed.stop()
        statuses = [f.result(timeout=WAIT_S) for f in futures]
        after = [post() for _ in range(5)] + [get(gateway) for _ in range(5)]

    assert sorted(statuses) == [200] * 6 + [502] * 6
    assert after == [200] * 10

"""The gateway's own service clients against real HTTP servers: what they send, what they make of
the answers, and that they share the service's breaker and retries."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

import pytest
import uvloop
from support.ports import closed_port_url
from support.resilience import service_config, upstream_service
from support.upstream import RecordingUpstream, Reply

from api_gateway.config.settings import BreakerConfig, Instance
from api_gateway.errors import BadGateway
from api_gateway.http.client import PoolSettings, UpstreamPool
from api_gateway.upstream.clients import AuthServiceClient, VenueServiceClient
from api_gateway.upstream.service import UpstreamService

T = TypeVar("T")
R = TypeVar("R")


@pytest.fixture
def auth() -> Iterator[RecordingUpstream]:
    with RecordingUpstream("auth") as upstream:
        yield upstream


def instance(url: str) -> Instance:
    host, _, port = url.removeprefix("http://").partition(":")
    return Instance(host, int(port))


def service(*urls: str, volume: int = 10) -> UpstreamService:
    config = service_config(instances=1, circuit_breaker=BreakerConfig(50, 30_000, volume))
    return upstream_service(dataclasses.replace(config, instances=tuple(map(instance, urls))))


def with_client(
    make: Callable[..., T], svc: UpstreamService, use: Callable[[T], Awaitable[R]]
) -> R:
    async def scenario() -> R:
        loop = asyncio.get_running_loop()
        pool = UpstreamPool(loop, PoolSettings())
        try:
            return await use(make(svc, pool, lambda: loop.time() * 1000))
        finally:
            pool.close()

    return uvloop.run(scenario())


def test_get_user_by_id_asks_the_auth_service_as_the_gateway(auth: RecordingUpstream) -> None:
    auth.respond(Reply(body=json.dumps({"id": "u/1", "email": "fan@example.com"}).encode()))

    user = with_client(AuthServiceClient, service(auth.url), lambda c: c.get_user_by_id("u/1"))

    assert user == {"id": "u/1", "email": "fan@example.com"}
    sent = auth.only_request()
    assert sent.target == "/api/v1/users/u%2F1"
    assert sent.header("x-gateway-internal") == "true"
    assert 0 < int(sent.header("x-request-deadline-ms") or 0) <= 5_000


def test_an_unknown_user_is_none_and_a_failing_service_is_502(auth: RecordingUpstream) -> None:
    auth.respond(Reply(status=404, body=b"{}"), path="/api/v1/users/ghost")
    auth.respond(Reply(status=500, body=b"{}"), path="/api/v1/users/broken")
    auth.respond(Reply(body=b"not json"), path="/api/v1/users/garbled")

    async def lookups(client: AuthServiceClient) -> list[object]:
        outcomes: list[object] = [await client.get_user_by_id("ghost")]
        for user in ("broken", "garbled"):
            try:
                outcomes.append(await client.get_user_by_id(user))
            except BadGateway as error:
                outcomes.append(error.status)
        return outcomes

    assert with_client(AuthServiceClient, service(auth.url), lookups) == [None, 502, 502]


def test_validate_token_passes_the_token_to_the_auth_service(auth: RecordingUpstream) -> None:
    auth.respond(Reply(body=b'{"valid": true, "sub": "u-1"}'))

    verdict = with_client(AuthServiceClient, service(auth.url), lambda c: c.validate_token("t.k.n"))

    assert verdict == {"valid": True, "sub": "u-1"}
    assert auth.only_request().header("authorization") == "Bearer t.k.n"


def test_a_refused_instance_is_retried_on_another(auth: RecordingUpstream) -> None:
    svc = service(closed_port_url(), auth.url)

    health = with_client(AuthServiceClient, svc, lambda c: c.health_check())

    assert health is None
    assert auth.only_request().path == "/health"


def test_health_check_reports_a_down_service_and_the_breaker_counts_it() -> None:
    svc = service(closed_port_url(), volume=2)

    async def probe_three_times(client: VenueServiceClient) -> list[str | None]:
        return [await client.health_check() for _ in range(3)]

    first, second, third = with_client(VenueServiceClient, svc, probe_three_times)
    assert first == f"{svc.label} refused the connection"  # in words, no address
    assert second is not None
    assert third is not None and "failing" in third  # the circuit opened: no connection tried
    assert svc.breaker.state.value == "OPEN"


def test_venue_access_is_a_yes_or_no(auth: RecordingUpstream) -> None:
    auth.respond(Reply(status=403, body=b"{}"), path="/api/v1/venues/v-1/access/u-2")

    async def both(client: VenueServiceClient) -> tuple[bool, bool]:
        return await client.check_access("v-1", "u-1"), await client.check_access("v-1", "u-2")

    assert with_client(VenueServiceClient, service(auth.url), both) == (True, False)

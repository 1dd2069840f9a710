"""A paused event loop is not a slow peer, anywhere the gateway waits with a bound.

Each component is driven in process against a real peer (Redis, an HTTP service on loopback),
and the loop is blocked with ``time.sleep`` at the moment a heavy request would block it: after
the request went out, until the peer's answer is in the socket and longer than the bound. The
answer came in time; nothing may count it as a failure. Without the pause-forgiving deadlines:
a cache hit becomes a miss (and "storage unavailable" is logged), the registry is reported
unreachable, a healthy instance is marked down, an aggregate source or venue lookup times out.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Iterator

import pytest
import uvloop
from support.raw_upstream import Drip, RawUpstream
from support.redis import RedisServer
from support.resilience import service_config, upstream_service
from support.stalls import stall_trigger, until

from api_gateway.cache import entry as wire
from api_gateway.cache.entry import Entry
from api_gateway.cache.front import Cache
from api_gateway.cache.redis import RedisCacheStorage
from api_gateway.config.settings import HealthCheckConfig, Instance
from api_gateway.http.client import PoolSettings, UpstreamPool
from api_gateway.stores.redis import RedisStore
from api_gateway.types import Request
from api_gateway.upstream.clients import VenueServiceClient
from api_gateway.upstream.deadline import Deadline, TimeoutController
from api_gateway.upstream.discovery import REGISTRY_TIMEOUT_S, Discovery
from api_gateway.upstream.health import HealthChecker, probe_head
from api_gateway.upstream.instances import ServiceInstances
from api_gateway.upstream.registry import Registry

REDIS_TIMEOUT_S = 0.05
BOUND_MS = 150  # the bound of each upstream wait under test
STALL_S = 0.45  # three bounds: what a few heavy requests in a row hold the loop for
ANSWER_DELAY_S = 0.05  # the service answers this long after the request: during the stall
WRITTEN_WAIT_S = 5.0
REPLY = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
BIG = 70_000  # more than the pool buffers: the body streams


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    yield server
    server.stop()


@pytest.fixture
def service() -> Iterator[RawUpstream]:
    upstream = RawUpstream()
    yield upstream
    upstream.stop()


def stall(
    upstream: RawUpstream | None = None, path: str = "", answers: int = 1, extra_s: float = 0.0
) -> None:
    """Block the loop until the peer has written ``answers`` answers to ``path`` (the last one
    is then in our socket, unread) and for longer than any bound here after that."""
    if upstream is not None:
        deadline = time.monotonic() + WRITTEN_WAIT_S
        while sum(e.written for e in upstream.requests_for(path)) < answers:
            assert time.monotonic() < deadline, "the service never answered"
            time.sleep(0.005)
    time.sleep(STALL_S + extra_s)


def delayed(path: str, upstream: RawUpstream, *after: bytes) -> None:
    """The service answers ``path`` after ``ANSWER_DELAY_S``: well within every bound."""
    upstream.script(path, Drip(b"", 1, ANSWER_DELAY_S), *after)


# The response cache over Redis (cache.timeout_ms = 100 by default).


@pytest.mark.parametrize("ticks", [1, 2])  # stall before the command is written, after it
def test_a_cache_hit_during_a_stall_stays_a_hit(redis_server: RedisServer, ticks: int) -> None:
    async def story() -> None:
        redis = RedisStore(redis_server.url, REDIS_TIMEOUT_S)
        store = Cache(RedisCacheStorage(redis, 60_000), 0.1)
        entry = Entry(200, [(b"content-type", b"application/json")], b"{}", time.time() * 1000, 0)
        await redis.command("SET", f"stall-{ticks}", wire.encode(entry))
        request = Request("GET", b"/api/v1/events", [], b"", "127.0.0.1")
        found = asyncio.ensure_future(store.lookup(f"stall-{ticks}", request))
        for _ in range(ticks):
            await asyncio.sleep(0)
        stall()
        assert await found == entry
        assert not store.failing and store.failures == 0
        await redis.close()

    uvloop.run(story())


# The service registry read (0.5 s).


@pytest.mark.parametrize("ticks", [2, 3])  # the reads start, their commands are written
def test_a_registry_read_during_a_stall_is_not_an_outage(
    redis_server: RedisServer, ticks: int
) -> None:
    registered = Instance("10.9.0.1", 3004)

    async def story() -> None:
        registry = Registry(RedisStore(redis_server.url, REDIS_TIMEOUT_S), "stall:")
        await registry.register("ticket", "http://10.9.0.1:3004", 60)
        static = (Instance("10.0.0.1", 3004),)
        services = {"ticket": ServiceInstances("ticket", static)}
        discovery = Discovery(services, {"ticket": static}, registry, 30_000, time.monotonic)
        refresh = asyncio.ensure_future(discovery.refresh())
        for _ in range(ticks):
            await asyncio.sleep(0)
        stall(extra_s=REGISTRY_TIMEOUT_S)
        await refresh
        assert discovery.outage is None
        assert discovery.instances("ticket") == [registered]
        await discovery.close()

    uvloop.run(story())


# Active health checks.


def test_a_health_check_answered_during_a_stall_passes(service: RawUpstream) -> None:
    delayed("/health", service, REPLY)
    instance = Instance("127.0.0.1", service.port)
    endpoints = ServiceInstances("ticket", (instance,))
    config = HealthCheckConfig(True, "/health", 120_000, BOUND_MS, 1, 1)

    async def story() -> dict[str, bool]:
        pool = UpstreamPool(asyncio.get_running_loop(), PoolSettings())
        checker = HealthChecker({"ticket": endpoints}, {"ticket": config}, pool)
        assert await checker.check("ticket") == {instance.authority: True}  # a warm connection
        service.reset()
        delayed("/health", service, REPLY)
        trigger = await stall_trigger(lambda: stall(service, "/health"))
        verdicts = asyncio.ensure_future(checker.check("ticket"))
        await until(lambda: bool(service.requests_for("/health")) or verdicts.done())
        trigger.send(b"x")
        try:
            return await verdicts
        finally:
            pool.close()
            trigger.close()

    assert uvloop.run(story()) == {instance.authority: True}
    assert endpoints.endpoints[0].healthy


# One step of a request's deadline (an aggregate's sources and the venue lookups they make).


def test_a_step_answered_during_a_stall_is_not_past_the_deadline(service: RawUpstream) -> None:
    """A step of two calls (a venue check, then the source): the stall robbed the step of the
    loop's time during the first, so the step gets a bound of free time for the second."""
    delayed("/step", service, REPLY)

    async def story() -> int:
        loop = asyncio.get_running_loop()
        pool = UpstreamPool(loop, PoolSettings())
        address = ("127.0.0.1", service.port)
        head = probe_head("/step", f"127.0.0.1:{service.port}")

        async def two_calls() -> int:
            await pool.request(address, head, b"", False, BOUND_MS / 1000, "GET")
            return (await pool.request(address, head, b"", False, BOUND_MS / 1000, "GET")).status

        trigger = await stall_trigger(lambda: stall(service, "/step"))
        controller = TimeoutController(Deadline(BOUND_MS, lambda: loop.time() * 1000))
        answer = asyncio.ensure_future(controller.run(two_calls()))
        await until(lambda: bool(service.requests_for("/step")) or answer.done())
        trigger.send(b"x")
        try:
            return await answer
        finally:
            pool.close()
            trigger.close()

    assert uvloop.run(story()) == 200


# The gateway's own service clients: venue lookups fail closed (503) when they fail.


def test_a_venue_document_read_during_a_stall_is_not_a_timeout(service: RawUpstream) -> None:
    path = "/api/v1/venues/v-1"
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
    document = b'{"tenantId": "t-1"}' + b" " * BIG
    # The head and most of the body at once, the rest a moment later: the client is reading it.
    service.script(path, head % len(document) + document[:-10], Drip(b"", 1, ANSWER_DELAY_S))
    service.scripts[path] = dataclasses.replace(
        service.scripts[path], pieces=(*service.scripts[path].pieces, document[-10:])
    )
    config = service_config(instances=1)
    venue = upstream_service(
        dataclasses.replace(config, instances=(Instance("127.0.0.1", service.port),))
    )

    async def story() -> object:
        loop = asyncio.get_running_loop()
        pool = UpstreamPool(loop, PoolSettings())
        client = VenueServiceClient(venue, pool, lambda: loop.time() * 1000, BOUND_MS * 2)
        trigger = await stall_trigger(lambda: stall(service, path))
        lookup = asyncio.ensure_future(client.get_venue("v-1"))
        await until(lambda: any(c.stream is not None for c in pool.busy) or lookup.done())
        trigger.send(b"x")
        try:
            return await lookup
        finally:
            pool.close()
            trigger.close()

    assert uvloop.run(story()) == {"tenantId": "t-1"}


# Connecting to an instance (upstream.connect_timeout_ms).


def test_a_connection_made_during_a_stall_is_not_a_connect_timeout(service: RawUpstream) -> None:
    async def story() -> int:
        loop = asyncio.get_running_loop()
        pool = UpstreamPool(loop, PoolSettings(connect_timeout_s=BOUND_MS / 1000))
        address = ("127.0.0.1", service.port)
        head = probe_head("/", f"127.0.0.1:{service.port}")
        trigger = await stall_trigger(stall)
        answer = asyncio.ensure_future(pool.request(address, head, b"", False, 5.0, "GET"))
        await asyncio.sleep(0)  # the connection is being made
        trigger.send(b"x")
        try:
            return (await answer).status
        finally:
            pool.close()
            trigger.close()

    assert uvloop.run(story()) == 200

"""The ResponseCache policy driven without sockets: an in-memory cache in front of a terminal
handler that counts its calls and answers with bytes or with a stream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from api_gateway.cache import entry as wire
from api_gateway.cache.entry import Entry
from api_gateway.cache.front import Cache
from api_gateway.cache.storage import MemoryCacheStorage
from api_gateway.errors import BadGateway
from api_gateway.policies.cache import Flights, ResponseCache, RouteCache
from api_gateway.types import Body, Claims, Headers, Request, Response

PREFIX = "/api/v1/search"
MINUTE: Headers = [(b"cache-control", b"max-age=60")]


class Chunks:
    """A streamed body: these chunks, then optionally a failure (the upstream hung up)."""

    def __init__(self, chunks: list[bytes], fail: bool = False) -> None:
        self.chunks, self.fail, self.aborted = chunks, fail, False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            await asyncio.sleep(0)
            yield chunk
        if self.fail:
            raise BadGateway("the upstream closed the connection")

    def abort(self) -> None:
        self.aborted = True


class Service:
    def __init__(self, headers: Headers, body: Body | None = None, delay_s: float = 0.0) -> None:
        self.headers, self.body, self.delay_s, self.calls = headers, body, delay_s, 0

    async def __call__(self, request: Request) -> Response:
        self.calls += 1
        await asyncio.sleep(self.delay_s)
        body = self.body if self.body is not None else b"answer %d" % self.calls
        return Response(200, list(self.headers), body)


def policy(max_body: int = 1000) -> ResponseCache:
    storage = MemoryCacheStorage(100, 1 << 20, 86_400_000, lambda: 0.0)
    route = RouteCache(PREFIX, 0, False, max_body, 86_400_000)
    return ResponseCache(Cache(storage, 1.0), Flights(), route, lambda: 0.0)


def get(path: str = "/api/v1/search/q", headers: Headers | None = None) -> Request:
    request = Request("GET", path.encode(), headers or [], b"", "127.0.0.1")
    request.path = path
    return request


async def body_of(response: Response) -> bytes:
    if isinstance(response.body, bytes):
        return response.body
    return b"".join([chunk async for chunk in response.body])


def x_cache(response: Response) -> bytes | None:
    return dict(response.headers).get(b"x-cache")


def test_waiters_with_other_vary_values_go_upstream_themselves() -> None:
    async def scenario() -> None:
        cache = policy()
        service = Service([*MINUTE, (b"vary", b"accept-language")], delay_s=0.05)
        requests = [get(headers=[(b"accept-language", lang)]) for lang in (b"en", b"en", b"fr")]
        answers = await asyncio.gather(*(cache(r, service) for r in requests))
        assert [x_cache(a) for a in answers] == [b"MISS", b"HIT", b"MISS"]
        assert service.calls == 2

    asyncio.run(scenario())


def test_a_stream_over_the_cap_is_replayed_whole_and_not_stored() -> None:
    async def scenario() -> None:
        cache = policy(max_body=10)
        service = Service(MINUTE, Chunks([b"0123456", b"789abc", b"def"]))
        first = await cache(get(), service)
        assert await body_of(first) == b"0123456789abcdef"
        service.body = Chunks([b"again"])
        second = await cache(get(), service)
        assert await body_of(second) == b"again"
        assert [x_cache(first), x_cache(second)] == [b"MISS", b"MISS"]

    asyncio.run(scenario())


def test_a_stream_under_the_cap_is_stored() -> None:
    async def scenario() -> None:
        cache = policy()
        service = Service(MINUTE, Chunks([b"abc", b"def"]))
        first = await cache(get(), service)
        await asyncio.sleep(0)  # the background save
        second = await cache(get(), service)
        assert (first.body, second.body, x_cache(second)) == (b"abcdef", b"abcdef", b"HIT")
        assert service.calls == 1

    asyncio.run(scenario())


def test_a_stream_cut_short_is_an_error_and_not_stored() -> None:
    async def scenario() -> None:
        cache = policy()
        stream = Chunks([b"abc"], fail=True)
        with pytest.raises(BadGateway):
            await cache(get(), Service(MINUTE, stream))
        assert stream.aborted
        again = await cache(get(), Service(MINUTE))
        assert x_cache(again) == b"MISS"

    asyncio.run(scenario())


def test_waiters_are_answered_when_the_first_request_fails() -> None:
    async def scenario() -> None:
        cache = policy()
        failing = Service(MINUTE, Chunks([b"abc"], fail=True), delay_s=0.05)
        first = asyncio.ensure_future(cache(get(), failing))
        await asyncio.sleep(0.01)
        waiter = await cache(get(), Service(MINUTE))
        assert x_cache(waiter) == b"MISS" and waiter.body == b"answer 1"
        with pytest.raises(BadGateway):
            await first

    asyncio.run(scenario())


def on_venue(venue: bytes) -> Request:
    request = get()
    request.upstream_headers = [(b"x-venue-id", venue), (b"x-venue-tenant-id", b"tenant-" + venue)]
    return request


def as_user(user: str) -> Request:
    request = get()
    request.claims = Claims(user, "tenant-a", "customer", "", 0.0)
    request.upstream_block = request.claims.identity
    return request


def test_concurrent_misses_of_two_venues_never_share_one_answer() -> None:
    async def scenario() -> None:
        cache = policy()
        service = Service(MINUTE, delay_s=0.05)
        requests = [on_venue(v) for v in (b"venue-a", b"venue-a", b"venue-b")]
        answers = await asyncio.gather(*(cache(r, service) for r in requests))
        assert [x_cache(a) for a in answers] == [b"MISS", b"HIT", b"MISS"]
        assert answers[0].body == answers[1].body and service.calls == 2

    asyncio.run(scenario())


def test_waiters_varying_on_the_identity_the_gateway_sends_are_not_mixed() -> None:
    async def scenario() -> None:
        cache = policy()
        service = Service([(b"cache-control", b"s-maxage=60"), (b"vary", b"X-User-Id")], None, 0.05)
        requests = [as_user(u) for u in ("alice", "alice", "bob")]
        answers = await asyncio.gather(*(cache(r, service) for r in requests))
        assert [x_cache(a) for a in answers] == [b"MISS", b"HIT", b"MISS"]
        assert answers[0].body == answers[1].body and service.calls == 2

    asyncio.run(scenario())


def test_a_write_through_a_route_or_its_alias_makes_reads_through_both_stale() -> None:
    async def scenario() -> None:
        storage = MemoryCacheStorage(100, 1 << 20, 86_400_000, lambda: 0.0)
        store, flights = Cache(storage, 1.0), Flights()
        events = "/api/v1/events"
        route = ResponseCache(store, flights, RouteCache(events, 0, False, 1000, 86_400_000))
        alias_route = RouteCache("/api/v1/event", 0, False, 1000, 86_400_000, events)
        alias = ResponseCache(store, flights, alias_route)
        service = Service(MINUTE)

        def cached(cache: ResponseCache, path: str) -> asyncio.Future[Response]:
            return asyncio.ensure_future(cache(get(path), service))

        reads = [(route, "/api/v1/events/42"), (alias, "/api/v1/event/42")]
        for cache, path in reads * 2:
            await cached(cache, path)
            await asyncio.sleep(0)  # the background save
        writes = [(route, "/api/v1/events/42"), (alias, "/api/v1/event/42")]
        for writer, path in writes:
            put = Request("PUT", path.encode(), [], b"{}", "127.0.0.1")
            put.path = path
            await writer(put, service)
            after = [x_cache(await cached(cache, p)) for cache, p in reads]
            assert after == [b"MISS", b"MISS"]
            await asyncio.sleep(0)

    asyncio.run(scenario())


class Remote:
    """A storage that answers with a new bytes object every time, as Redis does."""

    immediate = False

    def __init__(self) -> None:
        self.memory = MemoryCacheStorage(100, 1 << 20, 86_400_000, lambda: 0.0)

    async def generation(self, resource: str) -> str:
        return await self.memory.generation(resource)

    async def invalidate(self, resource: str) -> None:
        await self.memory.invalidate(resource)

    async def get(self, key: str) -> bytes | None:
        found = await self.memory.get(key)
        return None if found is None else bytes(bytearray(found))

    async def put(self, key: str, value: bytes, ttl_ms: int) -> None:
        await self.memory.put(key, value, ttl_ms)


def test_a_hit_reuses_the_entry_decoded_from_the_same_stored_value() -> None:
    async def scenario() -> None:
        storage = MemoryCacheStorage(100, 1 << 20, 86_400_000, lambda: 0.0)
        cache = Cache(storage, 1.0)
        first = Entry(200, [(b"content-type", b"text/plain")], b"one", 0.0, 0)
        await storage.put("k", wire.encode(first), 60_000)
        found = await cache.lookup("k", get())
        assert found == first and await cache.lookup("k", get()) is found
        second = Entry(200, [(b"content-type", b"text/plain")], b"two", 0.0, 0)
        await storage.put("k", wire.encode(second), 60_000)  # the same key, a new value
        assert await cache.lookup("k", get()) == second
        await storage.put("k", b"foreign", 60_000)
        assert await cache.lookup("k", get()) is None

        remote = Remote()  # its values are new objects: nothing is kept for them
        cache = Cache(remote, 1.0)
        await remote.put("k", wire.encode(first), 60_000)
        assert await cache.lookup("k", get()) == first == await cache.lookup("k", get())
        assert len(cache.decoded) == 0

    asyncio.run(scenario())

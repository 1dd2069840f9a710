"""Response cache for GET and HEAD on the routes that enable it; writes invalidate.

    GET/HEAD ─▶ a body, a condition or a range? pass through
             ─▶ generation of the resource (storage down: pass through) ─▶ key ─▶ hit? answer
             ─▶ HEAD: pass through │ same key in flight here? wait for it (single flight)
             ─▶ upstream ─▶ storable (rules.freshness) and the body complete and under the cap?
                ─▶ store in the background, share with the waiters
    other    ─▶ upstream ─▶ 2xx (not OPTIONS)? new generation for the resource and collection

Every answer to GET or HEAD that passes here says ``X-Cache: HIT`` (with ``Age``) or ``MISS``;
a request that waited for an identical one in flight is answered from its result, a HIT.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from api_gateway.cache import rules, view
from api_gateway.cache.entry import Entry
from api_gateway.cache.front import Cache
from api_gateway.cache.replay import Replay
from api_gateway.types import Handler, Request, Response

X_CACHE = b"x-cache"
HIT, MISS = (X_CACHE, b"HIT"), (X_CACHE, b"MISS")
# Headers of the upstream's answer that a hit does not repeat: Age is the cache's to say.
NOT_STORED = frozenset({b"age"})


def wall_clock_ms() -> float:
    return time.time() * 1000


@dataclass(frozen=True, slots=True)
class Shared:
    """What a fetch leaves its waiters: the answer and the request header values it fits."""

    entry: Entry
    names: tuple[bytes, ...]
    values: tuple[bytes | None, ...]


class Flights:
    """Fetches in progress in this process, by key: the waiters' futures."""

    def __init__(self) -> None:
        self.running: dict[str, asyncio.Future[Shared | None]] = {}


@dataclass(frozen=True, slots=True)
class RouteCache:
    """A route's cache settings, resolved against the top-level ones."""

    prefix: str
    ttl_ms: int
    per_user: bool
    max_body_bytes: int
    max_ttl_ms: int
    # For an alias route: the prefix of the route it aliases, whose resources (generations) it
    # shares, so that a write through either prefix invalidates what was read through both.
    collection: str | None = None


class ResponseCache:
    def __init__(
        self,
        store: Cache,
        flights: Flights,
        route: RouteCache,
        clock_ms: Callable[[], float] = wall_clock_ms,
    ) -> None:
        self.store, self.flights, self.route, self.clock_ms = store, flights, route, clock_ms
        # Read by the metrics exporter.
        self.hits = self.misses = self.stores = 0

    async def __call__(self, request: Request, call_next: Handler) -> Response:
        if request.method not in rules.READS:
            return await self._write(request, call_next)
        if rules.bypasses(request):
            return self._marked(request, await call_next(request))
        route = self.route
        resource = rules.resource(request.path, route.prefix, route.collection)
        generation = await self.store.generation(resource)
        if generation is None:
            return self._marked(request, await call_next(request))
        key = rules.entry_key(request, resource, generation, route.per_user)
        entry = await self.store.lookup(key, request)
        if entry is not None:
            return self._hit(request, entry)
        if request.method == "HEAD":
            return self._marked(request, await call_next(request))
        flight = self.flights.running.get(key)
        if flight is None:
            return await self._fetch(key, request, call_next)
        shared = await asyncio.shield(flight)
        if shared is not None and view.vary_values(request, shared.names) == shared.values:
            return self._hit(request, shared.entry)
        return self._marked(request, await call_next(request))

    async def _write(self, request: Request, call_next: Handler) -> Response:
        response = await call_next(request)
        if 200 <= response.status < 300 and request.method != "OPTIONS":
            route = self.route
            await self.store.invalidate(
                rules.invalidated(request.path, route.prefix, route.collection)
            )
        return response

    def _hit(self, request: Request, entry: Entry) -> Response:
        self.hits += 1
        request.cache = "HIT"
        age = b"%d" % entry.age_at(self.clock_ms())
        return Response(entry.status, [*entry.headers, HIT, (b"age", age)], entry.body)

    async def _fetch(self, key: str, request: Request, call_next: Handler) -> Response:
        """Go upstream for everyone asking for ``key`` meanwhile; store what may be stored."""
        flight: asyncio.Future[Shared | None] = asyncio.get_running_loop().create_future()
        self.flights.running[key] = flight
        shared = None
        try:
            response = await call_next(request)
            shared = await self._keep(key, request, response)
            return self._marked(request, response)
        finally:
            del self.flights.running[key]
            flight.set_result(shared)

    async def _keep(self, key: str, request: Request, response: Response) -> Shared | None:
        route = self.route
        shared_only = rules.carries_credentials(request) and not route.per_user
        fresh = rules.freshness(
            response.status, response.headers, route.ttl_ms, shared_only, route.max_ttl_ms
        )
        names = rules.vary_names(response.headers)
        if fresh is None or names is None:
            return None
        body = await collect(response, route.max_body_bytes)
        if body is None:
            return None
        headers = [header for header in response.headers if header[0] not in NOT_STORED]
        entry = Entry(response.status, headers, body, self.clock_ms(), fresh.age_s)
        values = view.vary_values(request, names)
        self.store.save(key, entry, names, values, fresh.ttl_ms)
        self.stores += 1
        return Shared(entry, names, values)

    def _marked(self, request: Request, response: Response) -> Response:
        self.misses += 1
        request.cache = "MISS"
        response.headers.append(MISS)
        return response


async def collect(response: Response, limit: int) -> bytes | None:
    """The whole body when it is at most ``limit`` bytes, also set as the response's body.

    A longer one is None and streams on to the client unstored (what was read is replayed
    first). A body the upstream cut short raises its error: the client gets a 502 or 504
    instead of a truncated answer, and nothing is stored.
    """
    body = response.body
    if isinstance(body, bytes):
        return body if len(body) <= limit else None
    if response.length is not None and int(response.length) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    stream = aiter(body)
    try:
        async for chunk in stream:
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                response.body = Replay(chunks, stream, body)
                return None
    except BaseException:
        body.abort()
        raise
    whole = b"".join(chunks)
    response.body, response.length = whole, None
    return whole

"""The Idempotency policy driven without sockets: the in-memory store in front of a terminal
handler that counts its calls."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from api_gateway.errors import (
    CircuitOpen,
    IdempotencyAnswerNotKept,
    IdempotencyConflict,
    IdempotencyKeyRequired,
    IdempotencyKeyReused,
    InvalidIdempotencyKey,
    ServiceUnavailable,
    UpstreamTimeout,
)
from api_gateway.policies.idempotency import LOCK_MARGIN_MS, Idempotency
from api_gateway.stores import StoreUnavailable
from api_gateway.stores.idempotency import IdempotencyStore, MemoryIdempotencyStore
from api_gateway.types import Body, Claims, Headers, Request, Response

ANSWER: Headers = [
    (b"content-type", b"application/json"),
    (b"date", b"Sun, 06 Dec 2026 22:00:00 GMT"),
    (b"x-request-id", b"first"),
    (b"set-cookie", b"a=b"),
]


class Service:
    """Answers 201 after ``delay_s``, or raises ``error``."""

    def __init__(self, delay_s: float = 0.0, error: Exception | None = None) -> None:
        self.delay_s, self.error, self.calls = delay_s, error, 0
        self.bodies: list[Body] = []
        self.deadlines: list[int] = []
        self.done = 0

    async def __call__(self, request: Request) -> Response:
        self.calls += 1
        self.bodies.append(request.body)
        self.deadlines.append(request.deadline_ms)
        await asyncio.sleep(self.delay_s)
        self.done += 1
        if self.error is not None:
            raise self.error
        return Response(201, list(ANSWER), b'{"order": %d}' % self.calls)


class DownStore:
    async def claim(self, key: str, pending: bytes, ttl_ms: int) -> bytes | None:
        raise StoreUnavailable("redis is down")

    async def complete(self, key: str, pending: bytes, value: bytes, ttl_ms: int) -> bool:
        raise StoreUnavailable("redis is down")

    async def release(self, key: str, pending: bytes) -> None:
        raise StoreUnavailable("redis is down")


def policy(
    timeout_ms: int = 1000,
    required: bool = False,
    max_answer: int = 1000,
    fail_closed: bool = False,
    store: IdempotencyStore | None = None,
) -> Idempotency:
    store = store or MemoryIdempotencyStore(100, 1 << 20, lambda: 0.0)
    return Idempotency(store, required, timeout_ms, 60_000, 86_400_000, max_answer, fail_closed)


def post(key: str | None = "key-1", body: Body = b'{"seats": 2}', method: str = "POST") -> Request:
    headers: Headers = [] if key is None else [(b"idempotency-key", key.encode())]
    request = Request(method, b"/api/v1/orders", headers, body, "10.0.0.1")
    request.path = "/api/v1/orders"
    request.claims = Claims("user-1", "tenant-1", "customer", "", 0.0)
    return request


def run(idem: Idempotency, request: Request, handler: Service) -> Response:
    """One call of the policy on a fresh loop (a 400 raises from the call itself)."""

    async def call() -> Response:
        return await idem(request, handler)

    return asyncio.run(call())


def test_a_repeat_gets_the_kept_answer_without_the_service() -> None:
    async def story() -> tuple[Response, Response]:
        idem, service = policy(), Service()
        first = await idem(post(), service)
        second = await idem(post(), service)
        assert service.calls == 1 and (idem.stored, idem.replayed) == (1, 1)
        return first, second

    first, second = asyncio.run(story())
    assert (first.status, first.body) == (second.status, second.body) == (201, b'{"order": 1}')
    assert (b"idempotency-replayed", b"true") not in first.headers
    assert second.headers == [
        (b"content-type", b"application/json"),
        (b"set-cookie", b"a=b"),
        (b"idempotency-replayed", b"true"),
    ]


def test_the_first_request_gets_the_lock_deadline() -> None:
    service = Service()
    run(policy(timeout_ms=1000), post(), service)
    assert service.deadlines == [60_000 - LOCK_MARGIN_MS]


def test_in_flight_is_409_and_another_body_422() -> None:
    async def story() -> None:
        idem, service = policy(), Service(delay_s=0.05)
        first = asyncio.ensure_future(idem(post(), service))
        await asyncio.sleep(0)
        with pytest.raises(IdempotencyConflict) as conflict:
            await idem(post(), service)
        assert conflict.value.headers == [(b"retry-after", b"1")]
        with pytest.raises(IdempotencyKeyReused):
            await idem(post(body=b"{}"), service)
        assert (await first).status == 201
        with pytest.raises(IdempotencyKeyReused):
            await idem(post(body=b"{}"), service)
        assert service.calls == 1 and (idem.conflicts, idem.mismatches) == (1, 2)

    asyncio.run(story())


def test_a_timeout_answers_504_and_keeps_the_late_answer() -> None:
    async def story() -> None:
        idem, service = policy(timeout_ms=20), Service(delay_s=0.1)
        with pytest.raises(UpstreamTimeout):
            await idem(post(), service)
        with pytest.raises(IdempotencyConflict):
            await idem(post(), service)
        for _ in range(50):  # bounded: the service answers after 0.1 s
            if not idem.running:
                break
            await asyncio.sleep(0.01)
        replay = await idem(post(), service)
        assert (replay.status, replay.body, service.calls) == (201, b'{"order": 1}', 1)

    asyncio.run(story())


def test_a_client_gone_does_not_stop_the_first_request() -> None:
    async def story() -> None:
        idem, service = policy(), Service(delay_s=0.05)
        waiting = asyncio.ensure_future(idem(post(), service))
        await asyncio.sleep(0.01)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        for _ in range(50):
            if not idem.running:
                break
            await asyncio.sleep(0.01)
        assert service.done == 1
        replay = await idem(post(), service)
        assert replay.status == 201 and service.calls == 1

    asyncio.run(story())


@pytest.mark.parametrize(
    "error",
    [CircuitOpen("ticket-service is failing", 5), UpstreamTimeout("slow"), ServiceUnavailable()],
)
def test_a_gateway_error_releases_the_key(error: Exception) -> None:
    async def story() -> None:
        idem, failing = policy(), Service(error=error)
        with pytest.raises(type(error)):
            await idem(post(), failing)
        service = Service()
        assert (await idem(post(), service)).status == 201
        assert service.calls == 1 and idem.released == 1

    asyncio.run(story())


def test_an_answer_too_large_is_given_but_not_kept() -> None:
    async def story() -> None:
        idem, service = policy(max_answer=5), Service()
        assert (await idem(post(), service)).body == b'{"order": 1}'
        with pytest.raises(IdempotencyAnswerNotKept):
            await idem(post(), service)
        assert service.calls == 1

    asyncio.run(story())


class Stream:
    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk

    def abort(self) -> None:
        raise AssertionError("a request body is read whole, never aborted")


def test_a_streamed_body_is_read_whole_and_forwarded_as_read() -> None:
    service = Service()
    request = post(body=Stream([b'{"seats"', b": 2}"]))
    run(policy(), request, service)
    assert service.bodies == [b'{"seats": 2}']
    assert request.content_length == 12


def test_keys_are_checked_only_on_post_and_patch() -> None:
    service = Service()
    run(policy(required=True), post("bad key!", method="PUT"), service)
    assert service.calls == 1
    with pytest.raises(InvalidIdempotencyKey):
        run(policy(), post("bad key!", method="PATCH"), service)


def test_required_without_a_key_is_400() -> None:
    with pytest.raises(IdempotencyKeyRequired):
        run(policy(required=True), post(None), Service())


def test_two_key_lines_are_400() -> None:
    request = post()
    request.headers.append((b"idempotency-key", b"key-2"))
    with pytest.raises(InvalidIdempotencyKey):
        run(policy(), request, Service())


def test_store_down_fails_closed_or_forwards_unchecked() -> None:
    with pytest.raises(ServiceUnavailable) as refused:
        run(policy(fail_closed=True, store=DownStore()), post(), Service())
    assert refused.value.headers == [(b"retry-after", b"1")]
    service, idem = Service(), policy(store=DownStore())
    run(idem, post(), service)
    run(idem, post(), service)
    assert service.calls == 2 and idem.unchecked == 2


class SlowStore:
    """The in-memory store, each claim answered a moment later (as over a network). It wraps
    the store rather than subclass it: the compiled build's classes take no interpreted
    subclasses (COMPILED.md)."""

    def __init__(self, max_entries: int, max_bytes: int, clock_ms: Callable[[], float]) -> None:
        self.inner = MemoryIdempotencyStore(max_entries, max_bytes, clock_ms)

    @property
    def entries(self) -> object:
        return self.inner.entries

    async def claim(self, key: str, pending: bytes, ttl_ms: int) -> bytes | None:
        found = await self.inner.claim(key, pending, ttl_ms)
        await asyncio.sleep(0.05)
        return found

    async def complete(self, key: str, pending: bytes, value: bytes, ttl_ms: int) -> bool:
        return await self.inner.complete(key, pending, value, ttl_ms)

    async def release(self, key: str, pending: bytes) -> None:
        await self.inner.release(key, pending)


def test_a_client_gone_during_the_claim_leaves_the_key_free() -> None:
    async def story() -> None:
        store = SlowStore(100, 1 << 20, lambda: 0.0)
        idem, service = policy(store=store), Service()
        waiting = asyncio.ensure_future(idem(post(), service))
        await asyncio.sleep(0.01)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        for _ in range(50):  # bounded: the release runs in the background
            if not idem.running:
                break
            await asyncio.sleep(0.01)
        assert service.calls == 0 and not store.entries
        assert (await idem(post(), service)).status == 201

    asyncio.run(story())

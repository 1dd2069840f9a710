"""Unit tests for rate limiting: GCRA arithmetic, the memory store with an injected clock, and
the RateLimit policy driven without sockets."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api_gateway.config.settings import LimitConfig
from api_gateway.errors import RateLimited
from api_gateway.limiter import Decision, Rate, blocked, gcra
from api_gateway.policies.ratelimit import RateLimit, by_client_ip, by_user_or_ip
from api_gateway.stores import StoreUnavailable
from api_gateway.stores.memory import DRAIN_PER_HIT, TURN_EVERY, MemoryStore
from api_gateway.types import Claims, Request, Response

T = TypeVar("T")

GLOBAL = Rate(100, 60_000, 0)
PURCHASE = Rate(5, 60_000, 300_000)


def run(awaitable: Awaitable[T]) -> T:
    async def wrapper() -> T:
        return await awaitable

    return asyncio.run(wrapper())


class Clock:
    def __init__(self, now_ms: float = 1_000_000.0) -> None:
        self.now_ms = now_ms

    def __call__(self) -> float:
        return self.now_ms


def burst(rate: Rate, now_ms: float, attempts: int) -> list[Decision]:
    tat: float | None = None
    decisions = []
    for _ in range(attempts):
        decision, new_tat = gcra(tat, now_ms, rate)
        decisions.append(decision)
        if new_tat is not None:
            tat = new_tat
    return decisions


# Rates whose interval is a whole number of milliseconds, at whole-millisecond instants: no
# floating-point rounding is involved.
exact_rates = st.builds(
    lambda max_, interval: Rate(max_, max_ * interval, 0),
    st.integers(1, 100),
    st.integers(1, 10_000),
)
whole_ms = st.integers(0, 10**12).map(float)


# --- gcra ---------------------------------------------------------------------------------------


def test_rate_of_limit_config() -> None:
    rate = Rate.of(LimitConfig(5, 60_000, 300_000))
    assert rate == PURCHASE
    assert rate.interval_ms == 12_000


def test_fresh_key_is_allowed_with_full_remaining() -> None:
    decision, tat = gcra(None, 5_000.0, GLOBAL)
    assert decision == Decision(True, 99, 0, 601)
    assert tat == 5_600.0


def test_burst_of_max_then_denied() -> None:
    decisions = burst(PURCHASE, 0.0, 7)
    assert [d.allowed for d in decisions] == [True] * 5 + [False] * 2
    assert [d.remaining for d in decisions] == [4, 3, 2, 1, 0, 0, 0]


def test_denied_decision_says_when_to_retry() -> None:
    denied = burst(PURCHASE, 0.0, 6)[-1]
    assert denied.retry_after_ms == 12_001
    assert denied.reset_ms == 60_001
    assert denied.remaining == 0


def test_denial_does_not_change_state() -> None:
    _, tat = gcra(None, 0.0, Rate(1, 1000, 0))
    decision, new_tat = gcra(tat, 0.0, Rate(1, 1000, 0))
    assert not decision.allowed
    assert new_tat is None


def test_refill_is_smooth() -> None:
    rate = PURCHASE
    tat: float | None = None
    for _ in range(5):
        _, tat = gcra(tat, 0.0, rate)
    assert not gcra(tat, 11_999.0, rate)[0].allowed
    decision, _ = gcra(tat, 12_000.0, rate)
    assert decision.allowed
    assert decision.remaining == 0


def test_old_tat_is_forgotten() -> None:
    decision, tat = gcra(10.0, 1_000_000.0, GLOBAL)
    assert decision.remaining == 99
    assert tat == 1_000_600.0


@given(exact_rates, whole_ms)
def test_exactly_max_requests_in_an_instant(rate: Rate, now: float) -> None:
    decisions = burst(rate, now, rate.max + 3)
    assert [d.allowed for d in decisions] == [True] * rate.max + [False] * 3
    assert [d.remaining for d in decisions[: rate.max]] == list(range(rate.max - 1, -1, -1))


@given(exact_rates, whole_ms, st.integers(1, 50))
def test_waiting_retry_after_is_enough_and_needed(rate: Rate, now: float, extra: int) -> None:
    tat: float | None = None
    for _ in range(rate.max):
        _, tat = gcra(tat, now, rate)
    denied, _ = gcra(tat, now, rate)
    assert not denied.allowed
    assert gcra(tat, now + denied.retry_after_ms, rate)[0].allowed
    assert not gcra(tat, now + denied.retry_after_ms - 2, rate)[0].allowed


@given(exact_rates, whole_ms, st.integers(1, 200))
def test_after_reset_a_full_burst_is_allowed(rate: Rate, now: float, used: int) -> None:
    used = min(used, rate.max)
    tat: float | None = None
    decision = None
    for _ in range(used):
        decision, tat = gcra(tat, now, rate)
    assert decision is not None
    later = now + decision.reset_ms
    assert all(d.allowed for d in burst_from(tat, rate, later, rate.max))


def burst_from(tat: float | None, rate: Rate, now: float, attempts: int) -> list[Decision]:
    decisions = []
    for _ in range(attempts):
        decision, new_tat = gcra(tat, now, rate)
        decisions.append(decision)
        if new_tat is not None:
            tat = new_tat
    return decisions


@given(exact_rates, whole_ms, st.integers(1, 120))
def test_steady_rate_is_always_allowed(rate: Rate, start: float, count: int) -> None:
    tat: float | None = None
    for i in range(count):
        decision, tat = gcra(tat, start + i * rate.interval_ms, rate)
        assert decision.allowed


@given(exact_rates, whole_ms, st.lists(st.integers(0, 5_000), min_size=1, max_size=60))
def test_never_more_than_burst_plus_refill(rate: Rate, start: float, gaps: list[int]) -> None:
    # Over any run of requests, allowed <= max + elapsed / interval (the GCRA guarantee).
    tat: float | None = None
    now, allowed = start, 0
    for gap in gaps:
        now += gap
        decision, new_tat = gcra(tat, now, rate)
        if new_tat is not None:
            tat = new_tat
        allowed += decision.allowed
        assert allowed <= rate.max + (now - start) / rate.interval_ms


@pytest.mark.parametrize(
    ("rate", "now"),
    [(PURCHASE, 44_949.1), (GLOBAL, 255_653.7817693938), (Rate(3, 1000, 0), 1715.0)],
)
def test_full_burst_at_fractional_clock(rate: Rate, now: float) -> None:
    decisions = burst(rate, now, rate.max)
    assert [d.remaining for d in decisions] == list(range(rate.max - 1, -1, -1))
    assert all(d.allowed for d in decisions)


@given(st.floats(0, 1e12), st.floats(-1e6, 1e6))
def test_blocked_decision(now: float, offset: float) -> None:
    decision = blocked(now + offset, now)
    if now + offset <= now:
        assert decision is None
    else:
        assert decision is not None
        assert not decision.allowed
        assert decision.retry_after_ms >= 1
        assert decision.retry_after_ms >= (now + offset) - now


def test_not_blocked_without_block() -> None:
    assert blocked(None, 5.0) is None


# --- MemoryStore --------------------------------------------------------------------------------


def test_store_limits_per_key() -> None:
    store = MemoryStore(Clock())
    rate = Rate(2, 1000, 0)
    assert [store.decide("a", rate).allowed for _ in range(3)] == [True, True, False]
    assert store.decide("b", rate).allowed


def test_store_refills_with_injected_clock() -> None:
    clock = Clock()
    store = MemoryStore(clock)
    rate = Rate(2, 1000, 0)
    store.decide("a", rate)
    store.decide("a", rate)
    assert not store.decide("a", rate).allowed
    clock.now_ms += 500
    assert store.decide("a", rate).allowed
    assert not store.decide("a", rate).allowed


def test_store_blocks_after_exceeding_blocking_limit() -> None:
    clock = Clock()
    store = MemoryStore(clock)
    assert all(store.decide("user:1", PURCHASE).allowed for _ in range(5))
    denied = store.decide("user:1", PURCHASE)
    assert not denied.allowed
    assert denied.retry_after_ms == 300_000
    # Long after the window refilled, the block still holds.
    clock.now_ms += 120_000
    still = store.decide("user:1", PURCHASE)
    assert not still.allowed
    assert 180_000 <= still.retry_after_ms <= 180_001
    assert store.decide("user:2", PURCHASE).allowed


def test_store_block_ends() -> None:
    clock = Clock()
    store = MemoryStore(clock)
    for _ in range(6):
        store.decide("k", PURCHASE)
    clock.now_ms += 300_000
    assert [store.decide("k", PURCHASE).allowed for _ in range(6)] == [True] * 5 + [False]


def test_store_without_block_only_waits_for_refill() -> None:
    clock = Clock()
    store = MemoryStore(clock)
    rate = Rate(5, 60_000, 0)
    for _ in range(6):
        store.decide("k", rate)
    clock.now_ms += 12_000
    assert store.decide("k", rate).allowed


def test_store_hit_is_the_async_decide() -> None:
    store = MemoryStore(Clock())
    rate = Rate(1, 1000, 0)
    assert run(store.hit("k", rate)).allowed
    assert not run(store.hit("k", rate)).allowed
    assert run(store.ping()) is None


def test_store_drops_expired_keys() -> None:
    clock = Clock()
    store = MemoryStore(clock)
    rate = Rate(10, 1000, 0)
    for i in range(100):
        store.decide(f"old:{i}", rate)
    clock.now_ms += 10_000
    for _ in range(2 * TURN_EVERY):
        store.decide("live", rate)
    held = [*store.tats, *store.old_tats]
    assert not any(key.startswith("old:") for key in held)
    assert "live" in held


def test_store_work_per_hit_is_bounded_and_live_keys_survive() -> None:
    """Keys expire with a few entries examined per hit, whatever the number of keys, and a key
    still inside its window keeps its state across every turn."""
    clock = Clock()
    store = MemoryStore(clock)
    slow = Rate(2, 3_600_000, 0)  # one request per half hour: the TAT stays ahead all along
    fast = Rate(1000, 1000, 0)  # a millisecond: expired by the next tick
    assert store.decide("slow", slow).allowed
    for n in range(5 * TURN_EVERY):
        clock.now_ms += 1
        held = len(store)
        store.decide(f"user:{n}", fast)
        assert len(store) >= held - DRAIN_PER_HIT  # never a bulk sweep
        assert len(store) <= 2 * TURN_EVERY + 2  # expired keys do not pile up
    assert store.decide("slow", slow).allowed
    assert not store.decide("slow", slow).allowed  # the first hit was remembered


@given(st.lists(st.tuples(st.integers(0, 20), st.integers(0, 400)), max_size=400))
def test_store_decides_as_if_it_forgot_nothing(hits: list[tuple[int, int]]) -> None:
    """Generations and draining change nothing: the same decisions as a plain dict of TATs."""
    clock = Clock()
    store = MemoryStore(clock)
    truth: dict[str, float] = {}
    rate = Rate(3, 1000, 0)
    for n, (user, step) in enumerate(hits):
        clock.now_ms += step
        if n % 7 == 0 and not store.old_tats:
            store._turn()  # far more often than every TURN_EVERY hits
        key = f"user:{user}"
        expected, tat = gcra(truth.get(key), clock.now_ms, rate)
        if tat is not None:
            truth[key] = tat
        assert store.decide(key, rate) == expected


def test_store_allows_five_purchases_at_fractional_clock() -> None:
    store = MemoryStore(Clock(44_949.1))
    assert [store.decide("user:1", PURCHASE).allowed for _ in range(5)] == [True] * 5


# --- RateLimit policy ---------------------------------------------------------------------------


def request(ip: str = "203.0.113.9", claims: Claims | None = None) -> Request:
    req = Request("GET", b"/api/v1/events", [(b"host", b"gw")], b"", ip)
    req.claims = claims
    return req


async def ok(_: Request) -> Response:
    return Response(200, [(b"content-type", b"text/plain")], b"ok")


def header(response_headers: list[tuple[bytes, bytes]], name: bytes) -> list[bytes]:
    return [v for n, v in response_headers if n == name]


def call(
    policy: RateLimit, req: Request, handler: Callable[[Request], Awaitable[Response]] = ok
) -> Response:
    response = run(policy(req, handler))
    response.headers += req.response_headers  # as RequestContext does for every response
    return response


def test_policy_adds_rate_limit_headers() -> None:
    policy = RateLimit("global", Rate(3, 60_000, 0), MemoryStore(Clock()), by_client_ip)
    response = call(policy, request())
    assert response.status == 200
    assert header(response.headers, b"x-ratelimit-limit") == [b"3"]
    assert header(response.headers, b"x-ratelimit-remaining") == [b"2"]
    assert header(response.headers, b"x-ratelimit-reset") == [b"21"]


def test_policy_raises_429_with_retry_after_in_whole_seconds() -> None:
    policy = RateLimit("global", Rate(2, 60_000, 0), MemoryStore(Clock()), by_client_ip)
    call(policy, request())
    call(policy, request())
    with pytest.raises(RateLimited) as info:
        call(policy, request())
    headers = info.value.headers
    assert info.value.status == 429
    assert header(headers, b"retry-after") == [b"31"]
    assert header(headers, b"x-ratelimit-limit") == [b"2"]
    assert header(headers, b"x-ratelimit-remaining") == [b"0"]
    assert header(headers, b"x-ratelimit-reset") == [b"61"]


def test_policy_does_not_call_upstream_when_limited() -> None:
    calls: list[Request] = []

    async def counting(req: Request) -> Response:
        calls.append(req)
        return await ok(req)

    policy = RateLimit("global", Rate(1, 60_000, 0), MemoryStore(Clock()), by_client_ip)
    call(policy, request(), counting)
    with pytest.raises(RateLimited):
        call(policy, request(), counting)
    assert len(calls) == 1


def test_policy_keys_by_client_ip() -> None:
    policy = RateLimit("global", Rate(1, 60_000, 0), MemoryStore(Clock()), by_client_ip)
    call(policy, request("198.51.100.1"))
    call(policy, request("198.51.100.2"))
    with pytest.raises(RateLimited):
        call(policy, request("198.51.100.1"))


def test_limits_with_different_names_do_not_share_keys() -> None:
    store = MemoryStore(Clock())
    first = RateLimit("a", Rate(1, 60_000, 0), store, by_client_ip)
    second = RateLimit("b", Rate(1, 60_000, 0), store, by_client_ip)
    call(first, request())
    assert call(second, request()).status == 200


def test_key_functions() -> None:
    claims = Claims("user-1", "tenant-1", "", "", 0.0)
    assert by_client_ip(request("10.0.0.1", claims)) == "ip:10.0.0.1"
    assert by_user_or_ip(request("10.0.0.1", claims)) == "user:user-1"
    assert by_user_or_ip(request("10.0.0.1")) == "ip:10.0.0.1"


class DownStore:
    async def hit(self, key: str, rate: Rate, strict: bool = False) -> Decision:
        raise StoreUnavailable("redis is down")

    async def ping(self) -> None:
        raise StoreUnavailable("redis is down")

    async def close(self) -> None:
        return None


def test_policy_fails_open_when_store_is_unavailable() -> None:
    policy = RateLimit("global", Rate(1, 60_000, 0), DownStore(), by_client_ip)
    for _ in range(3):
        response = call(policy, request())
        assert response.status == 200
        assert header(response.headers, b"x-ratelimit-remaining") == []


@given(st.integers(1, 600_000))
def test_retry_after_rounds_up(retry_ms: int) -> None:
    class Fixed:
        async def hit(self, key: str, rate: Rate, strict: bool = False) -> Decision:
            return Decision(False, 0, retry_ms, retry_ms)

        async def ping(self) -> None:
            return None

        async def close(self) -> None:
            return None

    policy = RateLimit("global", Rate(1, 60_000, 0), Fixed(), by_client_ip)
    with pytest.raises(RateLimited) as info:
        call(policy, request())
    seconds = int(header(info.value.headers, b"retry-after")[0])
    assert seconds * 1000 >= retry_ms
    assert (seconds - 1) * 1000 < retry_ms

"""The rate-limit policy's answers: headers, the tightest limit reported, keys that skip, and
what a store outage means for a route that fails closed."""

from __future__ import annotations

import pytest
from support.resilience import request, run

from api_gateway.errors import RateLimited, ServiceUnavailable
from api_gateway.limiter import Decision, Rate
from api_gateway.policies.ratelimit import LimitHeaders, RateLimit, by_client_ip, by_user
from api_gateway.stores import StoreUnavailable
from api_gateway.stores.memory import MemoryStore
from api_gateway.types import Claims, Request, Response

RATE = Rate(10, 60_000, 0)


async def answer(request: Request) -> Response:
    return Response(200, [])


def test_headers_of_a_decision_come_in_both_families() -> None:
    headers = dict(LimitHeaders(RATE).of(Decision(True, 7, 0, 12_001)))
    assert headers == {
        b"x-ratelimit-limit": b"10",
        b"ratelimit-limit": b"10",
        b"x-ratelimit-remaining": b"7",
        b"ratelimit-remaining": b"7",
        b"x-ratelimit-reset": b"13",
        b"ratelimit-reset": b"13",
    }
    far = dict(LimitHeaders(Rate(10_000, 10_000_000, 0)).of(Decision(True, 9_999, 0, 9_000_000)))
    assert far[b"ratelimit-remaining"] == b"9999" and far[b"ratelimit-reset"] == b"9000"


def test_the_tightest_of_several_limits_is_reported_once() -> None:
    store = MemoryStore(lambda: 0.0)
    loose = RateLimit("global", Rate(100, 60_000, 0), store, by_client_ip)
    tight = RateLimit("purchase", Rate(5, 60_000, 0), store, by_client_ip)
    looser = RateLimit("other", Rate(50, 60_000, 0), store, by_client_ip)
    r = request()
    for limit in (loose, tight, looser):
        run(limit(r, answer))
    names = [name for name, _ in r.response_headers]
    assert names.count(b"ratelimit-limit") == 1
    assert dict(r.response_headers)[b"ratelimit-limit"] == b"5"


def test_a_limit_without_a_key_for_the_request_does_not_count_it() -> None:
    store = MemoryStore(lambda: 0.0)
    limit = RateLimit("user", Rate(1, 60_000, 0), store, by_user)
    for _ in range(3):
        assert run(limit(request(), answer)).status == 200
    signed_in = request()
    signed_in.claims = Claims("fan-1", "tenant-1", "user", "", 0.0)
    run(limit(signed_in, answer))
    with pytest.raises(RateLimited):
        run(limit(signed_in, answer))


def test_a_refusal_carries_the_limit_headers() -> None:
    limit = RateLimit("global", Rate(1, 60_000, 0), MemoryStore(lambda: 0.0), by_client_ip)
    run(limit(request(), answer))
    with pytest.raises(RateLimited) as refused:
        run(limit(request(), answer))
    headers = dict(refused.value.headers)
    assert headers[b"ratelimit-remaining"] == b"0"
    assert headers[b"retry-after"] in (b"60", b"61")


class DownStore:
    def __init__(self) -> None:
        self.strict: list[bool] = []

    async def hit(self, key: str, rate: Rate, strict: bool = False) -> Decision:
        self.strict.append(strict)
        raise StoreUnavailable("redis is away")

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


def test_a_fail_closed_limit_answers_503_when_the_store_is_away() -> None:
    store = DownStore()
    closed = RateLimit("global", RATE, store, by_client_ip, fail_closed=True)
    opened = RateLimit("global", RATE, store, by_client_ip)
    with pytest.raises(ServiceUnavailable):
        run(closed(request(), answer))
    assert run(opened(request(), answer)).status == 200
    assert store.strict == [True, False]

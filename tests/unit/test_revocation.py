"""Revoked tokens (revocation.py): the keys auth-service writes, asked at most once per token per
period (both answers kept), one question for concurrent checks, and Redis down by the route's
rule. Redis is a stand-in answering GET from a dict; the clock is injected."""

from __future__ import annotations

import asyncio

import pytest

from api_gateway.errors import ServiceUnavailable, TokenRevoked, Unauthorized
from api_gateway.resp.protocol import Reply, RespError
from api_gateway.revocation import Revocations
from api_gateway.stores import StoreUnavailable
from api_gateway.types import Claims

TOKEN = "aaa.bbb.ccc"
PERIOD_S = 5.0


class KeyValues:
    """What Redis holds, and every command asked of it; ``down`` makes every command fail."""

    def __init__(self) -> None:
        self.values: dict[str, bytes] = {}
        self.asked: list[tuple[str | bytes | int, ...]] = []
        self.down = False
        self.refuse = False
        self.gate: asyncio.Event | None = None

    async def command(self, *args: str | bytes | int) -> Reply:
        self.asked.append(args)
        if self.gate is not None:
            await self.gate.wait()
        if self.down:
            raise StoreUnavailable("redis at 127.0.0.1:1: connection refused")
        if self.refuse:
            return RespError("ERR wrong number of arguments")
        assert args[0] == "GET" and isinstance(args[1], str)
        return self.values.get(args[1])


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def claims() -> Claims:
    return Claims("user-1", "tenant-1", "customer", "", 9e9)


def setup() -> tuple[KeyValues, Clock, Revocations]:
    redis, clock = KeyValues(), Clock()
    return redis, clock, Revocations(redis, PERIOD_S, clock)


def check(revocations: Revocations, who: Claims, fail_closed: bool = False) -> None:
    asyncio.run(revocations.check(who, TOKEN, fail_closed))


def test_both_keys_are_asked_by_the_token() -> None:
    redis, _, revocations = setup()

    check(revocations, claims())

    assert sorted(redis.asked) == [
        ("GET", "blacklist:" + TOKEN),
        ("GET", "session:blacklist:" + TOKEN),
    ]


@pytest.mark.parametrize("key", ["blacklist:", "session:blacklist:"])
@pytest.mark.parametrize("value", [b"revoked", b"1", b"true"])
def test_a_token_under_either_key_is_revoked_whatever_the_value(key: str, value: bytes) -> None:
    redis, _, revocations = setup()
    redis.values[key + TOKEN] = value

    with pytest.raises(TokenRevoked) as refused:
        check(revocations, claims())

    assert isinstance(refused.value, Unauthorized)
    assert refused.value.slug == "token-revoked"


def test_another_tokens_revocation_does_not_touch_this_one() -> None:
    redis, _, revocations = setup()
    redis.values["blacklist:xxx.yyy.zzz"] = b"revoked"

    check(revocations, claims())


def test_a_good_answer_is_kept_for_the_period_then_asked_again() -> None:
    redis, clock, revocations = setup()
    who = claims()

    check(revocations, who)
    asked = len(redis.asked)
    redis.values["blacklist:" + TOKEN] = b"revoked"  # a logout within the period
    clock.now += PERIOD_S - 0.01
    check(revocations, who)
    assert len(redis.asked) == asked

    clock.now += 0.02
    with pytest.raises(TokenRevoked):
        check(revocations, who)
    assert len(redis.asked) == 2 * asked


def test_a_revoked_answer_is_kept_too_without_asking_again() -> None:
    redis, clock, revocations = setup()
    redis.values["blacklist:" + TOKEN] = b"revoked"
    who = claims()

    for _ in range(5):
        with pytest.raises(TokenRevoked):
            check(revocations, who)
        clock.now += 0.5
    assert len(redis.asked) == 2


def test_concurrent_checks_of_one_token_ask_once() -> None:
    redis, _, revocations = setup()
    redis.gate = asyncio.Event()
    who = [claims() for _ in range(10)]

    async def many() -> None:
        assert redis.gate is not None
        waiting = [asyncio.ensure_future(revocations.check(c, TOKEN, False)) for c in who]
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        redis.gate.set()
        await asyncio.gather(*waiting)

    asyncio.run(many())

    assert len(redis.asked) == 2
    assert all(c.checked_until == 1000.0 + PERIOD_S for c in who)
    assert not revocations.flights


def test_redis_down_lets_a_fail_open_route_through_and_asks_again_next_time() -> None:
    redis, _, revocations = setup()
    redis.down = True
    who = claims()

    check(revocations, who)
    check(revocations, who)

    assert revocations.unchecked == 2
    assert who.checked_until == 0.0  # no answer is kept from a failure
    assert len(redis.asked) == 4


@pytest.mark.parametrize("failure", ["down", "refuse"])
def test_redis_unable_to_answer_closes_a_fail_closed_route(failure: str) -> None:
    redis, _, revocations = setup()
    setattr(redis, failure, True)

    with pytest.raises(ServiceUnavailable) as refused:
        check(revocations, claims(), fail_closed=True)

    assert refused.value.status == 503
    assert revocations.unchecked == 0

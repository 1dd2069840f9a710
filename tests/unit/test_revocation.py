"""Revoked tokens (revocation.py): the keys auth-service writes, asked at most once per token per
period (both answers kept), one question for concurrent checks (a cancelled check failing none of
the others), and Redis down by the route's rule. Redis is a stand-in answering EXISTS from a
dict; the clock is injected."""

from __future__ import annotations

import asyncio

import pytest

from api_gateway.errors import ServiceUnavailable, TokenRevoked, Unauthorized
from api_gateway.resp.protocol import Reply, RespError, encode_command
from api_gateway.revocation import Revocations, exists_both
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
        assert args[0] == "EXISTS" and len(args) > 1
        return sum(key in self.values for key in args[1:])


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def claims() -> Claims:
    return Claims("user-1", "tenant-1", "customer", "", 9e9)


def setup(per_key: bool = False) -> tuple[KeyValues, Clock, Revocations]:
    redis, clock = KeyValues(), Clock()
    return redis, clock, Revocations(redis, PERIOD_S, clock, per_key)


def check(revocations: Revocations, who: Claims, fail_closed: bool = False) -> None:
    asyncio.run(revocations.check(who, TOKEN, fail_closed))


def test_both_keys_are_asked_by_the_token_in_one_command() -> None:
    redis, _, revocations = setup()

    check(revocations, claims())

    assert redis.asked == [("EXISTS", "blacklist:" + TOKEN, "session:blacklist:" + TOKEN)]


def test_in_a_cluster_each_key_is_asked_alone() -> None:
    redis, _, revocations = setup(per_key=True)

    check(revocations, claims())

    assert sorted(redis.asked) == [
        ("EXISTS", "blacklist:" + TOKEN),
        ("EXISTS", "session:blacklist:" + TOKEN),
    ]


@pytest.mark.parametrize("per_key", [False, True])
@pytest.mark.parametrize("key", ["blacklist:", "session:blacklist:"])
@pytest.mark.parametrize("value", [b"revoked", b"1", b"true"])
def test_a_token_under_either_key_is_revoked_whatever_the_value(
    key: str, value: bytes, per_key: bool
) -> None:
    redis, _, revocations = setup(per_key)
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
    assert len(redis.asked) == 1


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

    assert len(redis.asked) == 1
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
    assert len(redis.asked) == 2


@pytest.mark.parametrize("per_key", [False, True])
@pytest.mark.parametrize("failure", ["down", "refuse"])
def test_redis_unable_to_answer_closes_a_fail_closed_route(failure: str, per_key: bool) -> None:
    redis, _, revocations = setup(per_key)
    setattr(redis, failure, True)

    with pytest.raises(ServiceUnavailable) as refused:
        check(revocations, claims(), fail_closed=True)

    assert refused.value.status == 503
    assert revocations.unchecked == 0


def test_a_cancelled_first_check_fails_none_of_the_checks_that_joined_it() -> None:
    """The first check awaits the question itself: cancelled (its client went away), the
    question goes with it, and it is asked again for the checks still waiting."""
    redis, _, revocations = setup()
    redis.gate = asyncio.Event()
    redis.values["session:blacklist:" + TOKEN] = b"revoked"
    first, joined = claims(), [claims() for _ in range(3)]

    async def cancelled_first() -> list[BaseException | None]:
        assert redis.gate is not None
        asking = asyncio.ensure_future(revocations.check(first, TOKEN, True))
        await asyncio.sleep(0)
        waiting = [asyncio.ensure_future(revocations.check(c, TOKEN, True)) for c in joined]
        await asyncio.sleep(0)
        asking.cancel()
        await asyncio.sleep(0)
        redis.gate.set()
        outcomes = await asyncio.gather(*waiting, return_exceptions=True)
        assert asking.cancelled()
        return outcomes

    outcomes = asyncio.run(cancelled_first())

    assert all(isinstance(outcome, TokenRevoked) for outcome in outcomes)
    assert all(c.revoked_until == 1000.0 + PERIOD_S for c in joined)
    assert len(redis.asked) == 2  # the cancelled question, then the one asked again
    assert not revocations.flights


def test_a_cancelled_check_that_joined_leaves_the_others_be() -> None:
    redis, _, revocations = setup()
    redis.gate = asyncio.Event()
    who = [claims() for _ in range(3)]

    async def cancelled_joiner() -> None:
        assert redis.gate is not None
        waiting = [asyncio.ensure_future(revocations.check(c, TOKEN, True)) for c in who]
        await asyncio.sleep(0)
        waiting[1].cancel()
        await asyncio.sleep(0)
        redis.gate.set()
        await asyncio.gather(waiting[0], waiting[2])
        assert waiting[1].cancelled()

    asyncio.run(cancelled_joiner())

    assert len(redis.asked) == 1
    assert who[0].checked_until == who[2].checked_until == 1000.0 + PERIOD_S
    assert who[1].checked_until == 0.0
    assert not revocations.flights


def test_a_failure_reaches_every_check_that_joined() -> None:
    redis, _, revocations = setup()
    redis.gate = asyncio.Event()
    redis.down = True
    who = [claims() for _ in range(4)]

    async def failing() -> list[BaseException | None]:
        assert redis.gate is not None
        waiting = [asyncio.ensure_future(revocations.check(c, TOKEN, True)) for c in who]
        await asyncio.sleep(0)
        redis.gate.set()
        return await asyncio.gather(*waiting, return_exceptions=True)

    outcomes = asyncio.run(failing())

    assert all(isinstance(outcome, ServiceUnavailable) for outcome in outcomes)
    assert len(redis.asked) == 1
    assert not revocations.flights


@pytest.mark.parametrize("token", [TOKEN, "a" * 900 + ".b.c", "x"])
def test_the_question_on_one_server_is_exists_of_both_keys(token: str) -> None:
    expected = encode_command("EXISTS", "blacklist:" + token, "session:blacklist:" + token)

    assert exists_both(token) == expected


def test_a_check_closed_before_its_answer_leaves_the_question_to_those_that_joined() -> None:
    """A check's coroutine closed while it waits (its task destroyed, not cancelled): the
    question stays in flight and the checks that joined get its answer when it lands."""
    redis, _, revocations = setup()
    redis.gate = asyncio.Event()
    joined = claims()

    async def closed_first() -> None:
        assert redis.gate is not None
        first = revocations.check(claims(), TOKEN, True)
        first.send(None)  # runs up to the question's reply, then waits
        waiting = asyncio.ensure_future(revocations.check(joined, TOKEN, True))
        await asyncio.sleep(0)
        first.close()
        redis.gate.set()
        await waiting

    asyncio.run(closed_first())

    assert joined.checked_until == 1000.0 + PERIOD_S
    assert len(redis.asked) == 1
    assert not revocations.flights

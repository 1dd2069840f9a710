"""Revocation checks over the gateway's own Redis client, against a real Redis: both keys asked
by one EXISTS once the connection is open (no task), the first check before it is open the long
way, one question for concurrent checks of a token (a cancelled one failing none of the others),
a key of any type counting, and an error reply read as Redis failing."""

from __future__ import annotations

import asyncio
import time

import pytest
from support.redis import RedisServer

from api_gateway.errors import ServiceUnavailable, TokenRevoked
from api_gateway.resp.client import RedisClient
from api_gateway.resp.protocol import RespError
from api_gateway.revocation import Revocations, revoked_by
from api_gateway.stores import StoreUnavailable
from api_gateway.types import Claims

PERIOD_S = 60.0
CONCURRENT = 20


def claims() -> Claims:
    return Claims("user-1", "tenant-1", "customer", "", 9e9)


async def exists_calls(client: RedisClient) -> int:
    info = await client.command("INFO", "commandstats")
    assert isinstance(info, bytes)
    for line in info.decode().splitlines():
        if line.startswith("cmdstat_exists:"):
            return int(line.split("calls=")[1].split(",")[0])
    return 0


async def scenario(url: str) -> None:
    client = RedisClient(url)
    revocations = Revocations(client, PERIOD_S, time.monotonic)
    try:
        # Before any command the connection is not open: the first check opens it.
        await revocations.check(claims(), "first.token.x", fail_closed=True)
        assert client.conn is not None

        await client.command("SET", "blacklist:revoked.a.x", "revoked")
        await client.command("SET", "session:blacklist:revoked.b.x", "revoked")
        for token in ("revoked.a.x", "revoked.b.x"):
            with pytest.raises(TokenRevoked):
                await revocations.check(claims(), token, fail_closed=True)

        before = await exists_calls(client)
        shared = claims()
        await asyncio.gather(
            *[revocations.check(shared, "busy.token.x", True) for _ in range(CONCURRENT)]
        )
        assert await exists_calls(client) - before == 1  # one question: both keys, once
        assert not revocations.flights
        # Within the period, the answer kept on the claims: Redis is not asked again.
        await revocations.check(shared, "busy.token.x", fail_closed=True)
        assert await exists_calls(client) - before == 1
    finally:
        await client.close()


def test_checks_over_the_gateways_client(redis_server: RedisServer) -> None:
    asyncio.run(scenario(redis_server.url))


async def cancelled_first_check(url: str) -> None:
    client = RedisClient(url)
    revocations = Revocations(client, PERIOD_S, time.monotonic)
    try:
        await client.command("SET", "blacklist:shared.token.x", "revoked")
        before = await exists_calls(client)
        first, joined = claims(), [claims() for _ in range(3)]
        asking = asyncio.ensure_future(revocations.check(first, "shared.token.x", True))
        await asyncio.sleep(0)  # the question is queued on the connection
        waiting = [
            asyncio.ensure_future(revocations.check(c, "shared.token.x", True)) for c in joined
        ]
        await asyncio.sleep(0)  # each joined it
        asking.cancel()  # the first check's client went away

        outcomes = await asyncio.gather(*waiting, return_exceptions=True)

        assert asking.cancelled()
        assert all(isinstance(outcome, TokenRevoked) for outcome in outcomes)
        assert all(c.revoked_until > 0 for c in joined)
        assert await exists_calls(client) - before == 2  # asked again for those still waiting
        assert not revocations.flights
    finally:
        await client.close()


def test_a_cancelled_check_fails_none_of_the_checks_waiting_for_the_same_token(
    redis_server: RedisServer,
) -> None:
    asyncio.run(cancelled_first_check(redis_server.url))


async def of_another_type(url: str) -> None:
    client = RedisClient(url)
    revocations = Revocations(client, PERIOD_S, time.monotonic)
    try:
        await client.command("PING")
        await client.command("HSET", "session:blacklist:hashed.token.x", "by", "admin")
        with pytest.raises(TokenRevoked):
            await revocations.check(claims(), "hashed.token.x", fail_closed=True)
    finally:
        await client.close()


def test_a_key_of_any_type_revokes(redis_server: RedisServer) -> None:
    """Revoked while the key exists, whatever it holds (EXISTS, where GET would be refused)."""
    asyncio.run(of_another_type(redis_server.url))


async def refused(url: str, fail_closed: bool) -> int:
    client = RedisClient(url)
    revocations = Revocations(client, PERIOD_S, time.monotonic)
    try:
        await client.command("ACL", "SETUSER", "default", "-exists")
        who = claims()
        await revocations.check(who, "any.token.x", fail_closed)
        assert who.checked_until == 0.0  # nothing kept from a failure
        return revocations.unchecked
    finally:
        await client.close()


def test_an_error_reply_from_redis_closes_a_fail_closed_route(redis_server: RedisServer) -> None:
    with pytest.raises(ServiceUnavailable):
        asyncio.run(refused(redis_server.url, fail_closed=True))


def test_an_error_reply_from_redis_lets_a_fail_open_route_through(
    redis_server: RedisServer,
) -> None:
    assert asyncio.run(refused(redis_server.url, fail_closed=False)) == 1


def test_an_error_reply_is_redis_failing() -> None:
    with pytest.raises(StoreUnavailable):
        revoked_by(RespError("NOPERM this user has no permissions to run the 'exists' command"))
    with pytest.raises(StoreUnavailable):
        revoked_by(b"not a count")
    assert revoked_by(1) is True
    assert revoked_by(2) is True
    assert revoked_by(0) is False

"""Revocation checks over the gateway's own Redis client, against a real Redis: both keys asked
in one go once the connection is open (no task), the first check before it is open the long
way, one question for concurrent checks of a token, and an error reply read as Redis failing."""

from __future__ import annotations

import asyncio
import time

import pytest
from support.redis import RedisServer

from api_gateway.errors import TokenRevoked
from api_gateway.resp.client import RedisClient
from api_gateway.resp.protocol import RespError
from api_gateway.revocation import Revocations, revoked_by
from api_gateway.stores import StoreUnavailable
from api_gateway.types import Claims

PERIOD_S = 60.0
CONCURRENT = 20


def claims() -> Claims:
    return Claims("user-1", "tenant-1", "customer", "", 9e9)


async def get_calls(client: RedisClient) -> int:
    info = await client.command("INFO", "commandstats")
    assert isinstance(info, bytes)
    for line in info.decode().splitlines():
        if line.startswith("cmdstat_get:"):
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

        before = await get_calls(client)
        shared = claims()
        await asyncio.gather(
            *[revocations.check(shared, "busy.token.x", True) for _ in range(CONCURRENT)]
        )
        assert await get_calls(client) - before == 2  # one question: both keys, once
        assert not revocations.flights
        # Within the period, the answer kept on the claims: Redis is not asked again.
        await revocations.check(shared, "busy.token.x", fail_closed=True)
        assert await get_calls(client) - before == 2
    finally:
        await client.close()


def test_checks_over_the_gateways_client(redis_server: RedisServer) -> None:
    asyncio.run(scenario(redis_server.url))


def test_an_error_reply_is_redis_failing() -> None:
    with pytest.raises(StoreUnavailable):
        revoked_by([None, RespError("ERR something")])
    assert revoked_by([None, b"revoked"]) is True
    assert revoked_by([None, None]) is False

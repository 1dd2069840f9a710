"""A paused event loop is not a Redis outage. The store's bound (``redis.timeout_ms``) counts from
when a command was written, and a reply that Redis sent in time but the busy loop has not read
yet is not late; a Redis that really does not answer is still declared down within the bound.

The loop is blocked with ``time.sleep`` at the moments a busy gateway would be: right after a
command was queued, while the reply is on its way, and while connecting."""

from __future__ import annotations

import asyncio
import signal
import socket
import time
from collections.abc import Iterator

import pytest
import uvloop
from support.redis import RedisServer

from api_gateway.limiter import Rate
from api_gateway.resp.protocol import encode_command
from api_gateway.stores import StoreUnavailable
from api_gateway.stores.redis import RedisStore

TIMEOUT_S = 0.05  # the production default
STALL_S = 0.2  # four bounds
RATE = Rate(max=1000, window_ms=60_000, block_ms=0)
# Redis answers after ARGV[1] µs of its own time: a reply in flight while the loop is stalled.
SLOW_LUA = """
local t = redis.call('TIME')
local start = t[1] * 1000000 + t[2]
repeat t = redis.call('TIME') until t[1] * 1000000 + t[2] - start >= tonumber(ARGV[1])
return 1
"""


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    yield server
    server.stop()


def stall() -> None:
    """Block the event loop, as a heavy request would."""
    time.sleep(STALL_S)


async def connected(redis: RedisServer) -> RedisStore:
    store = RedisStore(redis.url, TIMEOUT_S)
    await store.ping()
    return store


def test_a_stall_right_after_a_command_was_queued_is_not_a_timeout(
    redis_server: RedisServer,
) -> None:
    async def story() -> None:
        store = await connected(redis_server)
        hit = asyncio.ensure_future(store.hit("queued", RATE))
        await asyncio.sleep(0)  # the hit queues its command; the write is for the next tick
        stall()
        assert (await hit).allowed
        await store.close()

    uvloop.run(story())


class Stalling(asyncio.Protocol):
    """Blocks the loop from inside its I/O callbacks, as a heavy request would."""

    def data_received(self, data: bytes) -> None:
        stall()


def test_a_reply_that_came_in_time_during_a_stall_is_not_late(redis_server: RedisServer) -> None:
    async def story() -> None:
        loop = asyncio.get_running_loop()
        store = await connected(redis_server)
        ours, theirs = socket.socketpair()
        await loop.connect_accepted_socket(Stalling, ours)
        conn = await store.connection()
        # Written on the next tick; the stall starts right after it, inside that tick's I/O,
        # before the reply (10 ms later, well within the bound) could be read.
        reply = conn.send(encode_command("EVAL", SLOW_LUA, 0, 10_000))
        loop.call_soon(theirs.send, b"x")
        assert await reply == 1
        theirs.close()
        await store.close()

    uvloop.run(story())


@pytest.mark.parametrize("ticks", range(1, 7))
def test_a_stall_while_connecting_is_not_an_outage(redis_server: RedisServer, ticks: int) -> None:
    async def story() -> None:
        store = RedisStore(redis_server.url, TIMEOUT_S)
        ping = asyncio.ensure_future(store.ping())
        for _ in range(ticks):  # the stall lands on each step: connect, AUTH/SELECT, SCRIPT LOAD
            await asyncio.sleep(0)
        stall()
        await ping
        await store.close()

    uvloop.run(story())


def test_a_frozen_redis_is_still_down_within_the_bound_after_a_stall(
    redis_server: RedisServer,
) -> None:
    async def story() -> None:
        store = await connected(redis_server)
        redis_server.signal(signal.SIGSTOP)
        try:
            hit = asyncio.ensure_future(store.hit("frozen", RATE))
            await asyncio.sleep(0)
            stall()
            started = time.monotonic()
            with pytest.raises(StoreUnavailable, match="did not answer"):
                await hit
            assert time.monotonic() - started < TIMEOUT_S + 0.25  # the bound, plus slack
        finally:
            redis_server.signal(signal.SIGCONT)
        await store.close()

    uvloop.run(story())

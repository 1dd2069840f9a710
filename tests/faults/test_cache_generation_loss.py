"""The response cache in Redis loses a resource's generation key: evicted under ``maxmemory``,
deleted, or gone with a failover. Answers stored before the resource's last write must never
come back; the cache goes on working with a new generation."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest
import redis
from support.client import RawResponse
from support.gateway import Fleet, GatewayProcess, running_gateway
from support.redis import RedisServer
from support.tokens import mint
from support.upstream import Reply

SHARED_MINUTE = (("Cache-Control", "s-maxage=60"),)
TARGET = "/api/v1/events/17"
GENERATION_KEY = "cache:{/api/v1/events/17}:gen"
SAVE_TIMEOUT_S = 5.0
POLL_S = 0.02


@pytest.fixture
def gateway(
    service_fleet: Fleet, tmp_path: Path, redis_server: RedisServer
) -> Iterator[GatewayProcess]:
    service_fleet.reset()
    service_fleet["event"].respond(Reply(headers=SHARED_MINUTE))
    env = {"REDIS_URL": redis_server.url}
    with running_gateway(tmp_path, service_fleet.urls(), env=env) as process:
        yield process


def read(gateway: GatewayProcess, client: redis.Redis) -> RawResponse:
    """A GET, then wait until its answer (if storable) is in Redis: saves run in the background."""
    before = len(entry_keys(client))
    response = gateway.get(TARGET, token=mint())
    if response.header("x-cache") == "MISS":
        deadline = time.monotonic() + SAVE_TIMEOUT_S
        while len(entry_keys(client)) <= before and time.monotonic() < deadline:
            time.sleep(POLL_S)
    return response


def entry_keys(client: redis.Redis) -> list[bytes]:
    keys = cast("list[bytes]", client.keys("cache:*"))
    return [key for key in keys if not key.endswith(b":gen")]


def test_a_lost_generation_key_never_brings_back_answers_from_before_a_write(
    gateway: GatewayProcess, redis_server: RedisServer
) -> None:
    client = redis.Redis.from_url(redis_server.url)
    try:
        before_write = read(gateway, client)
        assert gateway.request("PUT", TARGET, body=b"{}", token=mint()).status == 200
        after_write = [read(gateway, client) for _ in range(2)]
        client.delete(GENERATION_KEY)  # evicted, or lost in a failover
        after_loss = [read(gateway, client) for _ in range(2)]
    finally:
        client.close()

    assert before_write.header("x-cache") == "MISS"
    assert [r.header("x-cache") for r in after_write] == ["MISS", "HIT"]
    assert [r.header("x-cache") for r in after_loss] == ["MISS", "HIT"]
    assert after_loss[0].body not in (before_write.body, after_write[0].body)
    assert after_loss[1].body == after_loss[0].body


def test_a_generation_evicted_under_maxmemory_never_brings_back_old_answers(
    service_fleet: Fleet, tmp_path: Path
) -> None:
    # Every key is evictable and memory is tight: filling it evicts the generation key (among
    # others) while entries of the older generation may survive.
    server = RedisServer("--maxmemory", "4mb", "--maxmemory-policy", "allkeys-random")
    service_fleet.reset()
    service_fleet["event"].respond(Reply(headers=SHARED_MINUTE))
    client = redis.Redis.from_url(server.url)
    try:
        with running_gateway(tmp_path, service_fleet.urls(), env={"REDIS_URL": server.url}) as gw:
            before_write = read(gw, client)
            old_entries = set(entry_keys(client))
            assert gw.request("PUT", TARGET, body=b"{}", token=mint()).status == 200
            evicted = evict_until_gone(client, GENERATION_KEY, old_entries)
            after = [gw.get(TARGET, token=mint()) for _ in range(3)]
    finally:
        client.close()
        server.stop()

    assert evicted, "the generation key was not evicted while an old entry survived"
    assert all(r.status == 200 and r.body != before_write.body for r in after)


def evict_until_gone(client: redis.Redis, key: str, keep: set[bytes]) -> bool:
    """Fill Redis until ``key`` is evicted while one of ``keep`` survives (bounded); when an
    old entry is evicted first, it is put back as it was, so the attempt goes on."""
    saved = {k: (client.get(k), client.pttl(k)) for k in keep}
    filler = b"f" * 16_384
    for batch in range(200):
        with client.pipeline(transaction=False) as pipe:
            for i in range(32):
                pipe.set(f"filler:{batch}:{i}", filler)
            pipe.execute()
        for old, (value, ttl) in saved.items():
            if value is not None and not client.exists(old):
                client.set(old, value, px=max(ttl, 1000))
        if not client.exists(key) and any(client.exists(k) for k in keep):
            client.delete(*[f"filler:{b}:{i}" for b in range(batch + 1) for i in range(32)])
            return True
    return False

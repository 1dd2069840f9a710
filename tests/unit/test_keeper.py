"""The keeper's keyspace and Lua: Redis's answers, on an injected clock."""

from __future__ import annotations

import asyncio
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from api_gateway.keeper.keyspace import ENTRY_OVERHEAD, Keyspace
from api_gateway.keeper.server import Keeper, encode_reply, serve
from api_gateway.limiter import Rate
from api_gateway.resp.protocol import RespError, RespParser
from api_gateway.stores.memory import MemoryStore
from api_gateway.stores.redis import GCRA_LUA, RedisStore

KEYS = ("2", "gw:rl:{u}", "gw:rl:block:{u}")


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def keeper() -> tuple[Keeper, Clock]:
    clock = Clock()
    return Keeper(Keyspace(clock)), clock


def run(k: Keeper, *args: str | bytes) -> object:
    return k.execute([a if isinstance(a, bytes) else a.encode() for a in args])


def test_set_with_nx_px_and_expiry() -> None:
    k, clock = keeper()
    assert run(k, "SET", "a", "1", "NX", "PX", "1500") == "OK"
    assert run(k, "SET", "a", "2", "NX", "PX", "1500") is None
    assert run(k, "SET", "b", "2", "XX") is None
    assert run(k, "PTTL", "a") == 1500
    clock.now += 1499
    assert run(k, "GET", "a") == b"1"
    clock.now += 1
    assert run(k, "GET", "a") is None
    assert run(k, "PTTL", "a") == -2


def test_expired_keys_are_swept_without_being_read() -> None:
    k, clock = keeper()
    for i in range(100):
        run(k, "SET", f"k{i}", "v", "PX", str(1000 + i * 10))
    run(k, "SET", "forever", "v")
    clock.now += 5000
    run(k, "PING")
    assert run(k, "DBSIZE") == 1
    assert k.space.wheel == {}


def test_a_key_moved_to_a_later_expiry_sits_in_one_bucket() -> None:
    k, clock = keeper()
    for step in range(10):
        run(k, "SET", "moving", str(step), "PX", "60000")
        clock.now += 1000
    assert sum(len(keys) for keys in k.space.wheel.values()) == 1
    assert run(k, "PEXPIRE", "moving", "10") == 1
    clock.now += 2000
    run(k, "PING")
    assert run(k, "EXISTS", "moving") == 0


def test_a_full_keyspace_forgets_the_key_nearest_expiry() -> None:
    clock = Clock()
    k = Keeper(Keyspace(clock, max_keys=3))
    run(k, "SET", "late", "v", "PX", "90000")
    run(k, "SET", "soon", "v", "PX", "1000")
    run(k, "SET", "mid", "v", "PX", "50000")
    run(k, "SET", "new", "v", "PX", "90000")
    assert run(k, "MGET", "late", "soon", "mid", "new") == [b"v", None, b"v", b"v"]
    assert k.space.evicted == 1


def test_unknown_commands_and_bad_arguments_are_error_replies() -> None:
    k, _ = keeper()
    assert isinstance(run(k, "FLUSHALL"), RespError)
    assert isinstance(run(k, "GET"), RespError)
    assert isinstance(run(k, "SET", "a", "1", "PX", "soon"), RespError)
    assert isinstance(run(k, "EVALSHA", "0" * 40, "0"), RespError)


def test_lua_sees_redis_conversions() -> None:
    k, _ = keeper()
    run(k, "SET", "present", "x")
    script = (
        "return {redis.call('GET', KEYS[1]) == false and 1 or 0, redis.call('GET', KEYS[2]),"
        " 7.9, tonumber(ARGV[1]) + 1}"
    )
    assert run(k, "EVAL", script, "2", "absent", "present", "41") == [1, b"x", 7, 42]
    assert run(k, "EVAL", "return redis.status_reply('FINE')", "0") == "FINE"
    error = run(k, "EVAL", "return redis.call('NOPE')", "0")
    assert isinstance(error, RespError) and "unknown command" in error.message
    assert run(k, "EVAL", "return redis.pcall('NOPE')['err'] ~= nil", "0") == 1
    assert isinstance(run(k, "EVAL", "return (", "0"), RespError)


def test_scripts_load_by_sha_and_survive_a_flush_by_eval() -> None:
    k, _ = keeper()
    sha = run(k, "SCRIPT", "LOAD", "return 5")
    assert isinstance(sha, bytes)
    assert run(k, "EVALSHA", sha, "0") == 5
    assert run(k, "SCRIPT", "FLUSH") == "OK"
    assert isinstance(run(k, "EVALSHA", sha, "0"), RespError)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=20_000), min_size=1, max_size=40))
def test_the_redis_rate_limit_script_decides_as_the_memory_store(gaps: list[int]) -> None:
    """The GCRA written for Redis, run by the keeper's Lua: the same decisions as in memory,
    which is what the keeper runs in its place (a trailing space gives the text another SHA,
    so that Lua, not the stand-in, runs it)."""
    k, clock = keeper()
    memory = MemoryStore(clock)
    sha = run(k, "SCRIPT", "LOAD", GCRA_LUA + " ")
    assert isinstance(sha, bytes)
    rate = Rate(7, 60_000, 30_000)
    for gap in gaps:
        clock.now += gap
        reply = run(k, "EVALSHA", sha, *KEYS, "7", "60000", "30000")
        assert reply == list(memory.decide("u", rate).fields()), (clock.now, gaps)


def test_replies_encode_as_redis_sends_them() -> None:
    parsed = RespParser().feed(encode_reply([1, b"two", "OK", None, RespError("ERR no"), [b""]]))
    assert parsed == [[1, b"two", "OK", None, RespError("ERR no"), [b""]]]


def test_the_rate_limit_store_runs_on_the_keeper_over_a_socket(tmp_path: Path) -> None:
    async def scenario() -> list[bool]:
        path = str(tmp_path / "keeper.sock")
        listening = asyncio.Event()
        server = asyncio.create_task(serve(path, ready=listening.set))
        await asyncio.wait_for(listening.wait(), 5)
        store = RedisStore("unix://" + path, 1.0)
        try:
            decisions = await asyncio.gather(
                *(store.hit("ip:203.0.113.9", Rate(10, 60_000, 0)) for _ in range(25))
            )
        finally:
            await store.close()
            server.cancel()
        return [d.allowed for d in decisions]

    allowed = asyncio.run(scenario())
    assert allowed == [True] * 10 + [False] * 15


def test_the_keyspace_stays_within_its_bytes_forgetting_the_nearest_expiry_first() -> None:
    clock = Clock()
    space = Keyspace(clock, max_bytes=3 * (1 + 1000 + ENTRY_OVERHEAD))
    k = Keeper(space)
    big = "x" * 1000
    run(k, "SET", "a", big, "PX", "90000")
    run(k, "SET", "b", big, "PX", "1000")
    run(k, "SET", "c", big, "PX", "50000")
    run(k, "SET", "a", big, "PX", "90000")  # an overwrite makes no room and takes none
    assert run(k, "DBSIZE") == 3
    run(k, "SET", "d", big, "PX", "90000")
    assert run(k, "MGET", "a", "b", "c", "d") == [big.encode(), None, big.encode(), big.encode()]
    run(k, "DEL", "a")
    clock.now += 60_000
    run(k, "PING")  # c expires by the sweep
    assert run(k, "DBSIZE") == 1
    assert space.bytes == 1 + 1000 + ENTRY_OVERHEAD

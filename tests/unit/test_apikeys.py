"""API keys, pure parts: the key's shape and hash, the record's rules (expiry, revocation,
rotation's grace) and the checker's cache, all on injected clocks."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
from dataclasses import replace
from pathlib import Path

import pytest
from support.resilience import run

from api_gateway.apikeys.checker import ApiKeys
from api_gateway.apikeys.format import (
    KEY_LENGTH,
    base62,
    digest,
    key_id_of,
    new_id,
    new_key,
    same_digest,
)
from api_gateway.apikeys.records import UNKNOWN, KeyRecord, record_of
from api_gateway.apikeys.sqlite import SqliteKeys
from api_gateway.config.settings import ApiKeysConfig
from api_gateway.errors import Forbidden, ServiceUnavailable, Unauthorized
from api_gateway.stores import StoreUnavailable
from api_gateway.stores.memory import MemoryStore

PEPPER = b"p" * 40
CONFIG = ApiKeysConfig(pepper=PEPPER.decode(), recheck_ms=5000)
T0 = 1_800_000_000.0  # wall-clock seconds of the tests' "now"


class Clock:
    def __init__(self) -> None:
        self.ms = 0.0

    def __call__(self) -> float:
        return self.ms

    def wall(self) -> float:
        return T0 + self.ms / 1000


def record(key: str, **changes: object) -> KeyRecord:
    made = KeyRecord(key_id_of(key.encode()), "tenant-1", "partner", (), "", T0, hash=hashed(key))
    return replace(made, **changes)  # type: ignore[arg-type]


def hashed(key: str) -> str:
    return digest(PEPPER, key.encode())


# --- the key ---------------------------------------------------------------------------------


def test_a_new_key_is_the_prefix_its_id_and_32_random_bytes_in_base62() -> None:
    key_id = new_id()
    key = new_key(key_id)
    assert re.fullmatch(r"ttk_[0-9A-Za-z]{12}_[0-9A-Za-z]{43}", key)
    assert len(key) == KEY_LENGTH == 60
    assert key_id_of(key.encode()) == key_id
    assert new_key(key_id) != key
    assert base62(b"\xff" * 32, 43)  # the largest secret fits the width
    with pytest.raises(ValueError):
        base62(b"\xff" * 33, 43)


@pytest.mark.parametrize(
    ("sent", "detail"),
    [
        (b"ttx_" + b"a" * 12 + b"_" + b"b" * 43, "starts with ttk_"),
        (b"Bearer ttk_abc", "starts with ttk_"),
        (b"", "starts with ttk_"),
        (b"ttk_" + b"a" * 12 + b"_" + b"b" * 42, "60 characters"),
        (b"ttk_" + b"a" * 12 + b"_" + b"b" * 4000, "60 characters"),
        (b"ttk_" + b"a" * 12 + b"_" + b"b" * 42 + b"!", "letters or digits"),
        (b"ttk_" + b"a" * 11 + b"-_" + b"b" * 43, "letters or digits"),
        (b"ttk_" + b"a" * 13 + b"b" * 43, "letters or digits"),
        (b"ttk_" + b"a" * 12 + b"_" + b"b" * 42 + b"\xc3", "letters or digits"),
    ],
)
def test_a_key_of_the_wrong_shape_is_refused_without_echoing_it(sent: bytes, detail: str) -> None:
    with pytest.raises(Unauthorized) as refused:
        key_id_of(sent)
    assert detail in refused.value.detail
    assert "b" * 10 not in refused.value.detail


def test_the_wrong_shape_never_reaches_the_store(tmp_path: Path) -> None:
    store = CountingStore(tmp_path / "keys.db")
    keys = ApiKeys(store, CONFIG, MemoryStore())
    with pytest.raises(Unauthorized):
        run(keys.check(b"ttk_short", "/integrations"))
    assert store.gets == 0


def test_only_a_keyed_hash_is_stored_and_compared_in_constant_time() -> None:
    key = new_key(new_id())
    expected = hmac.new(PEPPER, key.encode(), hashlib.sha256).hexdigest()
    assert hashed(key) == expected
    assert digest(b"q" * 40, key.encode()) != expected  # another pepper, another hash
    assert same_digest(expected, expected)
    assert not same_digest(expected, expected[:-1] + ("0" if expected[-1] != "0" else "1"))
    fields = record(key).to_fields()
    assert key not in "".join(fields.values())
    assert key.split("_")[2] not in "".join(fields.values())


# --- the record's rules -----------------------------------------------------------------------


def test_a_key_works_until_it_expires() -> None:
    key = new_key(new_id())
    expiring = record(key, expires_at=T0 + 60)
    assert expiring.refusal(hashed(key), T0 + 59.9) is None
    assert expiring.refusal(hashed(key), T0 + 60) == "the API key has expired"
    assert record(key).refusal(hashed(key), T0 + 10**9) is None  # no expiry


def test_a_revoked_key_is_refused_and_a_wrong_secret_looks_unknown() -> None:
    key = new_key(new_id())
    other = new_key(key_id_of(key.encode()))
    assert record(key, revoked_at=T0).refusal(hashed(key), T0) == "the API key was revoked"
    # Whoever does not hold the secret learns nothing of the record's state.
    assert record(key, revoked_at=T0).refusal(hashed(other), T0) == UNKNOWN


def test_after_a_rotation_the_old_key_works_for_the_grace_period_only() -> None:
    old = new_key(new_id())
    new = new_key(key_id_of(old.encode()))
    rotated = record(old).rotated(hashed(new), T0, grace_s=3600)
    assert rotated.refusal(hashed(new), T0) is None
    assert rotated.refusal(hashed(old), T0 + 3599) is None
    assert "grace period is over" in (rotated.refusal(hashed(old), T0 + 3600) or "")
    assert rotated.refusal(hashed(new), T0 + 10**6) is None
    again = rotated.rotated(hashed(new_key(rotated.id)), T0 + 10, grace_s=0)
    assert again.refusal(hashed(old), T0 + 10) == UNKNOWN  # two rotations: the first key is gone
    assert again.refusal(hashed(new), T0 + 10) is not None  # grace 0: at once


def test_a_record_round_trips_through_its_stored_fields_and_junk_is_refused() -> None:
    key = new_key(new_id())
    original = record(key, routes=("/integrations", "/search"), rate="3/60s", expires_at=T0 + 5)
    assert record_of(original.to_fields()) == original
    for broken in ({"tenant": "a b"}, {"id": "short"}):
        with pytest.raises(ValueError):
            record_of({**original.to_fields(), **broken})
    fields = original.to_fields()
    del fields["hash"]
    with pytest.raises(ValueError):
        record_of(fields)


# --- the checker --------------------------------------------------------------------------


class CountingStore:
    """The real embedded store, counting lookups and able to fail like a store that is away.

    It wraps the store rather than subclass it: compiled, an interpreted class cannot inherit
    from a compiled one (COMPILED.md)."""

    def __init__(self, path: Path) -> None:
        self.inner = SqliteKeys(str(path))
        self.gets, self.failing = 0, False

    async def get(self, key_id: str) -> KeyRecord | None:
        self.gets += 1
        if self.failing:
            raise StoreUnavailable("away")
        return await self.inner.get(key_id)

    async def put(self, record: KeyRecord) -> None:
        await self.inner.put(record)

    async def records(self) -> list[KeyRecord]:
        return await self.inner.records()

    async def touch(self, key_id: str, when_s: float) -> None:
        await self.inner.touch(key_id, when_s)

    async def close(self) -> None:
        await self.inner.close()


def checker(tmp_path: Path, clock: Clock) -> tuple[ApiKeys, CountingStore]:
    store = CountingStore(tmp_path / "keys.db")
    return ApiKeys(store, CONFIG, MemoryStore(), clock, clock.wall), store


def test_claims_name_the_key_its_tenant_and_its_rate(tmp_path: Path) -> None:
    clock = Clock()
    keys, store = checker(tmp_path, clock)
    key = new_key(new_id())
    run(store.put(record(key, rate="3/60s")))
    claims = run(keys.check(key.encode(), "/integrations"))
    key_id = key_id_of(key.encode())
    assert (claims.user_id, claims.tenant_id, claims.key_id) == (
        "key:" + key_id,
        "tenant-1",
        key_id,
    )
    assert claims.key_rate == (3, 60_000)
    assert claims.role == "" and claims.email == ""


def test_a_record_is_reread_after_recheck_ms_so_a_revocation_takes_hold(tmp_path: Path) -> None:
    clock = Clock()
    keys, store = checker(tmp_path, clock)
    key = new_key(new_id())
    run(store.put(record(key)))
    run(keys.check(key.encode(), "/integrations"))
    run(store.put(record(key, revoked_at=T0)))
    clock.ms = 4999
    run(keys.check(key.encode(), "/integrations"))  # still the cached record
    assert store.gets == 1
    clock.ms = 5000
    with pytest.raises(Unauthorized, match="revoked"):
        run(keys.check(key.encode(), "/integrations"))
    assert store.gets == 2


def test_unknown_ids_are_cached_briefly(tmp_path: Path) -> None:
    clock = Clock()
    keys, store = checker(tmp_path, clock)
    key = new_key(new_id()).encode()
    for _ in range(5):
        with pytest.raises(Unauthorized, match=UNKNOWN):
            run(keys.check(key, "/integrations"))
    assert store.gets == 1
    clock.ms = 1000
    with pytest.raises(Unauthorized):
        run(keys.check(key, "/integrations"))
    assert store.gets == 2


def test_concurrent_checks_of_one_id_share_one_lookup(tmp_path: Path) -> None:
    clock = Clock()
    keys, store = checker(tmp_path, clock)
    key = new_key(new_id())
    run(store.put(record(key)))

    async def many() -> None:
        await asyncio.gather(*(keys.check(key.encode(), "/search") for _ in range(20)))

    run(many())
    assert store.gets == 1


def test_a_new_key_after_rotation_works_without_waiting_for_the_recheck(tmp_path: Path) -> None:
    clock = Clock()
    keys, store = checker(tmp_path, clock)
    old = new_key(new_id())
    new = new_key(key_id_of(old.encode()))
    run(store.put(record(old)))
    run(keys.check(old.encode(), "/integrations"))
    run(store.put(record(old).rotated(hashed(new), T0, 60)))
    clock.ms = 1000  # a second after the load: one reload allowed
    run(keys.check(new.encode(), "/integrations"))
    assert store.gets == 2
    wrong = new_key(key_id_of(old.encode())).encode()
    for _ in range(10):  # wrong secrets reload at most once a second
        with pytest.raises(Unauthorized):
            run(keys.check(wrong, "/integrations"))
    assert store.gets == 2


def test_a_key_restricted_to_routes_is_forbidden_elsewhere(tmp_path: Path) -> None:
    clock = Clock()
    keys, store = checker(tmp_path, clock)
    key = new_key(new_id())
    run(store.put(record(key, routes=("/integrations",))))
    run(keys.check(key.encode(), "/integrations"))
    with pytest.raises(Forbidden):
        run(keys.check(key.encode(), "/search"))


def test_store_away_a_recent_key_still_works_then_503_never_500(tmp_path: Path) -> None:
    clock = Clock()
    keys, store = checker(tmp_path, clock)
    key = new_key(new_id())
    other = new_key(new_id())
    run(store.put(record(key)))
    run(keys.check(key.encode(), "/integrations"))
    store.failing = True
    clock.ms = 4000
    run(keys.check(key.encode(), "/integrations"))
    with pytest.raises(ServiceUnavailable):
        run(keys.check(other.encode(), "/integrations"))
    clock.ms = 5000
    with pytest.raises(ServiceUnavailable):
        run(keys.check(key.encode(), "/integrations"))
    store.failing = False
    run(keys.check(key.encode(), "/integrations"))


def test_last_used_is_written_at_most_once_a_minute_off_the_request_path(tmp_path: Path) -> None:
    clock = Clock()
    keys, store = checker(tmp_path, clock)
    key = new_key(new_id())
    run(store.put(record(key)))

    async def use(times: int) -> None:
        for _ in range(times):
            await keys.check(key.encode(), "/integrations")
        await asyncio.gather(*keys.tasks)

    run(use(3))
    assert run(store.get(key_id_of(key.encode()))).last_used == T0  # type: ignore[union-attr]
    clock.ms = 59_000
    run(use(1))
    assert run(store.get(key_id_of(key.encode()))).last_used == T0  # type: ignore[union-attr]
    clock.ms = 60_000
    run(use(1))
    assert run(store.get(key_id_of(key.encode()))).last_used == T0 + 60  # type: ignore[union-attr]


# --- the key's own limit --------------------------------------------------------------------


def test_a_keys_own_rate_applies_by_its_id_and_other_requests_pass() -> None:
    from support.resilience import request

    from api_gateway.apikeys.limit import ApiKeyLimit
    from api_gateway.errors import RateLimited
    from api_gateway.types import Claims, Request, Response

    async def answer(request: Request) -> Response:
        return Response(200, [])

    limit = ApiKeyLimit(MemoryStore(lambda: 0.0), (1000, 60_000))

    def keyed(key_id: str) -> Request:
        r = request()
        r.claims = Claims("key:" + key_id, "t", "", "", T0, key_id, (3, 60_000))
        return r

    for _ in range(3):
        assert run(limit(keyed("AAAAAAAAAAAA"), answer)).status == 200
    with pytest.raises(RateLimited) as refused:
        run(limit(keyed("AAAAAAAAAAAA"), answer))
    assert dict(refused.value.headers)[b"ratelimit-limit"] == b"3"
    assert run(limit(keyed("BBBBBBBBBBBB"), answer)).status == 200  # its own count
    for _ in range(10):  # not a key: not counted
        assert run(limit(request(), answer)).status == 200
    user = request()
    user.claims = Claims("u1", "t", "user", "", T0)
    assert run(limit(user, answer)).status == 200


class SlowStore(CountingStore):
    """Lookups wait until released; last-used writes fail."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.release = asyncio.Event()

    async def get(self, key_id: str) -> KeyRecord | None:
        self.gets += 1
        await self.release.wait()
        return None

    async def touch(self, key_id: str, when_s: float) -> None:
        raise StoreUnavailable("read-only")


def test_lookups_in_flight_are_bounded_and_the_rest_get_503_at_once(tmp_path: Path) -> None:
    store = SlowStore(tmp_path / "keys.db")
    keys = ApiKeys(store, CONFIG, MemoryStore(), Clock(), max_loads=4)

    async def flood() -> list[BaseException | object]:
        checks = [keys.check(new_key(new_id()).encode(), "/search") for _ in range(10)]
        tasks = [asyncio.ensure_future(c) for c in checks]
        for _ in range(3):  # the checks start, then their lookups (tasks of their own)
            await asyncio.sleep(0)
        store.release.set()
        return await asyncio.gather(*tasks, return_exceptions=True)

    outcomes = run(flood())
    assert store.gets == 4
    assert sum(isinstance(o, ServiceUnavailable) for o in outcomes) == 6
    assert sum(isinstance(o, Unauthorized) for o in outcomes) == 4


def test_the_cache_of_unknown_ids_is_bounded(tmp_path: Path) -> None:
    clock = Clock()
    store = CountingStore(tmp_path / "keys.db")
    keys = ApiKeys(store, CONFIG, MemoryStore(), clock, clock.wall, max_entries=50)
    for _ in range(500):
        with pytest.raises(Unauthorized):
            run(keys.check(new_key(new_id()).encode(), "/search"))
    assert len(keys.lookup.cache) <= 50


def test_a_failing_last_used_write_does_not_fail_the_request(tmp_path: Path) -> None:
    clock = Clock()
    store = SlowStore(tmp_path / "keys.db")
    store.release.set()
    keys = ApiKeys(store, CONFIG, MemoryStore(), clock, clock.wall)
    key = new_key(new_id())

    async def found(key_id: str) -> KeyRecord | None:
        return record(key)

    store.get = found  # type: ignore[method-assign]

    async def use() -> None:
        await keys.check(key.encode(), "/integrations")
        assert len(keys.tasks) == 1  # the write runs after the answer, not before it
        await asyncio.gather(*keys.tasks, return_exceptions=True)
        await asyncio.sleep(0)

    run(use())
    assert not keys.tasks

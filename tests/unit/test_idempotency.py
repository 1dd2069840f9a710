"""The idempotency core (key syntax, fingerprints, records, verdicts) and the in-memory store on
an injected clock."""

from __future__ import annotations

import asyncio

import pytest

from api_gateway import idempotency as core
from api_gateway.stores.idempotency import ENTRY_OVERHEAD, MemoryIdempotencyStore

PRINT = core.fingerprint("POST", b"/api/v1/orders", b'{"seats": 2}')


@pytest.mark.parametrize("key", [b"a", b"A-b_9", b"k" * 128, b"0" * 64])
def test_valid_keys(key: bytes) -> None:
    assert core.valid_key(key)


@pytest.mark.parametrize(
    "key", [b"", b"k" * 129, b"a b", b"a\tb", b"a\x00b", b"a\x7fb", b"a;b", b"\xc3\xbc", b"a.b"]
)
def test_invalid_keys(key: bytes) -> None:
    assert not core.valid_key(key)


def test_the_fingerprint_covers_method_target_and_body() -> None:
    same = core.fingerprint("POST", b"/api/v1/orders", b'{"seats": 2}')
    assert same == PRINT and len(PRINT) == 32
    assert core.fingerprint("PATCH", b"/api/v1/orders", b'{"seats": 2}') != PRINT
    assert core.fingerprint("POST", b"/api/v1/orders?x=1", b'{"seats": 2}') != PRINT
    assert core.fingerprint("POST", b"/api/v1/orders", b'{"seats": 3}') != PRINT
    # No shifting of bytes between target and body gives the same text.
    assert core.fingerprint("POST", b"/a\nb", b"") != core.fingerprint("POST", b"/a", b"b")


def test_record_keys_cannot_be_confused() -> None:
    assert core.record_key("t", "u:1", "k") != core.record_key("t:u", "1", "k")
    assert core.record_key("t", "u", "k").startswith("gw:idem:{")
    braced = core.record_key("t}", "u%", "k")
    assert braced == "gw:idem:{2:t%7D:u%25:k}" and braced.count("}") == 1


def test_a_done_record_round_trips_with_a_binary_body() -> None:
    body = bytes(range(256)) * 3
    headers = [(b"content-type", b"application/octet-stream"), (b"x-order", b"\x00\xff")]
    value = core.done_value(PRINT, 201, headers, body)
    assert core.verdict(value, PRINT) == core.REPLAY
    answer = core.decode_done(value)
    assert answer is not None
    assert (answer.status, answer.headers, answer.body) == (201, headers, body)


def test_a_truncated_record_does_not_decode() -> None:
    value = core.done_value(PRINT, 200, [(b"content-type", b"text/plain")], b"")
    assert core.decode_done(value[:-3]) is None


def test_verdicts() -> None:
    pending = core.pending_value(PRINT)
    other = core.fingerprint("POST", b"/api/v1/orders", b"other")
    assert core.verdict(None, PRINT) == core.CLAIMED
    assert core.verdict(pending, PRINT) == core.IN_FLIGHT
    assert core.verdict(pending, other) == core.MISMATCH
    assert core.verdict(core.done_value(PRINT, 200, [], b""), other) == core.MISMATCH
    not_kept = core.not_kept_value(PRINT, 200)
    assert core.verdict(not_kept, PRINT) == core.ANSWER_NOT_KEPT
    assert core.kept_status(not_kept) == 200
    assert core.verdict(b"garbage", PRINT) == core.UNREADABLE
    assert core.verdict(b"X" + PRINT, PRINT) == core.UNREADABLE


def test_claims_carry_distinct_owners() -> None:
    assert core.pending_value(PRINT) != core.pending_value(PRINT)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_memory_store_claims_completes_releases_and_expires() -> None:
    clock = Clock()
    store = MemoryIdempotencyStore(100, 1 << 20, clock)
    mine, theirs = core.pending_value(PRINT), core.pending_value(PRINT)
    done = core.done_value(PRINT, 200, [], b"ok")

    async def story() -> None:
        assert await store.claim("k", mine, 1000) is None
        assert await store.claim("k", theirs, 1000) == mine
        assert not await store.complete("k", theirs, done, 5000)  # not theirs to complete
        await store.release("k", theirs)  # nor to release
        assert await store.claim("k", theirs, 1000) == mine
        assert await store.complete("k", mine, done, 5000)
        clock.now = 4999
        assert await store.claim("k", theirs, 1000) == done
        clock.now = 5000
        assert await store.claim("k", theirs, 1000) is None  # expired: free again
        await store.release("k", theirs)
        assert await store.claim("k", mine, 1000) is None
        clock.now = 6001  # a claim lapses after its ttl (the gateway died mid-request)
        assert await store.claim("k", theirs, 1000) is None
        assert not await store.complete("k", mine, done, 5000)

    asyncio.run(story())


def test_the_memory_store_is_bounded_by_entries_and_bytes() -> None:
    store = MemoryIdempotencyStore(3, 10 * (ENTRY_OVERHEAD + 100), Clock())
    value = b"v" * 90

    async def story() -> None:
        for n in range(5):
            await store.claim(f"k{n}", value, 1000)
        assert list(store.entries) == ["k2", "k3", "k4"]
        big = b"b" * (5 * ENTRY_OVERHEAD)
        await store.claim("big", big, 1000)
        assert store.size <= store.max_bytes
        assert "big" in store.entries
        assert store.size == sum(
            len(k) + len(v) + ENTRY_OVERHEAD for k, (v, _) in store.entries.items()
        )

    asyncio.run(story())

"""The verified-token cache: bounded in entries and bytes, the tokens in use kept."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from api_gateway.types import Claims
from api_gateway.verified import ENTRY_OVERHEAD, VerifiedTokens, entry_cost


def claims(user: str) -> Claims:
    return Claims(user, "tenant-1", "user", "", 2_000_000_000.0)


def key(n: int, length: int = 40) -> bytes:
    return b"Bearer " + str(n).encode().rjust(length, b"t")


def test_a_remembered_token_is_one_lookup_away() -> None:
    cache = VerifiedTokens(10, 1 << 20)
    first = claims("u1")
    cache.put(key(1), first)
    assert cache.get(key(1)) is first
    assert cache.get(key(2)) is None
    assert cache.cached_bytes == entry_cost(key(1))


@given(
    st.lists(st.tuples(st.integers(0, 40), st.integers(1, 400), st.booleans()), max_size=200),
    st.integers(1, 12),
    st.integers(0, 6 * (ENTRY_OVERHEAD + 800)),
)
def test_it_never_exceeds_its_entries_or_bytes(
    operations: list[tuple[int, int, bool]], capacity: int, max_bytes: int
) -> None:
    cache = VerifiedTokens(capacity, max_bytes)
    for n, length, read in operations:
        if read:
            cache.get(key(n, length))
        else:
            cache.put(key(n, length), claims(str(n)))
        assert len(cache) <= capacity
        assert cache.cached_bytes <= max_bytes
        assert cache.cached_bytes == sum(entry_cost(k) for k in cache)
        assert not cache.young.keys() & cache.old.keys()


def test_tokens_in_use_survive_a_flood_of_new_users() -> None:
    cache = VerifiedTokens(1000, 1 << 30)
    hot = [key(-n) for n in range(1, 51)]
    for k in hot:
        cache.put(k, claims("hot"))
    for n in range(50_000):
        cache.put(key(n), claims(str(n)))
        if n % 500 == 0:
            assert all(cache.get(k) is not None for k in hot)
    assert all(cache.get(k) is not None for k in hot)
    assert len(cache) == 1000


def test_the_bytes_bound_turns_the_young_generation_over() -> None:
    big = 4000
    cache = VerifiedTokens(1000, 3 * (ENTRY_OVERHEAD + 2 * big))
    for n in range(10):
        cache.put(key(n, big), claims(str(n)))
        assert len(cache) <= 3
    assert cache.get(key(9, big)) is not None


def test_an_entry_larger_than_the_whole_cache_is_not_kept() -> None:
    cache = VerifiedTokens(10, 100)
    cache.put(key(1), claims("u"))
    assert len(cache) == 0 and cache.cached_bytes == 0


def test_forget_and_clear() -> None:
    cache = VerifiedTokens(2, 1 << 20)
    for n in range(3):
        cache.put(key(n), claims(str(n)))
    for k in list(cache):
        cache.forget(k)
    assert len(cache) == 0 and cache.cached_bytes == 0
    cache.put(key(1), claims("u"))
    cache.clear()
    assert len(cache) == 0 and cache.cached_bytes == 0

"""The bounded memo: bounded in entries, hot entries kept when full, bounded work per call."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api_gateway.memo import Memo


def test_a_remembered_value_is_found() -> None:
    memo: Memo[str, int] = Memo(4)
    memo.put("a", 1)
    assert memo.get("a") == 1
    assert memo.get("b") is None
    assert "a" in memo and "b" not in memo


@pytest.mark.parametrize("capacity", [1, 2, 5, 64])
def test_it_never_holds_more_than_its_capacity(capacity: int) -> None:
    memo: Memo[int, int] = Memo(capacity)
    for n in range(10 * capacity + 3):
        memo.put(n, n)
        assert len(memo) <= capacity
    assert len(memo) == capacity


def test_entries_in_use_survive_a_flood_of_new_ones() -> None:
    memo: Memo[str, str] = Memo(100)
    hot = [f"hot-{n}" for n in range(10)]
    for key in hot:
        memo.put(key, key.upper())
    for n in range(10_000):
        memo.put(f"cold-{n}", "x")
        if n % 50 == 0:  # each hot key asked for at least once per 50 new keys
            for key in hot:
                assert memo.get(key) == key.upper()
    assert all(memo.get(key) == key.upper() for key in hot)
    assert len(memo) <= 100


def test_an_unused_entry_is_forgotten_once_the_memo_turns_over() -> None:
    memo: Memo[str, int] = Memo(10)
    memo.put("once", 1)
    for n in range(20):
        memo.put(f"new-{n}", n)
    assert memo.get("once") is None


def test_the_old_generation_is_empty_when_the_young_one_turns() -> None:
    """Nothing is ever freed in bulk: by each turn every old entry was dropped one by one."""
    memo: Memo[int, int] = Memo(8)
    for n in range(100):
        young_before = memo.young
        memo.put(n, n)
        if memo.old is young_before:  # it just turned
            assert len(memo.young) == 1 and len(memo.old) == 7  # one made room


def test_setdefault_keeps_the_first_value() -> None:
    memo: Memo[bytes, bytes] = Memo(4)
    first = b"x" * 3
    assert memo.setdefault(b"k", first) is first
    assert memo.setdefault(b"k", b"other") is first


def test_put_replaces_a_value_in_either_generation() -> None:
    memo: Memo[str, int] = Memo(2)
    memo.put("a", 1)
    memo.put("b", 2)
    memo.put("c", 3)  # turns: a and b are old, one of them made room
    memo.put("a", 10)
    memo.put("b", 20)
    assert memo.get("b") == 20
    assert memo.get("a") in (10, None)  # never the value it replaced
    assert len(memo) <= 2


def test_clear_forgets_everything() -> None:
    memo: Memo[str, int] = Memo(4)
    memo.put("a", 1)
    memo.clear()
    assert len(memo) == 0 and memo.get("a") is None


@given(st.lists(st.tuples(st.booleans(), st.integers(0, 30)), max_size=300), st.integers(1, 12))
def test_it_agrees_with_a_dict_on_what_it_still_holds(
    operations: list[tuple[bool, int]], capacity: int
) -> None:
    memo: Memo[int, int] = Memo(capacity)
    truth: dict[int, int] = {}
    for version, (write, key) in enumerate(operations):
        if write:
            memo.put(key, version)
            truth[key] = version
        else:
            found = memo.get(key)
            assert found is None or found == truth[key]
        assert len(memo) <= capacity
        assert not memo.young.keys() & memo.old.keys()
    # The last value written is always remembered.
    if operations and operations[-1][0]:
        assert memo.get(operations[-1][1]) == truth[operations[-1][1]]

"""The verified-token cache: the hot set of a real user base, bounded in entries and in bytes.

Two generations (as ``memo.py``), keyed by the canonical ``Authorization`` value: a token
verified again within a generation is one dictionary lookup; one asked for from the old
generation moves to the young one, so the tokens in use survive each turn, and each insertion
drops old entries not asked for since the turn until the cache fits again (a bounded number:
an entry costs at least ``ENTRY_OVERHEAD``, at most a longest token's). Nothing sweeps the whole
cache: an expired token goes when it is asked for (the verifier checks every hit's expiry) or
when its generation makes room, whichever comes first.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

from api_gateway.types import Claims

# What a cached token costs beyond its key's bytes: the dictionary slots, the Claims object,
# its strings and its identity lines. Measured with tracemalloc: about 620 bytes in all for a
# 236-byte HS256 token (the key object about 280, the rest about 340, tenant and role shared).
# Claims are decoded from the token, so their strings are never longer than it: ``entry_cost``
# (the key, its length again, and this) bounds an entry from above.
ENTRY_OVERHEAD: Final = 384


def entry_cost(key: bytes) -> int:
    return 2 * len(key) + ENTRY_OVERHEAD


class VerifiedTokens:
    """At most ``capacity`` entries of at most ``max_bytes`` (by ``entry_cost``) together."""

    __slots__ = ("capacity", "max_bytes", "old", "old_bytes", "young", "young_bytes")

    def __init__(self, capacity: int, max_bytes: int) -> None:
        self.capacity = capacity
        self.max_bytes = max_bytes
        self.young: dict[bytes, Claims] = {}
        self.old: dict[bytes, Claims] = {}
        self.young_bytes = 0
        self.old_bytes = 0

    def __len__(self) -> int:
        return len(self.young) + len(self.old)

    def __iter__(self) -> Iterator[bytes]:
        yield from self.old
        yield from self.young

    def __contains__(self, key: bytes) -> bool:
        return key in self.young or key in self.old

    @property
    def cached_bytes(self) -> int:
        return self.young_bytes + self.old_bytes

    def get(self, key: bytes) -> Claims | None:
        claims = self.young.get(key)
        if claims is not None:
            return claims
        if self.old:
            claims = self.old.pop(key, None)
            if claims is not None:
                cost = entry_cost(key)
                self.old_bytes -= cost
                self._young(key, claims, cost)  # in use: it survives the old generation
        return claims

    def put(self, key: bytes, claims: Claims) -> None:
        cost = entry_cost(key)
        if self.capacity <= 0 or cost > self.max_bytes:
            return
        self.forget(key)
        self._young(key, claims, cost)

    def forget(self, key: bytes) -> None:
        if self.young.pop(key, None) is not None:
            self.young_bytes -= entry_cost(key)
        elif self.old.pop(key, None) is not None:
            self.old_bytes -= entry_cost(key)

    def clear(self) -> None:
        self.young = {}
        self.old = {}
        self.young_bytes = 0
        self.old_bytes = 0

    def _young(self, key: bytes, claims: Claims, cost: int) -> None:
        if len(self.young) >= self.capacity or self.young_bytes + cost > self.max_bytes:
            # The young generation is full: it becomes the old one. What is left of the old
            # one is less than this entry's cost (each insertion made room below): a few
            # entries at most.
            self.old = self.young
            self.old_bytes = self.young_bytes
            self.young = {}
            self.young_bytes = 0
        self.young[key] = claims
        self.young_bytes += cost
        old = self.old
        while old and (
            len(old) + len(self.young) > self.capacity
            or self.old_bytes + self.young_bytes > self.max_bytes
        ):
            # The most recent of the unused first: order within the old generation is not
            # tracked (popitem is O(1); taking the oldest would rescan what was taken before).
            dropped, _ = old.popitem()
            self.old_bytes -= entry_cost(dropped)

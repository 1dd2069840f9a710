"""A bounded memo that keeps its hot set: two generations of a dictionary each.

Memos on the request path map what clients send (addresses, header names, hosts, origins) to
what the gateway worked out from it once. Clients choose the keys, so a memo is bounded; one that
is cleared when full forgets its hot entries with the cold ones, and every request after that
pays for a miss at once. Here entries go to the *young* generation; when it is full it becomes
the *old* one and a new young one starts. An old entry asked for again moves back to the young
generation, so whatever is in use survives each turn; each insertion makes room by dropping one
old entry that was not asked for since the turn (``dict.popitem``: O(1), the work per call is
bounded whatever the size, and no moment frees the whole memo).

A hit in the young generation is one dictionary lookup. A value is never None: None means
absent, and callers that remember "no answer" store a marker of their own.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class Memo(Generic[K, V]):
    """At most ``capacity`` entries; the ones in use are kept when it is full."""

    __slots__ = ("capacity", "old", "young")

    def __init__(self, capacity: int) -> None:
        self.capacity = max(capacity, 1)
        self.young: dict[K, V] = {}
        self.old: dict[K, V] = {}

    def __len__(self) -> int:
        return len(self.young) + len(self.old)

    def __contains__(self, key: K) -> bool:
        return key in self.young or key in self.old

    def __iter__(self) -> Iterator[K]:
        yield from self.old
        yield from self.young

    def get(self, key: K) -> V | None:
        value = self.young.get(key)
        if value is not None:
            return value
        if self.old:
            value = self.old.pop(key, None)
            if value is not None:
                self._young(key, value)  # still in use: it survives the old generation
        return value

    def put(self, key: K, value: V) -> None:
        old = self.old
        if old:
            old.pop(key, None)
        self._young(key, value)

    def setdefault(self, key: K, value: V) -> V:
        """The value remembered for ``key``, remembering ``value`` when there is none."""
        found = self.get(key)
        if found is not None:
            return found
        self.put(key, value)
        return value

    def clear(self) -> None:
        """Forget everything (a reload, a withdrawn key): never how a full memo makes room."""
        self.young = {}
        self.old = {}

    def _young(self, key: K, value: V) -> None:
        young = self.young
        if len(young) >= self.capacity and key not in young:
            # The young generation is full: it becomes the old one. The old one is empty by
            # now (each insertion below dropped one of it), so nothing is freed here.
            self.old = young
            young = {}
            self.young = young
        young[key] = value
        old = self.old
        if old and len(old) + len(young) > self.capacity:
            old.popitem()  # the most recent of the unused: order within it is not tracked

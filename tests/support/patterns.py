"""Deterministic large bodies: generated on the fly, never held in memory whole."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterator

BLOCK = bytes(range(256)) * 256  # 64 KiB


def pattern_blocks(size: int, block: bytes = BLOCK) -> Iterator[bytes]:
    """Yield ``size`` bytes of the repeating pattern in blocks."""
    remaining = size
    while remaining > 0:
        piece = block if remaining >= len(block) else block[:remaining]
        remaining -= len(piece)
        yield piece


@functools.cache
def pattern_sha256(size: int) -> str:
    digest = hashlib.sha256()
    for piece in pattern_blocks(size):
        digest.update(piece)
    return digest.hexdigest()

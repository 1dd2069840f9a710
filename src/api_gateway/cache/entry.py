"""A cached answer and its compact wire form: version, kind, status, headers, body.

Whatever does not decode exactly (another version, a foreign or truncated value, a header that
could split the response) is ``None``: a miss, never an error and never a malformed answer.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from api_gateway.types import Headers

VERSION: Final = 1
ENTRY: Final = b"E"
VARY: Final = b"V"
_HEAD: Final = struct.Struct(
    ">BcHdIH"
)  # version, kind, status, stored at (ms), upstream age (s), count
_NAME: Final = struct.Struct(">H")
_VALUE: Final = struct.Struct(">I")
# Bytes that could split the response or a header line, by value (COMPILED.md §3: a one-byte
# ``bytes`` operand of ``in`` first fails as an integer, a raised and swallowed TypeError each).
CR: Final = ord("\r")
LF: Final = ord("\n")
NUL: Final = ord("\0")
COLON: Final = ord(":")
SPACE: Final = ord(" ")
TAB: Final = ord("\t")


class Entry:
    """A plain class, not a dataclass: decoded on every hit, and compiled, a dataclass's
    generated ``__init__`` would still run interpreted (COMPILED.md §4)."""

    __slots__ = ("age_s", "body", "headers", "status", "stored_at_ms")

    def __init__(
        self, status: int, headers: Headers, body: bytes, stored_at_ms: float, age_s: int
    ) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.stored_at_ms = stored_at_ms  # wall clock: shared by every gateway process
        self.age_s = age_s  # the upstream's Age when it was stored

    def fields(self) -> tuple[int, Headers, bytes, float, int]:
        return self.status, self.headers, self.body, self.stored_at_ms, self.age_s

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Entry) and self.fields() == other.fields()

    def __hash__(self) -> int:
        return hash((self.status, tuple(self.headers), self.body, self.stored_at_ms, self.age_s))

    def __repr__(self) -> str:
        return f"Entry({', '.join(repr(field) for field in self.fields())})"

    def age_at(self, now_ms: float) -> int:
        return self.age_s + max(0, int((now_ms - self.stored_at_ms) // 1000))


@dataclass(frozen=True, slots=True)
class Variants:
    """Stored under an answer's key when it has ``Vary``: the request headers it varies on."""

    names: tuple[bytes, ...]


def encode(entry: Entry) -> bytes:
    head = _HEAD.pack(
        VERSION, ENTRY, entry.status, entry.stored_at_ms, entry.age_s, len(entry.headers)
    )
    parts = [head]
    for name, value in entry.headers:
        parts += (_NAME.pack(len(name)), name, _VALUE.pack(len(value)), value)
    parts.append(entry.body)
    return b"".join(parts)


def encode_variants(variants: Variants) -> bytes:
    parts = [_HEAD.pack(VERSION, VARY, 0, 0.0, 0, len(variants.names))]
    for name in variants.names:
        parts += (_NAME.pack(len(name)), name)
    return b"".join(parts)


def decode(data: bytes) -> Entry | Variants | None:
    try:
        version, kind, status, stored_at_ms, age_s, count = _HEAD.unpack_from(data)
        if version != VERSION:
            return None
        offset = _HEAD.size
        if kind == VARY:
            names = []
            for _ in range(count):
                name, offset = _field(data, offset, _NAME)
                names.append(name)
            return Variants(tuple(names)) if offset == len(data) else None
        if kind != ENTRY or not 200 <= status <= 299:
            return None
        headers: Headers = []
        for _ in range(count):
            name, offset = _field(data, offset, _NAME)
            value, offset = _field(data, offset, _VALUE)
            headers.append((name, value))
    except (struct.error, ValueError):
        return None
    return Entry(status, headers, data[offset:], stored_at_ms, age_s)


def _field(data: bytes, offset: int, length: struct.Struct) -> tuple[bytes, int]:
    (size,) = length.unpack_from(data, offset)
    start = offset + length.size
    value = data[start : start + size]
    if len(value) != size or CR in value or LF in value or NUL in value:
        raise ValueError("not a header")
    if length is _NAME and (not value or COLON in value or SPACE in value or TAB in value):
        raise ValueError("not a header")
    return value, start + size

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
_FORBIDDEN = (b"\r", b"\n", b"\0")
_FORBIDDEN_IN_NAMES = (*_FORBIDDEN, b":", b" ", b"\t")


@dataclass(frozen=True, slots=True)
class Entry:
    status: int
    headers: Headers
    body: bytes
    stored_at_ms: float  # wall clock: shared by every gateway process
    age_s: int  # the upstream's Age when it was stored

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
    forbidden = _FORBIDDEN_IN_NAMES if length is _NAME else _FORBIDDEN
    if len(value) != size or any(c in value for c in forbidden) or (length is _NAME and not value):
        raise ValueError("not a header")
    return value, start + size

"""RESP2, the Redis wire protocol: commands out as arrays of bulk strings, replies parsed in.

redis-py spends 30-60 µs of CPU per command; this codec is written for the compiled build
(``COMPILED.md``), so a rate-limit script's reply of four integers costs a fraction of that.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Final, TypeAlias

MAX_LINE: Final = 64 * 1024  # a reply header longer than this is garbage, not a slow network
MAX_DIGITS: Final = 19  # a signed 64-bit integer, as Redis sends
# Reply type bytes and digits, by value (COMPILED.md §1, §3).
COLON: Final = ord(":")
ASTERISK: Final = ord("*")
DOLLAR: Final = ord("$")
MINUS: Final = ord("-")
ZERO: Final = ord("0")


@dataclass(frozen=True, slots=True)
class RespError:
    """An error reply (``-ERR ...``): a value, so one bad command cannot break the pipeline."""

    message: str


Reply: TypeAlias = "str | bytes | int | RespError | list[Reply] | None"


@dataclass(frozen=True, slots=True)
class Script:
    """A Lua script run by EVALSHA, sent whole again by EVAL when Redis lost its script cache."""

    source: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", hashlib.sha1(self.source.encode()).hexdigest())


class ProtocolError(Exception):
    """The server sent bytes that are not RESP2."""


class _Incomplete(Exception):
    pass


def bulk(value: bytes) -> bytes:
    """One bulk string, as sent inside a command."""
    return b"$%d\r\n%s\r\n" % (len(value), value)


def encode_command(*args: str | bytes | int) -> bytes:
    """A command as a RESP array of bulk strings (str is sent as UTF-8)."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        parts.append(bulk(arg if isinstance(arg, bytes) else str(arg).encode()))
    return b"".join(parts)


class RespParser:
    """Incremental RESP2 reply parser: feed bytes as they arrive, get back the complete replies.

    Simple strings come back as str, bulk strings as bytes, nil as None. Splitting at CRLF once
    is cheaper in Python than scanning reply by reply; an incomplete reply is kept and re-parsed
    on the next feed (replies here are small).
    """

    def __init__(self) -> None:
        self._buf = b""
        self._wanted = 0  # a large bulk reply is not re-parsed before all of it is here

    def feed(self, data: bytes) -> list[Reply]:
        buf = self._buf + data if self._buf else data
        if len(buf) < self._wanted:
            self._buf = buf
            return []
        lines = buf.split(b"\r\n")
        last = len(lines) - 1  # lines[last] is the unterminated tail, usually b""
        replies: list[Reply] = []
        i = 0
        try:
            while i < last:
                reply, i = self._reply(lines, i, last)
                replies.append(reply)
        except _Incomplete:
            pass
        if i == last and len(lines[last]) > MAX_LINE:
            raise ProtocolError("reply header too long")
        self._buf = b"\r\n".join(lines[i:])
        self._wanted = _bulk_end(self._buf)
        return replies

    def _reply(self, lines: list[bytes], i: int, last: int) -> tuple[Reply, int]:
        if i >= last:
            raise _Incomplete
        line, i = lines[i], i + 1
        kind = line[0] if line else 0
        if kind == COLON:
            return _integer(line), i
        if kind == ASTERISK:
            items: list[Reply] = []
            for _ in range(_integer(line)):  # a nil array (*-1) has no items either
                # Inlined: the rate-limit script's reply is integers (COMPILED.md §5).
                if i < last and lines[i][:1] == b":":
                    items.append(_integer(lines[i]))
                    i += 1
                    continue
                item, i = self._reply(lines, i, last)
                items.append(item)
            return (items if line != b"*-1" else None), i
        if kind == DOLLAR:
            return (None, i) if line == b"$-1" else self._bulk(lines, i, last, _integer(line))
        kind_byte = line[:1]
        if kind_byte == b"+":
            return line[1:].decode(errors="replace"), i
        if kind_byte == b"-":
            return RespError(line[1:].decode(errors="replace")), i
        raise ProtocolError(f"unknown reply type {kind_byte!r}")

    @staticmethod
    def _bulk(lines: list[bytes], i: int, last: int, size: int) -> tuple[bytes, int]:
        # split() also cut the payload at every CRLF inside it: glue the pieces back.
        if i >= last or size < 0:
            raise ProtocolError("bad bulk length") if size < 0 else _Incomplete
        pieces, length, i = [lines[i]], len(lines[i]), i + 1
        while length < size:  # joined once: gluing piece by piece is quadratic
            if i >= last:
                raise _Incomplete
            pieces.append(lines[i])
            length, i = length + 2 + len(lines[i]), i + 1
        if length != size:
            raise ProtocolError("bulk string longer than announced")
        return (pieces[0] if len(pieces) == 1 else b"\r\n".join(pieces)), i


def _integer(line: bytes) -> int:
    """The integer after a reply's type byte (``:42``, ``*4``, ``$-1``), digit by digit
    (COMPILED.md §3)."""
    size = len(line)
    start = 2 if size > 1 and line[1] == MINUS else 1
    if start >= size or size - start > MAX_DIGITS:
        raise ProtocolError(f"invalid integer {line[:40]!r}")
    value = 0
    for index in range(start, size):
        digit = line[index] - ZERO
        if digit < 0 or digit > 9:
            raise ProtocolError(f"invalid integer {line[:40]!r}")
        value = value * 10 + digit
    return -value if start == 2 else value


def _bulk_end(buf: bytes) -> int:
    """How long ``buf`` must be to hold the bulk string it starts with (0: not known)."""
    end = buf.find(b"\r\n", 0, 32)
    if buf[:1] != b"$" or end < 0 or not buf[1:end].isdigit():
        return 0
    return end + 2 + int(buf[1:end]) + 2

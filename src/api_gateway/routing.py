"""Path normalization and the route table: pure functions, decided once per request.

The canonical path is computed once and used for everything after it: the public-path decision,
the route match and the path sent upstream, so no two parts of the gateway can disagree about
what a request asked for.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

from api_gateway.errors import InvalidPath

T = TypeVar("T")

# Bytes are searched for one byte by its value: ``b"#" in target`` first tries the operand as an
# integer, and the TypeError it raises and swallows costs more than the search itself.
HASH: Final = ord("#")
BACKSLASH: Final = ord("\\")

_HEX: Final = frozenset(b"0123456789abcdefABCDEF")
_UNRESERVED: Final = frozenset(
    b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~"
)
# Decoded, these would change how the path splits or terminates, so their encoded forms are refused.
_AUTHORITY_END: Final = re.compile(rb"[/?]")
# Paths that are already canonical: segments of these characters, none empty and none starting
# with a dot. A table indexed by byte: one pass, no regular expression (which costs more than
# the rest of routing) and no method calls.
_PLAIN_NAME_BYTES: Final = frozenset(b"_~!$&'()*+,;=:@-0123456789") | frozenset(_UNRESERVED)
_PLAIN_TABLE: Final = bytes([1 if byte in _PLAIN_NAME_BYTES else 0 for byte in range(256)])
SLASH: Final = ord("/")
DOT: Final = ord(".")
_DOT_SEGMENTS = (b".", b"..")
_FORBIDDEN_DECODED: Final = frozenset(b"/\\#?") | frozenset(range(0x20)) | {0x7F}


def split_target(target: bytes) -> tuple[bytes, bytes]:
    """Split a request-target into (path, query), accepting origin- and absolute-form."""
    if HASH in target:
        raise InvalidPath("a fragment is not allowed in the request target")
    if target[:1] != b"/":  # startswith parses its arguments the slow way
        lowered = target[:8].lower()
        if not lowered.startswith((b"http://", b"https://")):
            raise InvalidPath("the request target must be an absolute path")
        authority_end = _AUTHORITY_END.search(target, lowered.index(b"//") + 2)
        target = b"/" if authority_end is None else target[authority_end.start() :]
        if target.startswith(b"?"):
            target = b"/" + target
    path, _, query = target.partition(b"?")
    return path, query


def target_authority(target: bytes) -> bytes | None:
    """The authority of an absolute-form target ``split_target`` accepted; None for a path."""
    if target[:1] == b"/":
        return None
    start = target.index(b"//") + 2
    end = _AUTHORITY_END.search(target, start)
    return target[start:] if end is None else target[start : end.start()]


def normalize(path: bytes) -> str:
    """Return the canonical form of a raw path, or raise ``InvalidPath``."""
    if is_plain(path):
        return path.decode("ascii")
    decoded = _decode(path)
    segments: list[bytes] = []
    for segment in decoded.split(b"/"):
        if segment == b"..":
            if segments:
                segments.pop()
        elif segment not in (b"", b"."):
            if segment[:1] == b"." and segment.partition(b";")[0] in _DOT_SEGMENTS:
                # `..;x` is a plain name to us but `..` to servers that strip path parameters
                # (Tomcat, Spring): `/public/..;/private` would pass as public and land elsewhere.
                raise InvalidPath("a dot segment with parameters is not allowed")
            segments.append(segment)
    trailing = decoded.endswith(b"/") or decoded.endswith(b"/.") or decoded.endswith(b"/..")
    canonical = b"/" + b"/".join(segments)
    if trailing and segments:
        canonical += b"/"
    return canonical.decode("ascii")


def is_plain(path: bytes) -> bool:
    """Already canonical: ``/``-separated segments of plain characters, none empty, none
    starting with a dot, and at most one trailing ``/``."""
    table = _PLAIN_TABLE
    previous = SLASH
    for index in range(len(path)):
        byte = path[index]
        if byte == SLASH:
            if previous == SLASH and index:
                return False  # an empty segment
        elif byte == DOT:
            if previous == SLASH:
                return False  # a dot segment, or a name starting with a dot
        elif not table[byte]:
            return False
        elif not index:
            return False  # not an absolute path
        previous = byte
    return True


def _decode(path: bytes) -> bytes:
    if BACKSLASH in path:
        raise InvalidPath("a backslash is not allowed in the path")
    out = bytearray()
    i, size = 0, len(path)
    while i < size:
        byte = path[i]
        if byte == 0x25:  # '%'
            pair = path[i + 1 : i + 3]
            if len(pair) != 2 or pair[0] not in _HEX or pair[1] not in _HEX:
                raise InvalidPath("the path holds an invalid percent-encoding")
            value = int(pair, 16)
            if value in _FORBIDDEN_DECODED:
                raise InvalidPath(f"the encoded character %{pair.decode().upper()} is not allowed")
            out += bytes((value,)) if value in _UNRESERVED else b"%" + pair.upper()
            i += 3
            continue
        if byte < 0x21 or byte == 0x7F:
            raise InvalidPath("a control character is not allowed in the path")
        out += b"%%%02X" % byte if byte > 0x7F else bytes((byte,))
        i += 1
    return bytes(out)


@dataclass(frozen=True, slots=True)
class PublicPaths:
    """Route-relative paths that skip authentication: exact, or a subtree written ``/x/*``."""

    exact: frozenset[str]
    subtrees: tuple[str, ...]
    everything: bool

    @classmethod
    def parse(cls, entries: Iterable[str]) -> PublicPaths:
        entries = tuple(entries)
        subtrees = tuple(e.removesuffix("/*") for e in entries if e.endswith("/*") and e != "/*")
        exact = frozenset(e for e in entries if not e.endswith("/*"))
        return cls(exact, subtrees, "/*" in entries)

    def __contains__(self, relative: str) -> bool:
        if self.everything:
            return True
        relative = relative.rstrip("/") or "/"
        if relative in self.exact:
            return True
        for subtree in self.subtrees:
            if relative == subtree or relative.startswith(subtree + "/"):
                return True
        return False


class RouteTable(Generic[T]):
    """Segment-exact longest-prefix match: ``/tickets`` holds ``/tickets/1``, not ``/ticketsX``."""

    def __init__(self) -> None:
        self.entries: dict[str, T] = {}

    def add(self, prefix: str, target: T) -> None:
        self.entries[prefix] = target

    def match(self, path: str) -> tuple[str, T] | None:
        candidate = path.rstrip("/") or "/"
        entries = self.entries
        while candidate:
            target = entries.get(candidate)
            if target is not None:
                return candidate, target
            candidate = candidate.rpartition("/")[0]  # paths start with "/": never not found
        return None

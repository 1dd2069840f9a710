"""Path normalization and the route table: pure functions, decided once per request.

The canonical path is computed once and used for everything after it: the public-path decision,
the route match and the path sent upstream, so no two parts of the gateway can disagree about
what a request asked for.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

from api_gateway.errors import InvalidPath

T = TypeVar("T")

# Bytes are searched for one byte by its value: ``b"#" in target`` first tries the operand as an
# integer, and the TypeError it raises and swallows costs more than the search itself.
HASH, BACKSLASH = ord("#"), ord("\\")

_HEX = frozenset(b"0123456789abcdefABCDEF")
_UNRESERVED = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~")
# Decoded, these would change how the path splits or terminates, so their encoded forms are refused.
_AUTHORITY_END = re.compile(rb"[/?]")
# Paths that are already canonical: segments of plain characters, none starting with a dot.
_PLAIN_PATH = re.compile(rb"(?:/[A-Za-z0-9_~!$&'()*+,;=:@-][A-Za-z0-9._~!$&'()*+,;=:@-]*)*/?")
_DOT_SEGMENTS = (b".", b"..")
_FORBIDDEN_DECODED = frozenset(b"/\\#?") | frozenset(range(0x20)) | {0x7F}


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
    if _PLAIN_PATH.fullmatch(path):
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

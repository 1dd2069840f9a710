"""Idempotency keys, the pure core: key syntax, fingerprints, the stored values and the verdict.

A key's record is one string value, whatever store holds it (memory or Redis):

    pending   b"P" fingerprint(32) owner(16)        the first request is still in flight
    done      b"D" fingerprint(32) status headers body   its final answer, replayed to repeats
    not kept  b"N" fingerprint(32) status            answered, but too large to keep

A claim either writes the caller's pending value (the key was free) or returns the value found,
and ``verdict`` turns that into what the policy does: forward, replay, 409 or 422. No I/O here.
"""

from __future__ import annotations

import hashlib
import os
import struct
from typing import Final

from api_gateway.types import Headers

MAX_KEY_LENGTH: Final = 128
PENDING: Final = ord("P")
DONE: Final = ord("D")
NOT_KEPT: Final = ord("N")
FINGERPRINT_SIZE: Final = 32
OWNER_SIZE: Final = 16
# The verdicts on a claim.
CLAIMED: Final = 0  # the key was free: this request goes upstream, its answer is kept
REPLAY: Final = 1  # the same request was answered: the kept answer, without the service
IN_FLIGHT: Final = 2  # the same request is still in flight: 409, try again shortly
MISMATCH: Final = 3  # the key was used for another request (method, path or body): 422
ANSWER_NOT_KEPT: Final = 4  # the same request was answered, too large to keep: 409
UNREADABLE: Final = 5  # a value no gateway wrote: treated as the store failing
_KEY_BYTES: Final = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
_STATUS: Final = struct.Struct(">HH")  # status, header count
_NAME: Final = struct.Struct(">H")
_VALUE: Final = struct.Struct(">I")
_PREFIX_SIZE: Final = 1 + FINGERPRINT_SIZE
# Fields of an answer that belong to one response, not to the kept one.
NOT_KEPT_HEADERS: Final = frozenset(
    {
        b"date",
        b"age",
        b"x-request-id",
        b"x-response-time",
        b"x-cache",
        b"connection",
        b"keep-alive",
        b"transfer-encoding",
        b"content-length",
        b"idempotency-replayed",
    }
)


def valid_key(value: bytes) -> bool:
    """1 to 128 of ``[A-Za-z0-9_-]``, the syntax the platform's clients already use."""
    if not 0 < len(value) <= MAX_KEY_LENGTH:
        return False
    return not value.translate(None, _KEY_BYTES)  # what is left once the allowed are deleted


def fingerprint(method: str, target: bytes, body: bytes) -> bytes:
    """SHA-256 over method, target and body: neither a method nor a target holds a newline, so
    no two requests share the hashed text, and a collision is SHA-256's."""
    digest = hashlib.sha256(method.encode("ascii"))
    digest.update(b"\n")
    digest.update(target)
    digest.update(b"\n")
    digest.update(body)
    return digest.digest()


def record_key(tenant: str, user: str, key: str) -> str:
    """The store key of one (tenant, user, key): the tenant's length makes it unambiguous (the
    user ends at the last colon, as a key holds none); braces are its cluster hash tag."""
    scope = f"{len(tenant)}:{tenant}:{user}:{key}"
    if "}" in scope or "%" in scope:
        scope = scope.replace("%", "%25").replace("}", "%7D")
    return "gw:idem:{" + scope + "}"


def pending_value(print_: bytes, owner: bytes | None = None) -> bytes:
    """A claim's value; ``owner`` tells this claim from a later one on the same key."""
    return b"P" + print_ + (owner if owner is not None else os.urandom(OWNER_SIZE))


def done_value(print_: bytes, status: int, headers: Headers, body: bytes) -> bytes:
    parts = [b"D", print_, _STATUS.pack(status, len(headers))]
    for name, value in headers:
        parts.append(_NAME.pack(len(name)))
        parts.append(name)
        parts.append(_VALUE.pack(len(value)))
        parts.append(value)
    parts.append(body)
    return b"".join(parts)


def not_kept_value(print_: bytes, status: int) -> bytes:
    return b"N" + print_ + _STATUS.pack(status, 0)


def verdict(found: bytes | None, print_: bytes) -> int:
    """What a claim that found ``found`` (None: it took the key) means for request ``print_``."""
    if found is None:
        return CLAIMED
    if len(found) < _PREFIX_SIZE or found[0] not in (PENDING, DONE, NOT_KEPT):
        return UNREADABLE
    if found[1:_PREFIX_SIZE] != print_:
        return MISMATCH
    kind = found[0]
    if kind == PENDING:
        return IN_FLIGHT
    return REPLAY if kind == DONE else ANSWER_NOT_KEPT


class Answer:
    """A kept answer, decoded."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: Headers, body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body


def decode_done(value: bytes) -> Answer | None:
    """The answer a done value holds; None when it does not decode exactly."""
    try:
        status, count = _STATUS.unpack_from(value, _PREFIX_SIZE)
        offset = _PREFIX_SIZE + _STATUS.size
        headers: Headers = []
        for _ in range(count):
            (size,) = _NAME.unpack_from(value, offset)
            offset += _NAME.size
            name = value[offset : offset + size]
            offset += size
            if len(name) != size:
                return None
            (size,) = _VALUE.unpack_from(value, offset)
            offset += _VALUE.size
            field = value[offset : offset + size]
            offset += size
            if len(field) != size:
                return None
            headers.append((name, field))
    except struct.error:
        return None
    if offset > len(value) or not 100 <= status <= 599:
        return None
    return Answer(status, headers, value[offset:])


def kept_status(value: bytes) -> int:
    """The status of a not-kept value's answer (0 when it does not say)."""
    if len(value) < _PREFIX_SIZE + _STATUS.size:
        return 0
    status: int = _STATUS.unpack_from(value, _PREFIX_SIZE)[0]
    return status


def kept_headers(headers: Headers) -> Headers:
    """An answer's fields as kept: without those of one response (date, request id, limits)."""
    return [
        (name, value)
        for name, value in headers
        if name not in NOT_KEPT_HEADERS
        and not name.startswith(b"ratelimit-")
        and not name.startswith(b"x-ratelimit-")
    ]

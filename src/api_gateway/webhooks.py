"""Stripe's webhook signatures, checked as Stripe's own libraries check them. Pure: no I/O, the
time is the caller's.

``Stripe-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>...][,v0=<hex>]``. Each ``v1`` is the
HMAC-SHA256, in lower-case hex, of ``<t>.<raw body>`` keyed with an endpoint secret
(``whsec_...``, its bytes as they are). Stripe sends one ``v1`` per secret the endpoint has
(two while a rolled secret is still valid); ``v0`` (test mode's legacy scheme) and any other
scheme are ignored. A ``t`` more than the tolerance away from now, in the past or the future,
is refused: a captured delivery cannot be replayed later, nor one signed ahead of time.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from typing import Final

import orjson

from api_gateway.types import Headers

SIGNATURE_HEADER: Final = b"stripe-signature"
V1: Final = b"v1"
T: Final = b"t"
# Up to year 33658 in seconds: longer is no time, and int() of it would cost for nothing.
MAX_T_DIGITS: Final = 12
MAX_EVENT_ID: Final = 255


class SignatureError(Exception):
    """Why a delivery is refused; the text is the 400's detail (it never names a secret)."""


class Signature:
    """A parsed ``Stripe-Signature``: the timestamp, as a number and as it is signed, and the
    ``v1`` candidates."""

    __slots__ = ("candidates", "stamp", "timestamp")

    def __init__(self, timestamp: int, stamp: bytes, candidates: list[bytes]) -> None:
        self.timestamp = timestamp
        self.stamp = stamp
        self.candidates = candidates


def signature_header(headers: Headers) -> bytes:
    """The one ``Stripe-Signature`` field; absent or repeated is refused (which one a service
    would read is a guess)."""
    found: bytes | None = None
    for name, value in headers:
        if name == SIGNATURE_HEADER:
            if found is not None:
                raise SignatureError("more than one Stripe-Signature header")
            found = value
    if found is None:
        raise SignatureError("the Stripe-Signature header is missing")
    return found


def parse_signature(header: bytes) -> Signature:
    stamp: bytes | None = None
    candidates: list[bytes] = []
    for item in header.split(b","):
        name, equals, value = item.strip().partition(b"=")
        if not equals or not name:
            raise SignatureError("the Stripe-Signature header is malformed")
        if name == T:
            if stamp is not None:
                raise SignatureError("the Stripe-Signature header holds more than one t")
            stamp = value
        elif name == V1:
            candidates.append(value)
    if stamp is None:
        raise SignatureError("the Stripe-Signature header has no timestamp (t)")
    if not stamp.isdigit() or len(stamp) > MAX_T_DIGITS:
        raise SignatureError("the Stripe-Signature timestamp (t) is not a number of seconds")
    if not candidates:
        raise SignatureError("the Stripe-Signature header has no v1 signature")
    timestamp = int(stamp)
    # Signed as Stripe's libraries rebuild it: the number in decimal, without leading zeros.
    return Signature(timestamp, b"%d" % timestamp, candidates)


class StripeSignatures:
    """An endpoint's secrets (several while one is rotated out) and the timestamp tolerance."""

    __slots__ = ("keys", "tolerance_s")

    def __init__(self, secrets: Sequence[str], tolerance_s: float) -> None:
        self.keys = [secret.encode("utf-8") for secret in secrets]
        self.tolerance_s = tolerance_s

    def check_time(self, signature: Signature, now_s: float) -> None:
        age = now_s - signature.timestamp
        if age > self.tolerance_s:
            raise SignatureError("the Stripe-Signature timestamp is outside the tolerance")
        if age < -self.tolerance_s:
            raise SignatureError("the Stripe-Signature timestamp is in the future")

    def matches(self, signature: Signature, body: bytes) -> bool:
        """Whether any ``v1`` is the signature of ``body`` under any secret. One HMAC per
        secret, fed in pieces: the body is never copied."""
        for key in self.keys:
            mac = hmac.new(key, signature.stamp, hashlib.sha256)
            mac.update(b".")
            mac.update(body)
            expected = mac.hexdigest().encode("ascii")
            for candidate in signature.candidates:
                if hmac.compare_digest(expected, candidate):
                    return True
        return False


def event_id(body: bytes) -> str | None:
    """The event's ``id`` (``evt_...``), or None when the body has no usable one (such a
    delivery is forwarded as it is, never deduplicated)."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if type(document) is not dict:  # COMPILED.md §8
        return None
    found = document.get("id")
    if type(found) is not str or not 0 < len(found) <= MAX_EVENT_ID:
        return None
    return found

"""Stripe webhook signatures made as Stripe makes them: ``v1`` is the HMAC-SHA256 in hex of
``{t}.{raw body}`` keyed with the ``whsec_...`` secret's bytes."""

from __future__ import annotations

import hashlib
import hmac
import time

SECRET = "whsec_test_4eC39HqLyjWDarjtT1zdp7dc"
OLD_SECRET = "whsec_test_rotated_out_9f8e7d6c5b4a"


def v1(body: bytes, secret: str, t: int) -> str:
    return hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()


def stripe_signature(
    body: bytes, secrets: tuple[str, ...] = (SECRET,), t: int | None = None, v0: bool = False
) -> str:
    """The header Stripe sends: ``t=...,v1=...`` with one ``v1`` per secret (and a ``v0``)."""
    t = int(time.time()) if t is None else t
    parts = [f"t={t}", *(f"v1={v1(body, secret, t)}" for secret in secrets)]
    if v0:
        parts.append(f"v0={v1(body, 'whsec_legacy', t)}")
    return ",".join(parts)

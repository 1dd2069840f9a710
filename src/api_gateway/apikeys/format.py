"""The API key itself: ``ttk_<id>_<secret>``, made, recognised and hashed.

The id (12 base62 characters) is public: it names the stored record, the upstream hears it as
``x-api-key-id``, and the access log shows it. The secret is 32 random bytes in base62 (43
characters). Only HMAC-SHA256(pepper, whole key) is stored, so a leaked store opens nothing,
and a key's shape is checked before any lookup, so junk never reaches the store.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from typing import Final

from api_gateway.errors import Unauthorized

PREFIX: Final = "ttk_"
ALPHABET: Final = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
ID_LENGTH: Final = 12
SECRET_BYTES: Final = 32
SECRET_LENGTH: Final = 43  # 62**43 > 2**256: every 32-byte secret fits, zero-padded
KEY_LENGTH: Final = len(PREFIX) + ID_LENGTH + 1 + SECRET_LENGTH
KEY_SHAPE: Final = re.compile(rb"ttk_([0-9A-Za-z]{12})_[0-9A-Za-z]{43}")
ID_SHAPE: Final = re.compile(r"[0-9A-Za-z]{12}")


def base62(value: bytes, width: int) -> str:
    """``value`` as a big-endian number in ``width`` base62 digits."""
    number = int.from_bytes(value, "big")
    digits = []
    for _ in range(width):
        number, digit = divmod(number, 62)
        digits.append(ALPHABET[digit])
    if number:
        raise ValueError(f"{len(value)} bytes do not fit in {width} base62 digits")
    return "".join(reversed(digits))


def new_id() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(ID_LENGTH))


def new_key(key_id: str) -> str:
    """A fresh key for the record ``key_id``; shown once, never stored."""
    return f"{PREFIX}{key_id}_{base62(secrets.token_bytes(SECRET_BYTES), SECRET_LENGTH)}"


def key_id_of(key: bytes) -> str:
    """The id of a well-formed key; 401 for any other shape, saying what is wrong but never
    echoing what was sent (it may be a real key pasted into the wrong place)."""
    match = KEY_SHAPE.fullmatch(key)
    if match is not None:
        return match.group(1).decode("ascii")
    if not key.startswith(PREFIX.encode()):
        raise Unauthorized(f"an API key starts with {PREFIX}")
    if len(key) != KEY_LENGTH:
        raise Unauthorized(f"an API key is {KEY_LENGTH} characters long")
    raise Unauthorized(f"an API key is {PREFIX}, 12 letters or digits, _, 43 letters or digits")


def digest(pepper: bytes, key: bytes) -> str:
    """What is stored of a key: its HMAC-SHA256 under the pepper, in hex."""
    return hmac.new(pepper, key, hashlib.sha256).hexdigest()


def same_digest(computed: str, stored: str) -> bool:
    """Constant-time: how much of a guess matched must not show in the time taken."""
    return hmac.compare_digest(computed.encode("ascii"), stored.encode("ascii"))

"""The compact serialization of a token (RFC 7515 §7.1), read strictly: its shape, its base64url
segments and their JSON, refusing what parsers disagree on. Pure functions for ``tokens.py``.
"""

from __future__ import annotations

import binascii
import json
import json.scanner
from collections.abc import Callable
from typing import Any, Final

from api_gateway.errors import Unauthorized

DOT: Final = ord(".")
# Compact serialization, unpadded base64url (RFC 7515 §7.1): any other spelling of a token is
# refused before any decoding, so one token has one string (and one cache key). Checked in one
# C pass (a regex costs about 20 instructions a byte): a table that keeps the alphabet and the
# dot and changes every other byte must change nothing (deleting the alphabet instead builds a
# table per call); then there must be two dots, and no segment may be empty.
BASE64URL: Final = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
BASE64URL_OR_DOT: Final = bytes(
    [byte if byte in BASE64URL or byte == DOT else DOT for byte in range(256)]
)
TWO_DOTS: Final = b".."
BRACE: Final = ord("{")
# NumericDate is in seconds (RFC 7519 §2); a value past 9999-12-31 is milliseconds or junk, and
# would make a token that never expires.
MAX_NUMERIC_DATE: Final = 253_402_300_799
# base64url to base64: the shape check already admits nothing else, so the decoder's own
# alphabet check is all that is left to do (one pass, no intermediate copies).
URLSAFE: Final = bytes.maketrans(b"-_", b"+/")
PADDING: Final[tuple[bytes, ...]] = (b"", b"", b"==", b"=")
A2B_BASE64: Final = binascii.a2b_base64  # bound once: no module lookup per segment (§1)


def well_formed(token: bytes) -> bool:
    """Three non-empty segments of base64url, joined by dots, and nothing else."""
    return (
        token.translate(BASE64URL_OR_DOT) == token
        and token.count(DOT) == 2
        and token[0] != DOT
        and token[-1] != DOT
        and token.find(TWO_DOTS) < 0  # COMPILED.md §3: `in` tries an int first
    )


def b64decode(segment: bytes) -> bytes:
    """An unpadded base64url segment of a token that is ``well_formed``."""
    try:
        return A2B_BASE64(segment.translate(URLSAFE) + PADDING[len(segment) % 4])
    except binascii.Error as exc:  # a length of 4n+1 is no base64
        raise Unauthorized("the access token is not base64url") from exc


def numeric_date(name: str, value: object) -> float:
    """A claim in seconds since the epoch. An int is bounded before it becomes a float: one too
    large for a float must be refused, not overflow."""
    # A tuple, not ``int | float``: compiled, the union would be built at every call.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Unauthorized(f"the access token's '{name}' claim is not a number")
    in_range = (
        -MAX_NUMERIC_DATE <= value <= MAX_NUMERIC_DATE
        if isinstance(value, int)
        else abs(value) <= MAX_NUMERIC_DATE  # so written, NaN is refused too
    )
    if not in_range:
        raise Unauthorized(f"the access token's '{name}' claim is not a time in seconds")
    return float(value)


def parse_payload(data: bytes, part: str = "payload") -> dict[str, Any]:
    """A JSON object of the token, refusing what JSON parsers disagree on: a repeated name
    (the gateway and an upstream reading the forwarded token could see different tenants),
    NaN, Infinity."""
    try:
        # json.loads itself, less a new decoder (and its scanner) for every call, and less the
        # encoding guess when the first two bytes already say UTF-8 (an object's brace, then
        # not a NUL: json.detect_encoding's answer too).
        utf8 = len(data) > 1 and data[0] == BRACE and data[1] != 0
        text = data.decode("utf-8" if utf8 else json.detect_encoding(data), "surrogatepass")
        document = scanned(text) if utf8 else DECODER.decode(text)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise Unauthorized(f"the access token's {part} is refused: {exc}") from exc
    if not isinstance(document, dict):
        raise Unauthorized(f"the access token's {part} is not a JSON object")
    return document


def scanned(text: str) -> Any:
    """``DECODER.decode`` of a text that starts with its value (a brace): its scanner called
    directly, as ``raw_decode`` does, less the interpreted ``decode`` and its two whitespace
    matches. Anything after the value (whitespace, or extra data to refuse) is left to
    ``decode`` itself, so every answer and every error is ``decode``'s."""
    try:
        document, end = SCANNER(text, 0)
    except StopIteration as exc:
        raise json.JSONDecodeError("Expecting value", text, exc.value) from None
    return document if end == len(text) else DECODER.decode(text)


def unique_names(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) != len(pairs):
        raise ValueError("a claim is repeated")
    return document


def no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


DECODER: Final = json.JSONDecoder(object_pairs_hook=unique_names, parse_constant=no_constant)
# What DECODER.scan_once is (JSONDecoder.__init__ builds it so: parse_constant and
# object_pairs_hook are read from the decoder; typeshed types the argument as a scanner).
SCANNER: Final[Callable[[str, int], tuple[Any, int]]] = json.scanner.make_scanner(
    DECODER  # type: ignore[arg-type]
)

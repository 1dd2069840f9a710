"""JSON as a Node service re-writes it: ``JSON.stringify(JSON.parse(text))``.

The services' internal-auth validator hashes a JSON body as ``JSON.stringify`` of what their
framework parsed, not as the bytes that came in. For the compact JSON browsers send, the two are
the same bytes; for any other spelling of the same value (spaces, ``1.0``, ``\\u00e9``, a key
``"10"`` before ``"2"``) they differ, and so would the hash. This module gives the bytes the
validator hashes, from the bytes the gateway sends (which it never changes):

- numbers are doubles, written as ECMAScript's ``Number::toString`` does (``1.0`` is ``1``,
  ``1e21`` is ``1e+21``, an integer beyond 2**53 loses its precision, an overflow is ``null``);
- an object's keys that are array indices (canonical integers below 2**32 - 1) come first in
  ascending order, then the others in insertion order; a repeated key keeps its first place and
  its last value;
- strings are written with the same escapes (``"``, ``\\``, control characters), anything else
  as UTF-8, which orjson does too.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Final

import orjson

MAX_SAFE_INTEGER: Final = 2**53
MAX_INDEX: Final = 2**32 - 2


def restringify(body: bytes) -> bytes | None:
    """``JSON.stringify(JSON.parse(body))``; None when ``body`` is not JSON (or nests deeper
    than this can follow)."""
    try:
        return orjson.dumps(_as_js(orjson.loads(body)))
    except (orjson.JSONDecodeError, RecursionError):
        return None


def _as_js(value: object) -> object:
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return value
    if kind is int:
        number = int(value)  # type: ignore[call-overload]
        if -MAX_SAFE_INTEGER <= number <= MAX_SAFE_INTEGER:
            return number
        return orjson.Fragment(js_number(float(number)))
    if kind is float:
        return orjson.Fragment(js_number(float(value)))  # type: ignore[arg-type]
    if kind is list:
        return [_as_js(item) for item in value]  # type: ignore[attr-defined]
    assert isinstance(value, dict)
    converted = {key: _as_js(item) for key, item in value.items()}
    indices = [key for key in converted if _is_index(key)]
    if not indices:
        return converted
    ordered = {key: converted[key] for key in sorted(indices, key=int)}
    ordered.update((key, item) for key, item in converted.items() if key not in ordered)
    return ordered


def _is_index(key: str) -> bool:
    return (
        key.isascii() and key.isdigit() and (key == "0" or key[0] != "0") and int(key) <= MAX_INDEX
    )


def js_number(number: float) -> bytes:
    """ECMAScript ``Number::toString`` of a double (shortest round-trip digits)."""
    if not math.isfinite(number):
        return b"null"  # JSON.stringify writes what JSON cannot hold as null
    if number == 0:
        return b"0"
    magnitude = abs(number)
    if magnitude < MAX_SAFE_INTEGER and number.is_integer():
        return b"%d" % int(number)  # exact: its shortest digits are all of it
    if 1e-4 <= magnitude < 1e16 and not number.is_integer():
        return repr(number).encode()  # Python's shortest digits, in the same fixed notation
    sign, digit_tuple, exponent = Decimal(repr(number)).normalize().as_tuple()
    assert isinstance(exponent, int)
    digits = "".join(map(str, digit_tuple))
    k, n = len(digits), exponent + len(digits)  # n: where the decimal point goes
    if k <= n <= 21:
        text = digits + "0" * (n - k)
    elif 0 < n <= 21:
        text = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        text = "0." + "0" * -n + digits
    else:
        power = n - 1
        mantissa = digits if k == 1 else digits[0] + "." + digits[1:]
        text = f"{mantissa}e{'+' if power > 0 else '-'}{abs(power)}"
    return (("-" if sign else "") + text).encode()

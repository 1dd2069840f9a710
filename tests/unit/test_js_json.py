"""``JSON.stringify(JSON.parse(text))`` as Node writes it: the expected bytes are what Node
prints for the same input (ECMAScript's Number::toString, property order, escapes)."""

from __future__ import annotations

import pytest

from api_gateway.js_json import js_number, restringify


@pytest.mark.parametrize(
    ("number", "written"),
    [
        (1.0, b"1"),
        (-0.0, b"0"),
        (49.99, b"49.99"),
        (0.1 + 0.2, b"0.30000000000000004"),
        (1e16, b"10000000000000000"),
        (1.2345678901234568e20, b"123456789012345680000"),
        (1e21, b"1e+21"),
        (1.5e300, b"1.5e+300"),
        (0.000001, b"0.000001"),
        (2.5e-5, b"0.000025"),
        (1e-7, b"1e-7"),
        (-1.5e-7, b"-1.5e-7"),
        (5e-324, b"5e-324"),
        (2.0**53, b"9007199254740992"),
        (float("inf"), b"null"),
    ],
)
def test_numbers_are_written_as_javascript_writes_them(number: float, written: bytes) -> None:
    assert js_number(number) == written


def test_spacing_escapes_and_number_spellings_are_normalised() -> None:
    text = b'{ "name" : "Caf\\u00e9 \\/ \\"x\\"",\n  "price": 2.50, "qty": 1.0, "big": 1e2 }'

    assert restringify(text) == '{"name":"Café / \\"x\\"","price":2.5,"qty":1,"big":100}'.encode()


def test_array_index_keys_come_first_in_ascending_order() -> None:
    text = b'{"b":1,"10":2,"2":3,"01":4,"-1":5,"4294967295":6,"a":7}'

    assert restringify(text) == b'{"2":3,"10":2,"b":1,"01":4,"-1":5,"4294967295":6,"a":7}'


def test_a_repeated_key_keeps_its_first_place_and_last_value() -> None:
    assert restringify(b'{"a":1,"b":2,"a":3}') == b'{"a":3,"b":2}'


def test_integers_beyond_double_precision_lose_it_as_in_javascript() -> None:
    assert restringify(b"[12345678901234567890, 9007199254740993]") == (
        b"[12345678901234567000,9007199254740992]"
    )


def test_control_characters_are_escaped_as_javascript_does() -> None:
    assert restringify(b'"\\u0001\\n\\t\\u001f\\u007f"') == b'"\\u0001\\n\\t\\u001f\x7f"'


def test_what_is_not_json_has_no_rewriting() -> None:
    assert restringify(b"{not json") is None
    assert restringify(b"[" * 5000 + b"]" * 5000) is None

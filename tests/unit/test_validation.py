"""Query rules and JSON bodies: every field's complaint, and nothing for what passes."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable
from typing import cast
from urllib.parse import parse_qsl, urlencode

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from api_gateway.config.sections import Section
from api_gateway.config.settings import ConfigError
from api_gateway.config.validation import FieldRule, ValidationConfig, build_validation
from api_gateway.errors import BadRequest, UnsupportedMediaType, ValidationFailed
from api_gateway.policies import validation
from api_gateway.policies.validation import (
    JsonBody,
    check_query,
    check_value,
    json_bound_error,
    query_pairs,
)

SEARCH = (
    FieldRule("q", "string", min_length=1, max_length=200),
    FieldRule("page", "integer", minimum=1, maximum=1000),
    FieldRule("limit", "integer", minimum=1, maximum=100),
    FieldRule("sort", "string", enum=("relevance", "date")),
    FieldRule("exact", "boolean"),
    FieldRule("price", "number", minimum=0),
)


def errors(query: str) -> dict[str, str]:
    return {e["field"]: e["message"] for e in check_query(query.encode(), SEARCH)}


def test_a_good_query_passes() -> None:
    assert errors("q=jazz&page=2&limit=50&sort=date&exact=true&price=9.5&other=x") == {}


def test_every_bad_field_is_reported_at_once() -> None:
    assert errors("q=&page=0&limit=101&sort=cheapest&exact=yes&price=-1") == {
        "query.q": "must be at least 1 characters long",
        "query.page": "must be at least 1",
        "query.limit": "must be at most 100",
        "query.sort": "must be one of relevance, date",
        "query.exact": "must be true or false",
        "query.price": "must be at least 0",
    }


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("limit=ten", "must be an integer"),
        ("limit=1.5", "must be an integer"),
        ("price=nan", "must be a finite number"),
        ("price=abc", "must be a number"),
        ("q=" + "x" * 201, "must be at most 200 characters long"),
        ("limit=1&limit=2", "must be given once"),
    ],
)
def test_bad_values(query: str, message: str) -> None:
    assert list(errors(query).values()) == [message]


def test_required_fields_and_encoding() -> None:
    rules = (FieldRule("q", "string", required=True),)
    assert check_query(b"", rules) == [{"field": "query.q", "message": "is required"}]
    assert check_query(b"q=%ff", rules) == [{"field": "query", "message": "must be UTF-8"}]
    assert check_query(b"q=caf%C3%A9", rules) == []


def parsed(query: bytes) -> list[tuple[str, str]] | str:
    """What the standard library reads from ``query``, or the error it raises."""
    try:
        return parse_qsl(query.decode("utf-8"), keep_blank_values=True, errors="strict")
    except UnicodeDecodeError as exc:
        return type(exc).__name__


def pairs_or_error(query: bytes) -> list[tuple[str, str]] | str:
    try:
        return query_pairs(query)
    except UnicodeDecodeError as exc:
        return type(exc).__name__


@pytest.mark.parametrize(
    "query",
    [
        *(b"", b"&", b"&&a=1&&", b"a", b"a=", b"=b", b"=", b"a=b=c", b"q=caf%C3%A9", b"q=a+b%2Bc"),
        *(b"a%3Db=c", b"q=%ff", b"q=\xff", b"x=1&x=2", b"q=%", b"q=%zz", b"+=+", b"a+b%20c=%2"),
        *(b"q=concert+1&page=1&limit=20", b"q=%E2%82%AC+%e2%82%ac", b"q=%C3", b";a=1;b=2"),
    ],
)
def test_query_pairs_are_the_standard_librarys(query: bytes) -> None:
    assert pairs_or_error(query) == parsed(query)


@given(st.text(alphabet="ab=&+%;3DfFC9\xe9", max_size=24))
def test_query_pairs_are_the_standard_librarys_for_any_query(text: str) -> None:
    query = text.encode("utf-8")
    assert pairs_or_error(query) == parsed(query)


@given(st.integers(-5000, 5000))
def test_integer_bounds_are_inclusive(value: int) -> None:
    rule = FieldRule("page", "integer", minimum=1, maximum=1000)
    assert (check_value(str(value), rule) is None) is (1 <= value <= 1000)


@given(st.dictionaries(st.sampled_from(["q", "page", "sort"]), st.text(max_size=5), max_size=3))
def test_parameter_order_never_changes_the_verdict(params: dict[str, str]) -> None:
    forward = urlencode(list(params.items()))
    backward = urlencode(list(reversed(params.items())))
    assert sorted(map(str, check_query(forward.encode(), SEARCH))) == sorted(
        map(str, check_query(backward.encode(), SEARCH))
    )


# JSON bodies: bounded before parsing, since parsing builds one object per value on the loop.

MIB = 1 << 20
DEPTH, VALUES = 64, 10_000


def bound(body: bytes) -> str | None:
    return json_bound_error(body, DEPTH, VALUES)


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def test_ordinary_bodies_pass() -> None:
    assert bound(b'{"email": "a@b.c", "password": "[{,,,}]"}') is None
    assert bound(b'{"seats": [' + b",".join([b'{"row": 1, "n": 2}'] * 3000) + b"]}") is None
    assert bound(b'"' + b"[,{" * 100_000 + b'"') is None  # brackets in a string are text


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        (nested(DEPTH), None),
        (nested(DEPTH + 1), "nested deeper than 64 levels"),
        (b'{"a":' * 65 + b"1" + b"}" * 65, "nested deeper than 64 levels"),
        (b"[" + b"0," * (VALUES - 2) + b"0]", None),  # the array and 9,999 numbers
        (b"[" + b"0," * (VALUES - 1) + b"0]", "holds more than 10000 values"),
        (b"[" * MIB, "holds more than 10000 values"),
        (b"[" + b"[]," * 20_000 + b"[]]", "holds more than 10000 values"),
        (b"[" + b'"",' * 20_000 + b'""]', "holds more than 10000 values"),
        (b'"' * MIB, "holds more than 10000 values"),  # not JSON, and too many strings anyway
    ],
)
def test_depth_and_values_are_bounded(body: bytes, complaint: str | None) -> None:
    assert bound(body) == complaint


def test_escaped_quotes_do_not_end_a_string() -> None:
    hidden = b'["' + b'\\"[' * 20_000 + b'"]'  # every [ is inside the one string
    backslash_then_end = b'["\\\\", ' + b"[" * 65 + b"]" * 65 + b"]"  # "\\" ends its string
    assert bound(hidden) is None
    assert bound(backslash_then_end) == "nested deeper than 64 levels"


JSON_TEXT = st.text(alphabet='[]{},:"\\ ax\u00e9')
DOCUMENTS = st.recursive(
    st.none() | st.integers(-(2**63), 2**63 - 1) | JSON_TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(JSON_TEXT, inner, max_size=4),
)


def depth_of(document: object) -> int:
    children = document.values() if isinstance(document, dict) else document
    if not isinstance(document, list | dict):
        return 0
    return 1 + max((depth_of(child) for child in cast("Iterable[object]", children)), default=0)


def counted(document: object) -> int:
    """Values as the bound counts them: an empty container counts one more."""
    if not isinstance(document, list | dict):
        return 1
    children = list(document.values() if isinstance(document, dict) else document)
    return 1 + max(len(children), 1) + sum(counted(child) - 1 for child in children)


@given(DOCUMENTS)
def test_the_count_is_exact_whatever_the_strings_hold(document: object) -> None:
    body = orjson.dumps(document)
    depth, values = depth_of(document), counted(document)
    assert json_bound_error(body, max(depth, 1), values) is None
    if depth > 1:
        assert json_bound_error(body, depth - 1, values) == f"nested deeper than {depth - 1} levels"
    if values > 1:
        assert json_bound_error(body, 1024, values - 1) == f"holds more than {values - 1} values"


def test_the_worst_mib_costs_a_few_ms_of_cpu() -> None:
    config = ValidationConfig(query=(), json_body=True)
    check = JsonBody(config)._check_json
    worst = [
        b"[" + b",".join([nested(1000)] * 523) + b"]",
        b"[" + b"[]," * (MIB // 3 - 1) + b"[]]",
        b"{" + b",".join(b'"k%d":0' % i for i in range(MIB // 12)) + b"}",
        b'["' + b'[{,\\"' * (MIB // 5 - 1) + b'"]',
        b'"' + b"\\u0041" * (MIB // 6 - 1) + b'"',
    ]
    for body in worst:
        started = time.thread_time()  # CPU, not wall time: other processes do not count
        with contextlib.suppress(ValidationFailed):
            check(body)
        assert time.thread_time() - started < 0.02  # measured 1-4 ms; 100-150 ms unbounded


def test_json_bounds_come_from_the_route_and_are_checked() -> None:
    section = Section({"json_body": True, "json_max_depth": 8, "json_max_values": 50}, "v")
    config = build_validation(section)
    assert (config.json_max_depth, config.json_max_values, config.json_max_bytes) == (8, 50, MIB)
    with pytest.raises(ConfigError, match=r"v\.json_max_depth"):
        build_validation(Section({"json_max_depth": 1025}, "v"))
    with pytest.raises(ConfigError, match=r"v\.json_max_values"):
        build_validation(Section({"json_max_values": 0}, "v"))


@pytest.mark.parametrize(
    "value",
    [
        b"application/json, text/html",
        b"application/json; charset=utf-8, text/html",
        b'application/json; profile="a", text/html',
    ],
)
def test_a_content_type_holding_a_list_is_refused(value: bytes) -> None:
    with pytest.raises(BadRequest, match="more than one media type"):
        validation._check_json_type(value)


@pytest.mark.parametrize(
    "value",
    [b"application/json", b'application/json; profile="a,b"', b'application/json; p="a\\",b"'],
)
def test_one_media_type_passes_whatever_its_quoted_parameters_hold(value: bytes) -> None:
    validation._check_json_type(value)


def test_one_media_type_that_is_not_json_is_still_415() -> None:
    with pytest.raises(UnsupportedMediaType):
        validation._check_json_type(b"text/plain")

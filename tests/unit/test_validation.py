"""Query rules and JSON bodies: every field's complaint, and nothing for what passes."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api_gateway.config.validation import FieldRule
from api_gateway.policies.validation import check_query, check_value

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

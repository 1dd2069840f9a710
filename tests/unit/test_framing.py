"""Unit tests for the HTTP/1.1 framing rules: refused framings and hop-by-hop filtering."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api_gateway.errors import MalformedRequest
from api_gateway.http.framing import (
    HOP_BY_HOP,
    check_request_framing,
    connection_tokens,
    status_line,
    without_hop_by_hop,
)
from api_gateway.types import Headers

HOST = (b"host", b"gateway.example")


# --- check_request_framing ----------------------------------------------------------------------


@pytest.mark.parametrize("value", [b"chunked", b"Chunked", b"CHUNKED", b" chunked ", b"chunked\t"])
def test_chunked_transfer_encoding_is_accepted(value: bytes) -> None:
    check_request_framing([HOST, (b"transfer-encoding", value)], "1.1")


@pytest.mark.parametrize(
    "value",
    [b"gzip", b"gzip, chunked", b"chunked, gzip", b"identity", b"chunked;x=1", b"", b"xchunked"],
)
def test_transfer_encoding_other_than_chunked_is_refused(value: bytes) -> None:
    with pytest.raises(MalformedRequest):
        check_request_framing([HOST, (b"transfer-encoding", value)], "1.1")


def test_repeated_transfer_encoding_is_refused() -> None:
    headers = [HOST, (b"transfer-encoding", b"chunked"), (b"transfer-encoding", b"chunked")]
    with pytest.raises(MalformedRequest):
        check_request_framing(headers, "1.1")


def test_transfer_encoding_in_http10_is_refused() -> None:
    with pytest.raises(MalformedRequest):
        check_request_framing([HOST, (b"transfer-encoding", b"chunked")], "1.0")


def test_duplicate_host_is_refused() -> None:
    with pytest.raises(MalformedRequest):
        check_request_framing([HOST, (b"accept", b"*/*"), (b"host", b"evil.example")], "1.1")


def test_duplicate_host_is_refused_in_http10() -> None:
    with pytest.raises(MalformedRequest):
        check_request_framing([HOST, HOST], "1.0")


def test_missing_host_is_refused_in_http11() -> None:
    with pytest.raises(MalformedRequest):
        check_request_framing([(b"accept", b"*/*")], "1.1")


def test_missing_host_is_allowed_in_http10() -> None:
    check_request_framing([(b"accept", b"*/*")], "1.0")


def test_plain_request_with_one_host_is_accepted() -> None:
    check_request_framing([HOST, (b"content-length", b"5")], "1.1")


def test_framing_error_closes_the_connection() -> None:
    with pytest.raises(MalformedRequest) as info:
        check_request_framing([], "1.1")
    assert info.value.status == 400
    assert info.value.closes_connection


# --- connection_tokens --------------------------------------------------------------------------


def test_connection_tokens_are_lower_cased_and_trimmed() -> None:
    headers = [(b"connection", b"Keep-Alive, X-Secret ,Upgrade")]
    assert connection_tokens(headers) == {b"keep-alive", b"x-secret", b"upgrade"}


def test_connection_tokens_merge_every_connection_header() -> None:
    headers = [(b"connection", b"close"), (b"accept", b"a, b"), (b"connection", b"x-one")]
    assert connection_tokens(headers) == {b"close", b"x-one"}


def test_connection_tokens_skip_empty_items() -> None:
    assert connection_tokens([(b"connection", b" , ,close,, ")]) == {b"close"}


def test_connection_tokens_without_connection_header() -> None:
    assert connection_tokens([(b"accept", b"*/*")]) == frozenset()


# --- without_hop_by_hop -------------------------------------------------------------------------


def test_standard_hop_by_hop_headers_are_dropped() -> None:
    headers: Headers = [(name, b"x") for name in sorted(HOP_BY_HOP)]
    headers.insert(3, (b"accept", b"*/*"))
    assert without_hop_by_hop(headers) == [(b"accept", b"*/*")]


@pytest.mark.parametrize(
    "name",
    [
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-authorization",
        b"proxy-authenticate",
    ],
)
def test_each_hop_by_hop_header_is_dropped(name: bytes) -> None:
    assert without_hop_by_hop([(name, b"v"), (b"x-keep", b"1")]) == [(b"x-keep", b"1")]


def test_headers_named_in_connection_are_dropped_case_insensitively() -> None:
    headers = [
        (b"x-forwarded-secret", b"s"),
        (b"connection", b"X-Forwarded-Secret, X-DEBUG"),
        (b"x-debug", b"1"),
        (b"accept", b"*/*"),
    ]
    assert without_hop_by_hop(headers) == [(b"accept", b"*/*")]


def test_other_headers_keep_their_order_and_duplicates() -> None:
    headers = [
        (b"set-cookie", b"a=1"),
        (b"keep-alive", b"timeout=5"),
        (b"content-type", b"text/plain"),
        (b"set-cookie", b"b=2"),
        (b"x-z", b"z"),
    ]
    assert without_hop_by_hop(headers) == [
        (b"set-cookie", b"a=1"),
        (b"content-type", b"text/plain"),
        (b"set-cookie", b"b=2"),
        (b"x-z", b"z"),
    ]


def test_extra_names_are_dropped_too() -> None:
    headers = [(b"content-length", b"3"), (b"accept", b"*/*")]
    assert without_hop_by_hop(headers, frozenset({b"content-length"})) == [(b"accept", b"*/*")]


def test_connection_cannot_name_away_nothing_else() -> None:
    # Without a Connection header, only the standard hop-by-hop set goes.
    headers = [(b"x-a", b"1"), (b"te", b"trailers"), (b"x-b", b"2")]
    assert without_hop_by_hop(headers) == [(b"x-a", b"1"), (b"x-b", b"2")]


header_name = st.sampled_from(
    [b"accept", b"x-a", b"x-b", b"cookie", b"te", b"upgrade", b"keep-alive", b"connection"]
)
header_value = st.sampled_from([b"1", b"x-a", b"X-B, upgrade", b"close", b""])


@given(st.lists(st.tuples(header_name, header_value), max_size=10))
def test_filtered_headers_are_an_ordered_subsequence_without_named_ones(
    headers: Headers,
) -> None:
    out = without_hop_by_hop(headers)
    named = connection_tokens(headers)
    assert out == [(n, v) for n, v in headers if n not in HOP_BY_HOP and n not in named]


# --- status_line --------------------------------------------------------------------------------


def test_status_line_known_and_unknown() -> None:
    assert status_line(200) == b"HTTP/1.1 200 OK\r\n"
    assert status_line(404) == b"HTTP/1.1 404 Not Found\r\n"
    assert status_line(599) == b"HTTP/1.1 599 Unknown\r\n"

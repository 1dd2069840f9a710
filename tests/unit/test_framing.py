"""Unit tests for the HTTP/1.1 framing rules: refused framings and hop-by-hop filtering."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api_gateway.errors import BadRequest, MalformedRequest
from api_gateway.http import framing
from api_gateway.http.framing import (
    HOP_BY_HOP,
    REQUEST_FRAMING,
    RequestFraming,
    lower_name,
    single_value,
    status_line,
)
from api_gateway.types import Headers

HOST = (b"host", b"gateway.example")


def check_request_framing(headers: Headers, http_version: str) -> None:
    """The framing rules over a whole header list, fed as the server feeds them."""
    framing = RequestFraming()
    for name, value in headers:
        if name in REQUEST_FRAMING:
            framing.take(name, value)
    framing.check(http_version)


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


# --- end-to-end fields ---------------------------------------------------------------------------


def end_to_end(headers: Headers) -> Headers:
    """The header list the server keeps: fields fed to RequestFraming as they arrive."""
    framing = RequestFraming()
    kept = [(n, v) for n, v in headers if n not in REQUEST_FRAMING or framing.take(n, v)]
    return framing.end_to_end(kept)


def test_standard_hop_by_hop_headers_are_dropped() -> None:
    headers: Headers = [(name, b"x") for name in sorted(HOP_BY_HOP)]
    headers.insert(3, (b"accept", b"*/*"))
    assert end_to_end(headers) == [(b"accept", b"*/*")]


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
        b"content-length",
        b"expect",
    ],
)
def test_each_hop_by_hop_or_framing_field_is_consumed(name: bytes) -> None:
    assert end_to_end([(name, b"1"), (b"x-keep", b"1")]) == [(b"x-keep", b"1")]


def test_host_is_kept_for_the_policies() -> None:
    assert end_to_end([HOST, (b"accept", b"*/*")]) == [HOST, (b"accept", b"*/*")]


def test_headers_named_in_connection_are_dropped_case_insensitively() -> None:
    headers = [
        (b"x-forwarded-secret", b"s"),
        (b"connection", b"X-Forwarded-Secret, X-DEBUG"),
        (b"x-debug", b"1"),
        (b"accept", b"*/*"),
    ]
    assert end_to_end(headers) == [(b"accept", b"*/*")]


def test_every_connection_header_counts() -> None:
    headers = [(b"connection", b"close"), (b"x-one", b"1"), (b"connection", b" , x-one,, ")]
    assert end_to_end(headers) == []


def test_other_headers_keep_their_order_and_duplicates() -> None:
    headers = [
        (b"set-cookie", b"a=1"),
        (b"keep-alive", b"timeout=5"),
        (b"content-type", b"text/plain"),
        (b"set-cookie", b"b=2"),
        (b"x-z", b"z"),
    ]
    assert end_to_end(headers) == [
        (b"set-cookie", b"a=1"),
        (b"content-type", b"text/plain"),
        (b"set-cookie", b"b=2"),
        (b"x-z", b"z"),
    ]


def test_framing_facts_are_recorded() -> None:
    framing = RequestFraming()
    for name, value in [(b"content-length", b"12"), (b"expect", b"100-Continue")]:
        assert not framing.take(name, value)
    assert framing.content_length == 12
    assert framing.expect_continue
    assert not framing.chunked


header_name = st.sampled_from(
    [b"accept", b"x-a", b"x-b", b"cookie", b"te", b"upgrade", b"keep-alive", b"connection"]
)
header_value = st.sampled_from([b"1", b"x-a", b"X-B, upgrade", b"close", b""])


@given(st.lists(st.tuples(header_name, header_value), max_size=10))
def test_kept_headers_are_an_ordered_subsequence_without_named_ones(headers: Headers) -> None:
    named = {
        token.strip().lower()
        for name, value in headers
        if name == b"connection"
        for token in value.split(b",")
    }
    expected = [(n, v) for n, v in headers if n not in HOP_BY_HOP and n not in named]
    assert end_to_end(headers) == expected


# --- status_line --------------------------------------------------------------------------------


def test_status_line_known_and_unknown() -> None:
    assert status_line(200) == b"HTTP/1.1 200 OK\r\n"
    assert status_line(404) == b"HTTP/1.1 404 Not Found\r\n"
    assert status_line(599) == b"HTTP/1.1 599 Unknown\r\n"


def test_header_names_are_lowered_to_one_shared_object_per_name() -> None:
    first = lower_name(b"Content-Type")

    assert first == b"content-type"
    assert lower_name(b"CONTENT-TYPE") is first
    assert lower_name(b"content-type") is first


def test_the_lowered_name_cache_stays_bounded() -> None:
    for n in range(framing.LOWERED_CACHE_SIZE * 2):
        assert lower_name(b"X-Name-%d" % n) == b"x-name-%d" % n

    assert len(framing._LOWERED) <= framing.LOWERED_CACHE_SIZE + 1


def test_a_long_header_name_is_lowered_but_never_remembered() -> None:
    framing._LOWERED.clear()
    names = [b"X-Pad-%d-" % n + b"A" * 16_000 for n in range(100)]

    for name in names:
        assert lower_name(name) == name.lower()

    assert len(framing._LOWERED) == 0
    # Short names are still remembered, one shared object each.
    assert lower_name(b"X-Short") is lower_name(b"x-short")


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        ([b"100-continue", b"x-other"], True),
        ([b"x-other", b"100-continue"], True),
        ([b"x-other, 100-Continue"], True),
        ([b"x-other"], False),
        ([b"x-other", b"x-more"], False),
    ],
)
def test_expect_is_a_list_and_no_line_hides_another(lines: list[bytes], expected: bool) -> None:
    framing = RequestFraming()
    for value in lines:
        framing.take(b"expect", value)

    assert framing.expect_continue is expected


def test_a_field_that_may_appear_once_is_refused_when_it_appears_twice() -> None:
    headers = [(b"origin", b"https://a.example"), (b"accept", b"*/*")]

    assert single_value(headers, b"origin") == b"https://a.example"
    assert single_value(headers, b"content-type") is None
    with pytest.raises(BadRequest, match="more than one origin header") as refused:
        single_value([*headers, (b"origin", b"https://a.example")], b"origin")
    assert refused.value.status == 400
    assert not refused.value.closes_connection

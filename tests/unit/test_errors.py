"""Unit tests for problem documents (RFC 9457): the single place errors become responses."""

from __future__ import annotations

import json
from typing import Any

import pytest

from api_gateway import errors
from api_gateway.errors import (
    BadGateway,
    BadRequest,
    CircuitOpen,
    ConnectFailed,
    ConnectTimeout,
    DeadlineExceeded,
    Forbidden,
    GatewayError,
    HeaderNotAllowed,
    HeadersTooLarge,
    InvalidPath,
    MalformedRequest,
    MethodNotAllowed,
    PayloadTooLarge,
    RateLimited,
    RequestTimeout,
    RouteNotFound,
    ServiceUnavailable,
    Unauthorized,
    UpstreamTimeout,
    UriTooLong,
    problem_response,
)
from api_gateway.types import Headers, Response

CLOSING = {MalformedRequest, RequestTimeout, PayloadTooLarge, UriTooLong, HeadersTooLarge}
STATUSES: list[tuple[GatewayError, int, str]] = [
    (GatewayError(), 500, "internal-error"),
    (BadRequest(), 400, "bad-request"),
    (MalformedRequest(), 400, "malformed-request"),
    (InvalidPath(), 400, "invalid-path"),
    (HeaderNotAllowed(), 400, "header-not-allowed"),
    (Unauthorized(), 401, "unauthorized"),
    (Forbidden(), 403, "forbidden"),
    (RouteNotFound(), 404, "not-found"),
    (MethodNotAllowed(), 405, "method-not-allowed"),
    (RequestTimeout(), 408, "request-timeout"),
    (PayloadTooLarge(), 413, "payload-too-large"),
    (UriTooLong(), 414, "uri-too-long"),
    (RateLimited("slow down", 3), 429, "rate-limited"),
    (HeadersTooLarge(), 431, "headers-too-large"),
    (BadGateway(), 502, "bad-gateway"),
    (ServiceUnavailable(), 503, "service-unavailable"),
    (CircuitOpen("failing", 20), 503, "circuit-open"),
    (UpstreamTimeout(), 504, "upstream-timeout"),
    (ConnectFailed(), 502, "bad-gateway"),
    (ConnectTimeout(), 504, "upstream-timeout"),
    (DeadlineExceeded(), 504, "deadline-exceeded"),
]


def test_only_connection_failures_say_nothing_was_sent() -> None:
    unsent = {type(e).__name__ for e, _, _ in STATUSES if not e.request_sent}
    assert unsent == {"ConnectFailed", "ConnectTimeout"}


def test_an_open_circuit_says_when_to_come_back() -> None:
    assert values(CircuitOpen("failing", 20).headers, b"retry-after") == [b"20"]
    assert values(CircuitOpen("failing", 0).headers, b"retry-after") == [b"1"]


def document(response: Response) -> dict[str, Any]:
    assert isinstance(response.body, bytes)
    parsed: dict[str, Any] = json.loads(response.body)
    return parsed


def values(headers: Headers, name: bytes) -> list[bytes]:
    return [v for n, v in headers if n == name]


@pytest.mark.parametrize(("error", "status", "slug"), STATUSES, ids=lambda x: str(x))
def test_problem_document_fields(error: GatewayError, status: int, slug: str) -> None:
    response = problem_response(error, "req-1")
    assert response.status == status
    body = document(response)
    assert body["type"] == errors.PROBLEM_BASE + slug
    assert body["type"].startswith("https://")
    assert body["title"] == error.title
    assert body["status"] == status
    assert body["detail"] == error.detail
    assert body["request_id"] == "req-1"
    assert "instance" not in body
    # The original gateway's members, which its clients read.
    assert body["error"] == error.title
    assert body["message"] == error.detail
    assert body["correlationId"] == "req-1"
    assert "rateLimit" not in body  # none of these knows its limit


@pytest.mark.parametrize(("error", "status", "slug"), STATUSES, ids=lambda x: str(x))
def test_problem_content_type_and_no_store(error: GatewayError, status: int, slug: str) -> None:
    headers = problem_response(error, "r").headers
    assert values(headers, b"content-type") == [b"application/problem+json"]
    assert values(headers, b"cache-control") == [b"no-store"]


@pytest.mark.parametrize(("error", "status", "slug"), STATUSES, ids=lambda x: str(x))
def test_connection_close_only_for_closing_errors(
    error: GatewayError, status: int, slug: str
) -> None:
    assert problem_response(error, "r").close == (type(error) in CLOSING)


def test_detail_defaults_to_title_and_can_be_given() -> None:
    assert document(problem_response(Forbidden(), "r"))["detail"] == "Forbidden"
    assert document(problem_response(Forbidden("not yours"), "r"))["detail"] == "not yours"


def test_instance_is_included_when_given() -> None:
    body = document(problem_response(RouteNotFound(), "r", "/api/v1/nope"))
    assert body["instance"] == "/api/v1/nope"


def test_detail_with_quotes_and_newlines_stays_valid_json() -> None:
    detail = 'bad "value"\r\n</script>\\'
    assert document(problem_response(BadRequest(detail), "r"))["detail"] == detail


def test_unauthorized_carries_bearer_challenge() -> None:
    headers = problem_response(Unauthorized("expired"), "r").headers
    assert values(headers, b"www-authenticate") == [
        b'Bearer realm="api-gateway", error="invalid_token"'
    ]


def test_unauthorized_without_token_has_no_error_code() -> None:
    headers = problem_response(Unauthorized("need a token", error=""), "r").headers
    assert values(headers, b"www-authenticate") == [b'Bearer realm="api-gateway"']


def test_unauthorized_invalid_request_code() -> None:
    headers = problem_response(Unauthorized("bad header", error="invalid_request"), "r").headers
    assert values(headers, b"www-authenticate") == [
        b'Bearer realm="api-gateway", error="invalid_request"'
    ]


@pytest.mark.parametrize(("seconds", "header"), [(30, b"30"), (1, b"1"), (0, b"1"), (-5, b"1")])
def test_rate_limited_retry_after_is_at_least_one_second(seconds: int, header: bytes) -> None:
    response = problem_response(RateLimited("slow down", seconds), "r")
    assert response.status == 429
    assert values(response.headers, b"retry-after") == [header]


@pytest.mark.parametrize(
    "error", [Forbidden(), RouteNotFound(), BadGateway(), InvalidPath(), GatewayError()]
)
def test_other_errors_have_no_challenge_or_retry_after(error: GatewayError) -> None:
    headers = problem_response(error, "r").headers
    assert values(headers, b"www-authenticate") == []
    assert values(headers, b"retry-after") == []


def test_error_headers_are_passed_through() -> None:
    error = MethodNotAllowed("POST only", [(b"allow", b"POST")])
    assert values(problem_response(error, "r").headers, b"allow") == [b"POST"]


def test_responses_do_not_share_header_lists() -> None:
    error = RateLimited("slow down", 2)
    first = problem_response(error, "a")
    first.headers.append((b"x-request-id", b"a"))
    second = problem_response(error, "b")
    assert values(second.headers, b"x-request-id") == []
    assert values(second.headers, b"retry-after") == [b"2"]


def test_error_hierarchy_lets_callers_catch_by_family() -> None:
    assert isinstance(CircuitOpen("failing", 1), ServiceUnavailable)
    assert isinstance(InvalidPath(), BadRequest)
    assert isinstance(MalformedRequest(), BadRequest)
    assert all(isinstance(error, GatewayError) for error, _, _ in STATUSES)


# 2026-12-06T22:57:35.123Z
NOW_S = 1796597855.123


def test_the_timestamp_is_iso_8601_utc_with_milliseconds() -> None:
    body = document(problem_response(Forbidden(), "r", now_s=NOW_S))
    assert body["timestamp"] == "2026-12-06T22:57:35.123Z"
    assert errors.iso_timestamp(0.0) == "1970-01-01T00:00:00.000Z"


def test_a_429_names_its_limit_and_when_it_resets() -> None:
    error = RateLimited("slow down", 3, limit=5, remaining=0, reset_s=60)
    body = document(problem_response(error, "r", now_s=NOW_S))
    assert body["rateLimit"] == {"limit": 5, "remaining": 0, "reset": "2026-12-06T22:58:35.123Z"}


def test_a_429_without_fields_reads_its_limit_from_its_headers() -> None:
    headers = [(b"x-ratelimit-limit", b"100"), (b"x-ratelimit-remaining", b"0")]
    body = document(problem_response(RateLimited("slow", 7, headers), "r", now_s=NOW_S))
    assert body["rateLimit"] == {"limit": 100, "remaining": 0, "reset": "2026-12-06T22:57:42.123Z"}


def test_a_429_that_knows_no_limit_has_no_rate_limit_member() -> None:
    assert "rateLimit" not in document(problem_response(RateLimited("slow", 2), "r"))


def test_extension_members_do_not_replace_the_originals() -> None:
    body = document(problem_response(BadRequest("bad"), "r"))
    assert (body["error"], body["message"]) == ("Bad request", "bad")

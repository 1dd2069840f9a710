"""Which client X-Request-ID becomes the request id: exactly one well-formed line, or none."""

from __future__ import annotations

import pytest

from api_gateway.policies.context import incoming_request_id
from api_gateway.types import Request


def request_with(*ids: bytes) -> Request:
    headers = [(b"accept", b"*/*"), *((b"x-request-id", i) for i in ids), (b"user-agent", b"t")]
    return Request("GET", b"/api/v1/events", headers, b"", "127.0.0.1")


@pytest.mark.parametrize(
    ("ids", "kept"),
    [
        ((), ""),
        ((b"abc-1",), "abc-1"),
        ((b"bad id",), ""),
        ((b"a" * 129,), ""),
        ((b"abc-1", b"abc-2"), ""),
        ((b"abc-1", b"abc-1"), ""),
        ((b"bad id", b"abc-2"), ""),
        ((b"abc-1", b"bad id"), ""),
    ],
)
def test_only_one_well_formed_line_is_an_id(ids: tuple[bytes, ...], kept: str) -> None:
    assert incoming_request_id(request_with(*ids)) == kept


def test_the_same_pass_keeps_the_user_agent_for_the_access_log() -> None:
    request = request_with(b"abc-1")
    incoming_request_id(request)
    assert request.user_agent == b"t"
    bare = Request("GET", b"/", [], b"", "127.0.0.1")
    incoming_request_id(bare)
    assert bare.user_agent == b""

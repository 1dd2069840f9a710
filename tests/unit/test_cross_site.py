"""When a token from the cookie may act: the request's method, Origin and Host."""

from __future__ import annotations

import pytest

from api_gateway.cross_site import CookieOrigins
from api_gateway.origins import AllowedOrigins
from api_gateway.types import Request
from api_gateway.websocket import WEBSOCKET

CHECK = CookieOrigins(AllowedOrigins(["https://app.tickettoken.com", "*.partner.example", "*"]))


def request(method: str, origin: str | None, host: str = "api.tickettoken.com") -> Request:
    headers = [(b"host", host.encode())]
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    return Request(method, b"/api/v1/tickets/purchase", headers, b"", "203.0.113.9")


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_a_change_from_an_unlisted_site_is_refused(method: str) -> None:
    assert not CHECK.allows(request(method, "https://evil.example"))


def test_star_lists_no_one_for_the_cookie() -> None:
    assert not CHECK.allows(request("POST", "https://anyone.example"))


def test_listed_own_and_originless_requests_are_allowed() -> None:
    assert CHECK.allows(request("POST", "https://app.tickettoken.com"))
    assert CHECK.allows(request("POST", "https://a.b.partner.example"))
    assert CHECK.allows(request("POST", "https://api.tickettoken.com"))
    # A Host in capitals is the same host.
    assert CHECK.allows(request("POST", "https://api.tickettoken.com", "API.tickettoken.com"))
    assert CHECK.allows(request("POST", None))


def test_null_and_malformed_origins_are_refused() -> None:
    assert not CHECK.allows(request("POST", "null"))
    assert not CHECK.allows(request("POST", "api.tickettoken.com"))


def test_a_websocket_handshake_is_checked_though_it_is_a_get() -> None:
    handshake = request("GET", "https://evil.example")
    handshake.upgrade = WEBSOCKET
    plain_read = request("GET", "https://evil.example")

    assert not CHECK.allows(handshake)
    assert CHECK.allows(plain_read)

"""Unit tests for the small request policies and helpers, driven without sockets: trusted proxies
and client address, header trust, CORS and security headers."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Awaitable
from typing import TypeVar

import pytest

from api_gateway.errors import Forbidden, HeaderNotAllowed
from api_gateway.network import TrustedProxies
from api_gateway.policies.cors import Cors
from api_gateway.policies.headers import HeaderTrust
from api_gateway.policies.security_headers import DEFAULT, HELMET_DEFAULTS, SecurityHeaders
from api_gateway.types import Claims, Handler, Headers, Request, Response
from api_gateway.upstream.forward import render_head

T = TypeVar("T")
PROXIES = TrustedProxies((ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8")))
NO_PROXIES = TrustedProxies(())


def run(awaitable: Awaitable[T]) -> T:
    async def wrapper() -> T:
        return await awaitable

    return asyncio.run(wrapper())


def request(
    headers: Headers | None = None, peer: str = "203.0.113.7", method: str = "GET"
) -> Request:
    return Request(method, b"/api/v1/events", headers or [(b"host", b"gw.example")], b"", peer)


def sent(request: Request) -> Headers:
    """The headers an upstream receives for ``request``: its head rendered and read back."""
    head, _ = render_head(request, b"host: upstream", 1000)
    lines = head.split(b"\r\n")[2:-2]  # after the request line and Host, before the blank line
    return [(name, value) for name, _, value in (line.partition(b": ") for line in lines)]


def values(headers: Headers, name: bytes) -> list[bytes]:
    return [v for n, v in headers if n == name]


class Recorder:
    """A terminal handler that keeps the request it was given."""

    def __init__(self, response_headers: Headers | None = None) -> None:
        self.seen: Request | None = None
        self.response_headers = response_headers or []

    async def __call__(self, req: Request) -> Response:
        self.seen = req
        return Response(200, list(self.response_headers), b"ok")


# --- TrustedProxies -----------------------------------------------------------------------------


def test_trusted_proxies_membership() -> None:
    assert PROXIES.contains("10.1.2.3")
    assert PROXIES.contains("fd00::1")
    assert not PROXIES.contains("203.0.113.7")
    assert not PROXIES.contains("not-an-ip")
    assert bool(PROXIES)
    assert not bool(NO_PROXIES)


def test_client_ip_of_untrusted_peer_ignores_forwarded_for() -> None:
    req = request([(b"x-forwarded-for", b"1.2.3.4")], peer="203.0.113.7")
    assert PROXIES.client_ip(req) == "203.0.113.7"


def test_client_ip_is_rightmost_untrusted_hop() -> None:
    req = request([(b"x-forwarded-for", b"6.6.6.6, 198.51.100.4, 10.0.0.2")], peer="10.0.0.1")
    assert PROXIES.client_ip(req) == "198.51.100.4"


def test_client_ip_joins_repeated_forwarded_for_headers() -> None:
    headers = [(b"x-forwarded-for", b"198.51.100.4"), (b"x-forwarded-for", b"10.0.0.9")]
    assert PROXIES.client_ip(request(headers, peer="10.0.0.1")) == "198.51.100.4"


@pytest.mark.parametrize("chain", [b"garbage", b"198.51.100.4, evil", b""])
def test_client_ip_falls_back_to_peer_on_garbage(chain: bytes) -> None:
    req = request([(b"x-forwarded-for", chain)], peer="10.0.0.1")
    assert PROXIES.client_ip(req) == "10.0.0.1"


def test_client_ip_without_forwarded_for_is_peer() -> None:
    assert PROXIES.client_ip(request(peer="10.0.0.1")) == "10.0.0.1"


# --- HeaderTrust --------------------------------------------------------------------------------


def trust(req: Request, proxies: TrustedProxies = NO_PROXIES) -> Request:
    recorder = Recorder()
    req.request_id = "req-1"
    run(HeaderTrust(proxies, 3000)(req, recorder))
    assert recorder.seen is not None
    return recorder.seen


def test_identity_headers_from_client_are_removed() -> None:
    headers = [
        (b"host", b"gw.example"),
        (b"x-tenant-id", b"other-tenant"),
        (b"x-user-id", b"admin"),
        (b"x-user-role", b"admin"),
        (b"x-internal-service", b"1"),
        (b"x-gateway-internal", b"true"),
        (b"x-admin-token", b"t"),
        (b"accept", b"*/*"),
    ]
    seen = trust(request(headers))
    assert seen.headers == [(b"accept", b"*/*")]
    assert values(sent(seen), b"x-forwarded-host") == [b"gw.example"]


def test_identity_headers_come_from_verified_claims() -> None:
    req = request()
    req.claims = Claims("user-1", "tenant-1", "admin", "", 0.0)
    added = sent(trust(req))
    assert values(added, b"x-tenant-id") == [b"tenant-1"]
    assert values(added, b"x-user-id") == [b"user-1"]
    assert values(added, b"x-user-role") == [b"admin"]
    assert values(added, b"x-request-id") == [b"req-1"]
    assert values(added, b"x-gateway-internal") == [b"true"]


def test_no_identity_headers_without_claims() -> None:
    added = sent(trust(request([(b"host", b"h"), (b"x-user-id", b"forged")])))
    assert values(added, b"x-user-id") == []
    assert values(added, b"x-tenant-id") == []


@pytest.mark.parametrize("name", [b"x_user_id", b"x-tenant_id", b"_"])
def test_header_names_with_underscore_are_refused(name: bytes) -> None:
    with pytest.raises(HeaderNotAllowed):
        trust(request([(b"host", b"h"), (name, b"v")]))


def test_forwarded_headers_from_untrusted_peer_are_replaced() -> None:
    headers = [
        (b"host", b"gw.example"),
        (b"x-forwarded-for", b"1.1.1.1"),
        (b"x-forwarded-proto", b"https"),
        (b"x-forwarded-host", b"evil.example"),
        (b"x-forwarded-port", b"1"),
    ]
    added = sent(trust(request(headers, peer="203.0.113.7"), PROXIES))
    assert values(added, b"x-forwarded-for") == [b"203.0.113.7"]
    assert values(added, b"x-forwarded-proto") == [b"http"]
    assert values(added, b"x-forwarded-host") == [b"gw.example"]
    assert values(added, b"x-forwarded-port") == [b"3000"]


def test_forwarded_headers_from_trusted_proxy_are_extended() -> None:
    headers = [
        (b"host", b"gw.internal"),
        (b"x-forwarded-for", b"198.51.100.4"),
        (b"x-forwarded-proto", b"https"),
        (b"x-forwarded-host", b"api.example"),
        (b"x-forwarded-port", b"443"),
    ]
    added = sent(trust(request(headers, peer="10.0.0.1"), PROXIES))
    assert values(added, b"x-forwarded-for") == [b"198.51.100.4, 10.0.0.1"]
    assert values(added, b"x-forwarded-proto") == [b"https"]
    assert values(added, b"x-forwarded-host") == [b"api.example"]
    assert values(added, b"x-forwarded-port") == [b"443"]


# --- CORS ---------------------------------------------------------------------------------------

ORIGIN = b"https://app.tickettoken.io"


def cors(origins: tuple[str, ...], req: Request, handler: Handler | None = None) -> Response:
    """What the client gets: the response plus the headers RequestContext adds from the request."""
    response = run(Cors(origins)(req, handler or Recorder()))
    response.headers += req.response_headers
    return response


def preflight(origin: bytes, requested_headers: bytes | None = None) -> Request:
    headers = [(b"host", b"gw"), (b"origin", origin), (b"access-control-request-method", b"POST")]
    if requested_headers:
        headers.append((b"access-control-request-headers", requested_headers))
    return request(headers, method="OPTIONS")


def test_cors_allowed_origin_is_echoed_with_credentials() -> None:
    response = cors(("https://app.tickettoken.io/",), request([(b"origin", ORIGIN)]))
    assert values(response.headers, b"access-control-allow-origin") == [ORIGIN]
    assert values(response.headers, b"access-control-allow-credentials") == [b"true"]
    assert values(response.headers, b"vary") == [b"Origin"]
    assert b"x-request-id" in values(response.headers, b"access-control-expose-headers")[0]


def test_cors_other_origin_gets_no_cors_headers() -> None:
    response = cors(("https://app.tickettoken.io",), request([(b"origin", b"https://evil.io")]))
    assert response.status == 200
    assert values(response.headers, b"access-control-allow-origin") == []


def test_cors_wildcard_allows_any_origin_without_credentials() -> None:
    response = cors(("*",), request([(b"origin", b"https://anyone.io")]))
    assert values(response.headers, b"access-control-allow-origin") == [b"*"]
    assert values(response.headers, b"access-control-allow-credentials") == []


def test_cors_request_without_origin_is_untouched() -> None:
    response = cors(("*",), request())
    assert response.headers == []


def test_cors_preflight_is_answered_by_gateway() -> None:
    recorder = Recorder()
    response = cors(("https://app.tickettoken.io",), preflight(ORIGIN, b"authorization"), recorder)
    assert response.status == 204
    assert recorder.seen is None
    assert values(response.headers, b"access-control-allow-origin") == [ORIGIN]
    assert b"POST" in values(response.headers, b"access-control-allow-methods")[0]
    assert values(response.headers, b"access-control-allow-headers") == [b"authorization"]
    assert values(response.headers, b"access-control-max-age") == [b"86400"]


def test_cors_preflight_from_other_origin_is_forbidden() -> None:
    with pytest.raises(Forbidden):
        cors(("https://app.tickettoken.io",), preflight(b"https://evil.io"))


def test_cors_pattern_origin_is_echoed_with_credentials_and_exposes_the_originals_headers() -> None:
    origin = b"https://shop.a.tickettoken.com"
    response = cors(("*.tickettoken.com",), request([(b"origin", origin)]))
    assert values(response.headers, b"access-control-allow-origin") == [origin]
    assert values(response.headers, b"access-control-allow-credentials") == [b"true"]
    assert values(response.headers, b"vary") == [b"Origin"]
    exposed = values(response.headers, b"access-control-expose-headers")[0].lower().split(b", ")
    for name in (
        b"deprecation",
        b"sunset",
        b"x-request-id",
        b"x-correlation-id",
        b"ratelimit-limit",
        b"ratelimit-remaining",
        b"ratelimit-reset",
        b"x-ratelimit-limit",
        b"x-ratelimit-remaining",
        b"x-ratelimit-reset",
        b"retry-after",
        b"x-api-version",
        b"location",
        b"x-cache",
    ):
        assert name in exposed


@pytest.mark.parametrize(
    "origin", [b"https://eviltickettoken.com", b"https://tickettoken.com.evil.org", b"null"]
)
def test_cors_look_alike_origin_gets_no_grant_and_its_preflight_is_forbidden(origin: bytes) -> None:
    response = cors(("*.tickettoken.com",), request([(b"origin", origin)]))
    assert values(response.headers, b"access-control-allow-origin") == []
    assert values(response.headers, b"vary") == [b"Origin"]
    with pytest.raises(Forbidden):
        cors(("*.tickettoken.com",), preflight(origin))


def test_cors_pattern_preflight_is_answered_for_a_day() -> None:
    response = cors(("https://*.tickettoken.com",), preflight(b"https://app.tickettoken.com"))
    assert response.status == 204
    assert values(response.headers, b"access-control-allow-origin") == [
        b"https://app.tickettoken.com"
    ]
    assert values(response.headers, b"access-control-max-age") == [b"86400"]
    assert values(response.headers, b"vary") == [b"Origin"]


def test_cors_pattern_origin_without_credentials_gets_none() -> None:
    origin = b"https://app.tickettoken.com"
    req = request([(b"origin", origin)])
    run(Cors(("*.tickettoken.com",), credentials=False)(req, Recorder()))
    assert values(req.response_headers, b"access-control-allow-origin") == [origin]
    assert values(req.response_headers, b"access-control-allow-credentials") == []


def test_cors_answer_without_origin_still_varies_on_it_when_origins_are_listed() -> None:
    assert values(cors(("*.tickettoken.com",), request()).headers, b"vary") == [b"Origin"]


def test_cors_any_origin_beside_listed_ones_varies_on_it() -> None:
    response = cors(("*", "https://a.example"), request([(b"origin", b"https://b.example")]))
    assert values(response.headers, b"access-control-allow-origin") == [b"*"]
    assert values(response.headers, b"vary") == [b"Origin"]


def test_cors_plain_options_is_forwarded() -> None:
    recorder = Recorder()
    req = request([(b"host", b"gw"), (b"origin", ORIGIN)], method="OPTIONS")
    cors(("https://app.tickettoken.io",), req, recorder)
    assert recorder.seen is req


# --- security headers ---------------------------------------------------------------------------


def sent_headers(response: Response) -> Headers:
    """Every header the client receives: the list plus any lines pre-rendered in wire form."""
    rendered: bytes = getattr(response, "rendered", b"")
    lines = [line.split(b": ", 1) for line in rendered.split(b"\r\n") if line]
    return [*response.headers, *((name, value) for name, value in lines)]


def secured(headers: Headers) -> Response:
    response = Response(200, list(headers), b"ok")
    DEFAULT.add(response)
    return response


def test_security_headers_are_added() -> None:
    response = secured([(b"content-type", b"text/plain")])
    assert sent_headers(response) == [(b"content-type", b"text/plain"), *HELMET_DEFAULTS]
    assert values(sent_headers(response), b"x-content-type-options") == [b"nosniff"]
    assert values(sent_headers(response), b"x-frame-options") == [b"SAMEORIGIN"]


def test_upstream_security_header_keeps_its_value() -> None:
    upstream = [(b"x-frame-options", b"DENY"), (b"referrer-policy", b"origin")]
    headers = sent_headers(secured(upstream))
    assert values(headers, b"x-frame-options") == [b"DENY"]
    assert values(headers, b"referrer-policy") == [b"origin"]
    assert values(headers, b"x-content-type-options") == [b"nosniff"]
    assert sorted(name for name, _ in headers) == sorted(name for name, _ in HELMET_DEFAULTS)


def test_security_headers_can_be_replaced_added_and_removed() -> None:
    headers = SecurityHeaders(
        [
            ("content-security-policy", "default-src 'none'"),
            ("x-frame-options", None),
            ("permissions-policy", "camera=()"),
        ]
    )
    table = dict(headers.headers)
    assert table[b"content-security-policy"] == b"default-src 'none'"
    assert b"x-frame-options" not in table and b"x-frame-options" not in headers.rendered
    assert table[b"permissions-policy"] == b"camera=()"
    assert (
        table[b"strict-transport-security"] == dict(HELMET_DEFAULTS)[b"strict-transport-security"]
    )


def test_long_header_names_are_classified_but_not_remembered() -> None:
    trust = HeaderTrust(NO_PROXIES, 3000)
    recorder = Recorder()
    long_names = [b"x-" + b"a" * 8000 + str(n).encode() for n in range(20)]
    req = request([(b"host", b"gw.example"), *[(name, b"1") for name in long_names]])
    req.request_id = "req-1"
    run(trust(req, recorder))
    assert recorder.seen is not None and len(recorder.seen.headers) == 20
    assert all(len(name) <= 64 for name in trust.kinds)

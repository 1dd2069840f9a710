"""Path and host tricks: whatever the encoding, the authentication decision is made on the exact
path the upstream receives, and a request naming its host ambiguously is refused."""

from __future__ import annotations

import pytest
from support.assertions import assert_nothing_reached
from support.canary import CANARY_TARGET, assert_canary_safe, exchange, targets_seen
from support.client import build_request
from support.gateway import Fleet, GatewayProcess
from support.tokens import mint

# (path sent without a token, status, the target the upstream receives when forwarded)
PATHS = {
    # Dot segments and their encodings, out of a public path into a protected one.
    "dots-out-of-public": ("/api/v1/search/../tickets/1", 401, None),
    "encoded-dots": ("/api/v1/search/%2e%2e/tickets/1", 401, None),
    "mixed-encoded-dots": ("/api/v1/search/.%2E/tickets/1", 401, None),
    "double-encoded-dots": (
        "/api/v1/search/%252e%252e/tickets/1",
        200,
        "/api/v1/search/%252e%252e/tickets/1",
    ),
    "overlong-utf8-dots": ("/api/v1/tickets/health/%c0%ae%c0%ae/1", 401, None),
    "two-dot-leader": ("/api/v1/tickets/health/%e2%80%a5/1", 401, None),
    "health-then-up": ("/health/../api/v1/tickets/1", 401, None),
    "public-exact-then-up": ("/api/v1/tickets/health/../1", 401, None),
    "subtree-then-up": ("/api/v1/payments/webhooks/../charge", 401, None),
    # Separators in disguise.
    "encoded-slash": ("/api/v1/search/..%2ftickets/1", 400, None),
    "encoded-backslash": ("/api/v1/search/..%5ctickets/1", 400, None),
    "encoded-question-mark": ("/api/v1/tickets/health%3f/1", 400, None),
    "encoded-hash": ("/api/v1/tickets/health%23/1", 400, None),
    "encoded-nul": ("/api/v1/tickets/health%00", 400, None),
    "fragment": ("/api/v1/tickets/health#/../1", 400, None),
    # Path parameters: `..;` is `..` to servers that strip them.
    "dot-dot-semicolon": ("/api/v1/payments/webhooks/..;/charge", 400, None),
    "dot-dot-semicolon-value": ("/api/v1/payments/webhooks/..;x=1/charge", 400, None),
    "dot-semicolon": ("/api/v1/payments/webhooks/.;/x", 400, None),
    "encoded-dot-dot-semicolon": ("/api/v1/payments/webhooks/%2e%2e;/charge", 400, None),
    "parameter-on-public-name": ("/api/v1/tickets/health;x", 401, None),
    "parameter-then-up": ("/api/v1/tickets/health;/../1", 401, None),
    # Slashes and case.
    "duplicate-slashes": ("//api//v1//tickets//health", 200, "/api/v1/tickets/health"),
    "trailing-slash-on-public": ("/api/v1/tickets/health/", 200, "/api/v1/tickets/health/"),
    "upper-case-public-name": ("/api/v1/tickets/HEALTH", 401, None),
    "upper-case-prefix": ("/API/v1/search/q", 404, None),
    "upper-case-route": ("/api/v1/Search/q", 404, None),
    "encoded-unreserved-public": ("/api/v1/tickets/%68ealth", 200, "/api/v1/tickets/health"),
    "double-encoded-public": ("/api/v1/tickets/%2568ealth", 401, None),
    # Public-prefix confusion.
    "subtree-sibling": ("/api/v1/payments/webhooks-x/stripe", 401, None),
    "subtree-member": (
        "/api/v1/payments/webhooks/stripe-x",
        200,
        "/api/v1/payments/webhooks/stripe-x",
    ),
    "exact-sibling": ("/api/v1/tickets/healthz", 401, None),
    "exact-child": ("/api/v1/tickets/health/1", 401, None),
    "route-sibling": ("/api/v1/searchx/q", 404, None),
    # Query tricks: the query never takes part in the decision and travels unchanged.
    "query-with-dots": ("/api/v1/tickets/health?/../1", 200, "/api/v1/tickets/health?/../1"),
    "query-with-encoded-dots": (
        "/api/v1/tickets/health?x=%2e%2e/1",
        200,
        "/api/v1/tickets/health?x=%2e%2e/1",
    ),
    "empty-query-on-protected": ("/api/v1/tickets/1?", 401, None),
    # Request targets that are not origin-form paths.
    "asterisk": ("*", 400, None),
    "relative": ("api/v1/search/q", 400, None),
    "absolute-same-host": (
        "http://gateway.test/api/v1/tickets/health",
        200,
        "/api/v1/tickets/health",
    ),
    "absolute-same-host-default-port": (
        "HTTP://Gateway.Test:80/api/v1/search/q",
        200,
        "/api/v1/search/q",
    ),
    "absolute-other-host": ("http://evil.example/api/v1/search/q", 400, None),
    "absolute-userinfo": ("http://evil.example@gateway.test/api/v1/search/q", 400, None),
    "absolute-dots": ("http://gateway.test/api/v1/search/../tickets/1", 401, None),
}


@pytest.mark.parametrize(("sent", "status", "forwarded"), list(PATHS.values()), ids=list(PATHS))
def test_the_auth_decision_is_made_on_the_path_forwarded(
    gateway: GatewayProcess, services: Fleet, sent: str, status: int, forwarded: str | None
) -> None:
    result = exchange(gateway.port, build_request("GET", sent))

    assert result.first.status == status, result.first.body
    assert_canary_safe(result)
    seen = [target for target in targets_seen(services) if target != CANARY_TARGET]
    assert seen == ([forwarded] if forwarded else [])


def test_a_protected_path_reached_through_tricks_is_forwarded_canonical_with_a_token(
    gateway: GatewayProcess, services: Fleet
) -> None:
    response = gateway.get("/api/v1/search/%2E%2E//tickets/./%c0%ae/1", token=mint())

    assert response.status == 200
    assert services["ticket"].only_request().target == "/api/v1/tickets/%C0%AE/1"


GET_Q = b"GET /api/v1/search/q HTTP/1.1\r\n"
HOSTS = {
    "missing": (GET_Q + b"\r\n", 400),
    "duplicate": (GET_Q + b"Host: a.test\r\nHost: b.test\r\n\r\n", 400),
    "duplicate-case": (GET_Q + b"Host: a.test\r\nhOST: a.test\r\n\r\n", 400),
    "empty": (GET_Q + b"Host:\r\n\r\n", 400),
    "list": (GET_Q + b"Host: a.test, b.test\r\n\r\n", 400),
    "path": (GET_Q + b"Host: a.test/x\r\n\r\n", 400),
    "userinfo": (GET_Q + b"Host: user@a.test\r\n\r\n", 400),
    "space": (GET_Q + b"Host: a .test\r\n\r\n", 400),
    "bad-port": (GET_Q + b"Host: a.test:99999\r\n\r\n", 400),
    "port-text": (GET_Q + b"Host: a.test:http\r\n\r\n", 400),
    "ipv6-unclosed": (GET_Q + b"Host: [::1\r\n\r\n", 400),
    "ipv6-zone": (GET_Q + b"Host: [fe80::1%25eth0]\r\n\r\n", 400),
    "octal-ip": (GET_Q + b"Host: 0177.0.0.1\r\n\r\n", 400),
    "numeric-tld": (GET_Q + b"Host: 127.1\r\n\r\n", 400),
    "non-ascii": (GET_Q + b"Host: caf\xc3\xa9.test\r\n\r\n", 400),
    "too-long": (GET_Q + b"Host: " + b"a" * 300 + b".test\r\n\r\n", 400),
    "empty-port": (GET_Q + b"Host: a.test:\r\n\r\n", 200),
    "trailing-dot": (GET_Q + b"Host: A.Test.\r\n\r\n", 200),
    "http-1.0-without": (b"GET /api/v1/search/q HTTP/1.0\r\n\r\n", 200),
}


@pytest.mark.parametrize(("raw", "status"), list(HOSTS.values()), ids=list(HOSTS))
def test_a_malformed_or_ambiguous_host_is_refused(
    gateway: GatewayProcess, services: Fleet, raw: bytes, status: int
) -> None:
    result = exchange(gateway.port, raw)

    assert result.first.status == status, result.first.body
    assert_canary_safe(result)
    if status != 200:
        assert set(targets_seen(services)) <= {CANARY_TARGET}


def test_an_absolute_form_target_without_host_is_refused(
    gateway: GatewayProcess, services: Fleet
) -> None:
    raw = b"GET http://gateway.test/api/v1/search/q HTTP/1.0\r\n\r\n"

    result = exchange(gateway.port, raw)

    assert result.first.status == 400
    assert_nothing_reached(services)

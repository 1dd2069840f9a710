"""Hostile headers: what a client may not say about itself never reaches an upstream, however it
is spelled, repeated or nominated; what the gateway says instead is said exactly once.

Every spoofed value carries the marker ``spoof`` so that one check finds it anywhere.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from support.assertions import assert_problem
from support.client import RawResponse
from support.gateway import Fleet, GatewayProcess, running_gateway
from support.tokens import UNSET, mint
from support.upstream import RecordedRequest, Reply

TARGET = "/api/v1/tickets/1"
PUBLIC_TARGET = "/api/v1/search/q"
MARKER = "spoof"

# Headers only the gateway may write: identity, internal, and where the request came from.
BLOCKED = [
    "x-tenant-id",
    "x-user-id",
    "x-user-role",
    "x-user-email",
    "x-internal-service",
    "x-admin-token",
    "x-gateway-internal",
    "x-gateway-anything",
    "x-venue-id",
    "x-venue-tenant-id",
    "x-request-deadline-ms",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "forwarded",
    "x-real-ip",
    "true-client-ip",
    "x-client-ip",
]


def spellings(name: str) -> list[str]:
    """lower, UPPER, Title-Case and aLtErNaTiNg."""
    alternating = "".join(c.upper() if i % 2 else c for i, c in enumerate(name))
    return [name, name.upper(), name.title(), alternating]


def spoofing(name: str) -> list[tuple[str, str]]:
    """Every spelling, each twice, each with its own marked value."""
    return [
        (spelled, f"{MARKER}-{n}-{copy}")
        for n, spelled in enumerate(spellings(name))
        for copy in range(2)
    ]


def spoofed_values(request: RecordedRequest) -> list[tuple[str, str]]:
    return [(name, value) for name, value in request.headers if MARKER in value.lower()]


def assert_gateway_headers(request: RecordedRequest, response: RawResponse) -> None:
    """What the gateway writes itself, exactly once each, for a direct client on loopback."""
    assert request.header_values("x-forwarded-for") == ["127.0.0.1"]
    assert request.header_values("x-forwarded-proto") == ["http"]
    assert request.header_values("x-forwarded-host") == ["gateway.test"]
    assert request.header_values("x-request-id") == [response.header("x-request-id")]
    assert request.header_values("x-gateway-internal") == ["true"]


@pytest.mark.parametrize("name", BLOCKED)
def test_a_blocked_header_in_every_case_and_number_never_reaches_the_upstream(
    gateway: GatewayProcess, services: Fleet, name: str
) -> None:
    token = mint(sub="user-7", tenant_id="tenant-7", role="customer")

    response = gateway.get(TARGET, headers=spoofing(name), token=token)

    assert response.status == 200, response.body
    request = services["ticket"].only_request()
    assert spoofed_values(request) == []
    assert request.header_values("x-tenant-id") == ["tenant-7"]
    assert request.header_values("x-user-id") == ["user-7"]
    assert request.header_values("x-user-role") == ["customer"]
    assert_gateway_headers(request, response)


@pytest.mark.parametrize("name", BLOCKED)
def test_a_blocked_header_never_reaches_a_public_path(
    gateway: GatewayProcess, services: Fleet, name: str
) -> None:
    response = gateway.get(PUBLIC_TARGET, headers=spoofing(name))

    assert response.status == 200, response.body
    request = services["search"].only_request()
    assert spoofed_values(request) == []
    assert not {"x-tenant-id", "x-user-id", "x-user-role"} & request.header_names()
    assert_gateway_headers(request, response)


UNDERSCORED = ["X_Tenant_Id", "x_tenant_id", "X-Tenant_Id", "x_user_id", "X_Forwarded_For"]
UNDERSCORED += ["x_real_ip", "X_INTERNAL_SERVICE", "x-gateway_internal", "x_admin_token"]


@pytest.mark.parametrize("name", UNDERSCORED)
def test_a_blocked_name_with_underscores_is_refused(
    gateway: GatewayProcess, services: Fleet, name: str
) -> None:
    # Some servers fold '_' into '-': forwarded, it would arrive as the real header.
    response = gateway.get(TARGET, headers=[(name, MARKER)], token=mint())

    assert_problem(response, 400)
    assert services.total_requests() == 0


# The gateway's own headers, named in Connection as if they were the client's hop-by-hop ones.
GATEWAY_WRITTEN = [
    "x-tenant-id",
    "x-user-id",
    "x-user-role",
    "x-request-id",
    "x-gateway-internal",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
]


@pytest.mark.parametrize("spoof", [False, True], ids=["nominated-only", "nominated-and-sent"])
def test_connection_cannot_remove_the_gateways_own_headers(
    gateway: GatewayProcess, services: Fleet, spoof: bool
) -> None:
    headers = [("Connection", ", ".join(name.upper() for name in GATEWAY_WRITTEN))]
    if spoof:
        headers += [(name, f"{MARKER}-{name}") for name in GATEWAY_WRITTEN]
    token = mint(sub="user-3", tenant_id="tenant-3", role="customer")

    response = gateway.get(TARGET, headers=headers, token=token)

    assert response.status == 200, response.body
    request = services["ticket"].only_request()
    assert spoofed_values(request) == []
    assert request.header_values("x-tenant-id") == ["tenant-3"]
    assert request.header_values("x-user-id") == ["user-3"]
    assert request.header_values("x-user-role") == ["customer"]
    assert_gateway_headers(request, response)
    assert request.header_values("x-forwarded-port") == [str(gateway.port)]


def test_connection_naming_authorization_leaves_the_request_unauthenticated(
    gateway: GatewayProcess, services: Fleet
) -> None:
    # The gateway honours the nomination before authenticating: it never acts on a credential
    # that the upstream would not see (nor the other way round).
    headers = [("Connection", "Authorization")]

    response = gateway.get(TARGET, headers=headers, token=mint())

    assert_problem(response, 401)
    assert services.total_requests() == 0


SPOOFED_FORWARDING = [
    ("X-Forwarded-For", f"203.0.113.7, {MARKER}"),
    ("X-Forwarded-For", "198.51.100.1"),
    ("Forwarded", f'for=203.0.113.7;proto=https;host="{MARKER}.example"'),
    ("X-Real-IP", "203.0.113.8"),
    ("True-Client-IP", "203.0.113.9"),
    ("X-Client-IP", "203.0.113.10"),
    ("X-Forwarded-Proto", "https"),
    ("X-Forwarded-Host", f"{MARKER}.example"),
]
SPOOFED_ADDRESSES = ("203.0.113.", "198.51.100.")


def test_spoofed_forwarding_headers_from_an_untrusted_peer_are_replaced(
    gateway: GatewayProcess, services: Fleet
) -> None:
    response = gateway.get(TARGET, headers=SPOOFED_FORWARDING, token=mint())

    assert response.status == 200, response.body
    request = services["ticket"].only_request()
    assert_gateway_headers(request, response)
    assert not {"forwarded", "x-real-ip", "true-client-ip", "x-client-ip"} & request.header_names()
    leaked = [v for _, v in request.headers if MARKER in v or v.startswith(SPOOFED_ADDRESSES)]
    assert leaked == []


def test_a_trusted_proxys_chain_is_kept_but_other_forwarding_headers_are_not(
    service_fleet: Fleet, tmp_path: Path
) -> None:
    env = {"TRUSTED_PROXIES": "127.0.0.1/32"}
    headers = [
        ("X-Forwarded-For", "198.51.100.1"),
        ("Forwarded", "for=203.0.113.7"),
        ("X-Real-IP", "203.0.113.8"),
    ]
    with running_gateway(tmp_path, service_fleet.urls(), env=env) as proxied:
        service_fleet.reset()
        response = proxied.get(TARGET, headers=headers, token=mint())

    assert response.status == 200, response.body
    request = service_fleet["ticket"].only_request()
    assert request.header_values("x-forwarded-for") == ["198.51.100.1, 127.0.0.1"]
    assert not {"forwarded", "x-real-ip"} & request.header_names()


# Claims that would split a header line if the gateway wrote them as they are.
INJECTING_CLAIMS = [
    pytest.param({"tenant_id": "tenant-1\r\nX-Admin-Token: yes"}, id="tenant-crlf"),
    pytest.param({"tenant_id": "tenant-1\nX-Admin-Token: yes"}, id="tenant-lf"),
    pytest.param({"tenant_id": "tenant-1\rX-Admin-Token: yes"}, id="tenant-cr"),
    pytest.param({"sub": "user-1\r\nX-Tenant-Id: tenant-2"}, id="sub-crlf"),
    pytest.param({"sub": "user-1\r\n\r\nGET /admin HTTP/1.1"}, id="sub-request-splitting"),
    pytest.param({"role": "customer\r\nX-User-Role: admin"}, id="role-crlf"),
    pytest.param({"tenant_id": "tenant-1\x00"}, id="tenant-nul"),
    pytest.param({"tenant_id": "tenant-1\u2028x"}, id="tenant-line-separator"),
    pytest.param({"tenant_id": "tenant-1\x85x"}, id="tenant-next-line"),
    pytest.param({"sub": None, "user_id": "user-1\r\nX-Admin-Token: yes"}, id="user-id-crlf"),
]


@pytest.mark.parametrize("overrides", INJECTING_CLAIMS)
def test_a_claim_with_line_breaks_is_refused_never_written_as_a_header(
    gateway: GatewayProcess, services: Fleet, overrides: dict[str, str | None]
) -> None:
    claims = {name: UNSET if value is None else value for name, value in overrides.items()}
    response = gateway.get(TARGET, token=mint(**claims))

    assert_problem(response, 401)
    assert services.total_requests() == 0


def test_an_email_claim_with_line_breaks_is_never_a_header(
    gateway: GatewayProcess, services: Fleet
) -> None:
    # The email is no identity header: the token passes, and the upstream sees nothing of it.
    token = mint(email="a@example.com\r\nX-Admin-Token: yes")

    response = gateway.get(TARGET, token=token)

    assert response.status == 200, response.body
    request = services["ticket"].only_request()
    assert "x-admin-token" not in request.header_names()
    assert not [value for _, value in request.headers if "a@example.com" in value]


# -- two tenants, interleaved ---------------------------------------------------------------------

INTERLEAVED_REQUESTS = 500
CLIENT_THREADS = 16
MAX_UPSTREAM_DELAY_S = 0.02
TENANTS = {"tenant-a": "user-a", "tenant-b": "user-b"}


@pytest.fixture
def delayed_tickets(services: Fleet) -> Iterator[list[str]]:
    """Marker paths of the interleaved requests, each answered after its own random delay."""
    rng = random.Random(7)
    tenants = list(TENANTS)
    targets = [f"/api/v1/tickets/{rng.choice(tenants)}-{i}" for i in range(INTERLEAVED_REQUESTS)]
    for target in targets:
        services["ticket"].respond(Reply(delay_s=rng.uniform(0, MAX_UPSTREAM_DELAY_S)), target)
    yield targets
    services.reset()


def test_interleaved_requests_of_two_tenants_each_carry_their_own_tenant(
    gateway: GatewayProcess, services: Fleet, delayed_tickets: list[str]
) -> None:
    # One token per tenant, sent again and again: the verified-token caches are in play.
    tokens = {tenant: mint(sub=user, tenant_id=tenant) for tenant, user in TENANTS.items()}

    def send(target: str) -> tuple[str, RawResponse]:
        tenant = target.rsplit("/", 1)[1].rsplit("-", 1)[0]
        return target, gateway.get(target, token=tokens[tenant])

    started = time.monotonic()
    with ThreadPoolExecutor(CLIENT_THREADS) as pool:
        answers = list(pool.map(send, delayed_tickets, timeout=120))
    assert time.monotonic() - started < 120

    for target, response in answers:
        assert response.status == 200, (target, response.body)
        echoed = response.json()  # each client got its own request's answer
        assert (echoed["target"], echoed["request_id"]) == (target, response.header("x-request-id"))
    recorded = services["ticket"].wait_for_requests(INTERLEAVED_REQUESTS)
    assert sorted(r.target for r in recorded) == sorted(delayed_tickets)
    for request in recorded:
        tenant = request.target.rsplit("/", 1)[1].rsplit("-", 1)[0]
        assert request.header_values("x-tenant-id") == [tenant], request.target
        assert request.header_values("x-user-id") == [TENANTS[tenant]], request.target

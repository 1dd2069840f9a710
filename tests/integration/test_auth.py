"""Authentication: which paths are public, which tokens open the others, and what each refusal
looks like to the client."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from support.assertions import assert_nothing_reached, assert_problem
from support.bodies import body_for
from support.gateway import Fleet, GatewayProcess, running_gateway
from support.tokens import OTHER_SECRET, UNSET, mint, mint_unsigned

TokenFactory = Callable[[], str]

PUBLIC = [
    ("GET", "/api/v1/auth/login", "auth"),
    ("POST", "/api/v1/auth/login", "auth"),
    ("POST", "/api/v1/auth/register", "auth"),
    ("POST", "/api/v1/auth/refresh", "auth"),
    ("POST", "/api/v1/auth/forgot-password", "auth"),
    ("POST", "/api/v1/auth/reset-password", "auth"),
    ("GET", "/api/v1/auth/verify-email?token=t0k3n", "auth"),
    ("GET", "/api/v1/tickets/health", "ticket"),
    ("GET", "/api/v1/tickets/metrics", "ticket"),
    ("GET", "/api/v1/venues/health", "venue"),
    ("GET", "/api/v1/events/metrics", "event"),
    ("GET", "/api/v1/files/health", "file"),
    ("GET", "/api/v1/event/health", "event"),
    ("GET", "/api/v1/ticket/metrics", "ticket"),
    ("GET", "/api/v1/search", "search"),
    ("GET", "/api/v1/search/events", "search"),
    ("GET", "/api/v1/search/deep/down/the/tree", "search"),
    ("POST", "/api/v1/webhooks/stripe", "payment"),
    ("POST", "/api/v1/webhooks/any/thing", "payment"),
    ("POST", "/api/v1/payments/webhooks/stripe", "payment"),
    ("POST", "/api/v1/payments/webhooks/a/b/c", "payment"),
]

PROTECTED = [
    "/api/v1/auth/me",
    "/api/v1/auth/login/extra",
    "/api/v1/auth",
    "/api/v1/tickets",
    "/api/v1/tickets/1",
    "/api/v1/tickets/health/deep",
    "/api/v1/tickets/healthz",
    "/api/v1/payments/charge",
    "/api/v1/payments/webhooksX/stripe",
    "/api/v1/venue/health",
    "/api/v1/venue/1",
    "/api/v1/files/upload",
]


def assert_unauthorized(
    gateway: GatewayProcess,
    target: str,
    headers: dict[str, str] | None = None,
    token: str | None = None,
) -> None:
    response = gateway.get(target, headers=headers or {}, token=token)
    assert_problem(response, 401)
    challenge = response.header("www-authenticate") or ""
    assert challenge.startswith("Bearer"), response.headers


@pytest.mark.parametrize(("method", "target", "service"), PUBLIC)
def test_public_paths_need_no_token(
    gateway: GatewayProcess, services: Fleet, method: str, target: str, service: str
) -> None:
    body = body_for(target) if method == "POST" else None

    response = gateway.request(method, target, body=body)

    assert response.status == 200, response.body
    assert services[service].only_request().target == target


@pytest.mark.parametrize("target", PROTECTED)
def test_everything_else_needs_a_token(
    gateway: GatewayProcess, services: Fleet, target: str
) -> None:
    assert_unauthorized(gateway, target)
    assert_nothing_reached(services)


def test_a_valid_token_opens_a_protected_path_and_names_the_user(
    gateway: GatewayProcess, services: Fleet
) -> None:
    token = mint(sub="user-77", tenant_id="tenant-9", role="venue_admin")

    response = gateway.get("/api/v1/tickets/1", token=token)

    assert response.status == 200
    request = services["ticket"].only_request()
    assert request.header_values("x-user-id") == ["user-77"]
    assert request.header_values("x-tenant-id") == ["tenant-9"]
    assert request.header_values("x-user-role") == ["venue_admin"]


def test_user_id_claim_names_the_user_when_sub_is_absent(
    gateway: GatewayProcess, services: Fleet
) -> None:
    token = mint(sub=UNSET, user_id="legacy-5")

    assert gateway.get("/api/v1/tickets/1", token=token).status == 200

    assert services["ticket"].only_request().header_values("x-user-id") == ["legacy-5"]


@pytest.mark.parametrize(
    "make_token",
    [
        pytest.param(lambda: mint(expires_in_s=-30), id="expired-30s-within-leeway"),
        pytest.param(lambda: mint(not_before_in_s=30), id="nbf-30s-ahead-within-leeway"),
        pytest.param(lambda: mint(tenant_id="t_1.a:b@c-D9"), id="every-allowed-character"),
        pytest.param(lambda: mint(tenant_id="t" * 128, sub="u" * 128), id="128-characters"),
        pytest.param(lambda: mint(token_type="access"), id="type-access"),
    ],
)
def test_tokens_at_the_edge_of_validity_are_accepted(
    gateway: GatewayProcess, services: Fleet, make_token: TokenFactory
) -> None:
    response = gateway.get("/api/v1/tickets/1", token=make_token())

    assert response.status == 200, response.body
    services["ticket"].only_request()


BAD_AUTHORIZATION = [
    pytest.param({}, id="missing-header"),
    pytest.param({"Authorization": "Basic dXNlcjpwYXNz"}, id="basic-scheme"),
    pytest.param({"Authorization": "Token abc.def.ghi"}, id="other-scheme"),
    pytest.param({"Authorization": "Bearer"}, id="bearer-without-token"),
    pytest.param({"Authorization": "Bearer "}, id="bearer-empty-token"),
    pytest.param({"Authorization": "Bearer not.a.jwt"}, id="garbage-token"),
    pytest.param({"Authorization": "Bearer abc"}, id="garbage-no-dots"),
]

BAD_TOKENS = [
    pytest.param(lambda: mint(secret=OTHER_SECRET), id="other-secret"),
    pytest.param(lambda: mint_unsigned(), id="alg-none"),
    pytest.param(lambda: mint(algorithm="HS512"), id="alg-hs512"),
    pytest.param(lambda: mint(algorithm="HS384"), id="alg-hs384"),
    pytest.param(lambda: mint(issuer="someone-else"), id="wrong-issuer"),
    pytest.param(lambda: mint(expires_in_s=None), id="missing-exp"),
    pytest.param(lambda: mint(expires_in_s=-120), id="expired-beyond-leeway"),
    pytest.param(lambda: mint(not_before_in_s=120), id="nbf-beyond-leeway"),
    pytest.param(lambda: mint(token_type="refresh"), id="refresh-token"),
    pytest.param(lambda: mint(tenant_id="tenant 1"), id="tenant-with-space"),
    pytest.param(lambda: mint(tenant_id="t1\r\nX-Admin-Token: yes"), id="tenant-with-crlf"),
    pytest.param(lambda: mint(tenant_id="t1,t2"), id="tenant-with-comma"),
    pytest.param(lambda: mint(tenant_id="t" * 129), id="tenant-too-long"),
    pytest.param(lambda: mint(sub="user 1"), id="sub-with-space"),
    pytest.param(lambda: mint(sub="u\nx"), id="sub-with-newline"),
    pytest.param(lambda: mint(sub="u" * 129), id="sub-too-long"),
    pytest.param(lambda: mint(role="admin,customer"), id="role-with-comma"),
    pytest.param(lambda: mint(role="admin\r\n"), id="role-with-crlf"),
    pytest.param(lambda: mint(tenant_id="tenänt"), id="tenant-non-ascii"),
]


@pytest.mark.parametrize("headers", BAD_AUTHORIZATION)
def test_a_missing_or_malformed_authorization_header_is_refused(
    gateway: GatewayProcess, services: Fleet, headers: dict[str, str]
) -> None:
    assert_unauthorized(gateway, "/api/v1/tickets/1", headers=headers)
    assert_nothing_reached(services)


@pytest.mark.parametrize("make_token", BAD_TOKENS)
def test_an_invalid_token_is_refused(
    gateway: GatewayProcess, services: Fleet, make_token: TokenFactory
) -> None:
    assert_unauthorized(gateway, "/api/v1/tickets/1", token=make_token())
    assert_nothing_reached(services)


def test_a_refused_token_stays_refused_on_a_kept_alive_connection(
    gateway: GatewayProcess, services: Fleet
) -> None:
    good, bad = mint(), mint(secret=OTHER_SECRET)

    statuses = [gateway.get("/api/v1/tickets/1", token=t).status for t in (good, bad, good, bad)]

    assert statuses == [200, 401, 200, 401]
    assert len(services["ticket"].wait_for_requests(2)) == 2


def test_jwt_access_secret_replaces_jwt_secret_for_access_tokens(
    service_fleet: Fleet, tmp_path: Path
) -> None:
    env = {"JWT_ACCESS_SECRET": OTHER_SECRET}
    with running_gateway(tmp_path, service_fleet.urls(), env=env) as gateway:
        service_fleet.reset()
        accepted = gateway.get("/api/v1/tickets/1", token=mint(secret=OTHER_SECRET))
        refused = gateway.get("/api/v1/tickets/1", token=mint())

    assert accepted.status == 200
    assert_problem(refused, 401)
    assert len(service_fleet["ticket"].requests) == 1

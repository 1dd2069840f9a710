"""A field that may appear once, sent twice: refused before anything is decided on it.

Two ``Content-Type`` or ``Origin`` lines (or a list in one line, where the field's grammar has
none) are ambiguous: were the gateway to judge the first while the service reads the last, a
check could pass on a value the service never sees. Like a second ``Host`` or
``Content-Length`` (nginx, Envoy), they get a 400 problem with the request id, and nothing
reaches a service. Every request here is exact bytes over a raw socket.
"""

from __future__ import annotations

import pytest
from support.assertions import assert_nothing_reached, assert_problem
from support.client import RawResponse, http_request
from support.gateway import Fleet, GatewayProcess
from support.tokens import mint

APP = "https://app.tickettoken.io"
EVIL = "https://evil.example"
JSON_ROUTE = "/api/v1/tickets/1"  # the ticket route validates JSON bodies
BODY = b'{"seats": 2}'


@pytest.fixture(scope="module")
def gateway_extra_env() -> dict[str, str]:
    return {"CORS_ORIGINS": APP}


@pytest.fixture(scope="module")
def token() -> str:
    return mint(sub="singletons")


def send(
    gateway: GatewayProcess,
    method: str,
    headers: list[tuple[str, str]],
    body: bytes | None = None,
    target: str = JSON_ROUTE,
) -> RawResponse:
    return http_request(gateway.port, method, target, headers, body)


@pytest.mark.parametrize(
    "types",
    [
        ["application/json", "text/plain"],
        ["text/plain", "application/json"],
        ["application/json", "application/json"],
        ["application/json; charset=utf-8, text/html"],
        ["application/json, application/x-www-form-urlencoded"],
    ],
    ids=["json-first", "json-last", "same-twice", "list-after-parameter", "list-in-one-line"],
)
def test_more_than_one_content_type_is_refused_before_the_service(
    gateway: GatewayProcess, services: Fleet, token: str, types: list[str]
) -> None:
    headers = [("Authorization", f"Bearer {token}"), *(("Content-Type", t) for t in types)]

    response = send(gateway, "POST", headers, BODY)

    document = assert_problem(response, 400)
    assert "content-type" in str(document["detail"]).lower()
    assert_nothing_reached(services)


def test_one_content_type_with_a_quoted_comma_passes(
    gateway: GatewayProcess, services: Fleet, token: str
) -> None:
    headers = [
        ("Authorization", f"Bearer {token}"),
        ("Content-Type", 'application/json; profile="a,b"'),
    ]

    response = send(gateway, "POST", headers, BODY)

    assert response.status == 200, response.body
    assert services["ticket"].only_request().body == BODY


@pytest.mark.parametrize(
    "origins",
    [[APP, EVIL], [EVIL, APP], [APP, APP], [f"{APP}, {EVIL}"]],
    ids=["listed-first", "listed-last", "same-twice", "list-in-one-line"],
)
def test_more_than_one_origin_is_refused_before_the_service(
    gateway: GatewayProcess, services: Fleet, token: str, origins: list[str]
) -> None:
    headers = [("Authorization", f"Bearer {token}"), *(("Origin", o) for o in origins)]

    response = send(gateway, "GET", headers)

    document = assert_problem(response, 400)
    assert "origin" in str(document["detail"]).lower()
    assert response.header("access-control-allow-origin") is None
    assert_nothing_reached(services)


def test_a_preflight_with_two_origins_is_refused(gateway: GatewayProcess, services: Fleet) -> None:
    headers = [
        ("Origin", APP),
        ("Origin", EVIL),
        ("Access-Control-Request-Method", "POST"),
    ]

    response = send(gateway, "OPTIONS", headers, target="/api/v1/tickets/purchase")

    assert_problem(response, 400)
    assert response.header("access-control-allow-origin") is None
    assert_nothing_reached(services)


def test_a_preflight_naming_two_methods_is_refused(
    gateway: GatewayProcess, services: Fleet
) -> None:
    headers = [
        ("Origin", APP),
        ("Access-Control-Request-Method", "GET"),
        ("Access-Control-Request-Method", "DELETE"),
    ]

    response = send(gateway, "OPTIONS", headers, target="/api/v1/tickets/purchase")

    assert_problem(response, 400)
    assert_nothing_reached(services)


def test_requested_headers_over_two_lines_are_all_answered(
    gateway: GatewayProcess, services: Fleet
) -> None:
    headers = [
        ("Origin", APP),
        ("Access-Control-Request-Method", "POST"),
        ("Access-Control-Request-Headers", "authorization"),
        ("Access-Control-Request-Headers", "content-type, idempotency-key"),
    ]

    response = send(gateway, "OPTIONS", headers, target="/api/v1/tickets/purchase")

    assert response.status == 204
    allowed = response.header("access-control-allow-headers") or ""
    assert [name.strip() for name in allowed.split(",")] == [
        "authorization",
        "content-type",
        "idempotency-key",
    ]
    assert_nothing_reached(services)


def test_one_listed_origin_still_gets_its_cors_answer(
    gateway: GatewayProcess, services: Fleet, token: str
) -> None:
    headers = [("Authorization", f"Bearer {token}"), ("Origin", APP)]

    response = send(gateway, "GET", headers)

    assert response.status == 200
    assert response.header("access-control-allow-origin") == APP
    assert services["ticket"].only_request().header("origin") == APP


def test_two_authorization_lines_are_refused_whichever_is_valid(
    gateway: GatewayProcess, services: Fleet, token: str
) -> None:
    for pair in ([token, "not-a-token"], ["not-a-token", token], [token, token]):
        headers = [("Authorization", f"Bearer {value}") for value in pair]

        response = send(gateway, "GET", headers)

        assert_problem(response, 401)
    assert_nothing_reached(services)

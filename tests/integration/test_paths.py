"""Path normalization: one canonical path decides the route, the public check and what is sent."""

from __future__ import annotations

import pytest
from support.assertions import assert_nothing_reached, assert_problem
from support.client import RawConnection, build_request
from support.gateway import Fleet, GatewayProcess
from support.tokens import mint

CANONICAL_TICKET = "/api/v1/tickets/1"


@pytest.mark.parametrize(
    "sent",
    [
        "/api/v1/search/../tickets/1",
        "/api/v1//tickets//1",
        "//api//v1///tickets/1",
        "/api/v1/tickets/./1",
        "/api/v1/./tickets/./1",
        "/api/v1/tickets/x/../1",
        "/api/v1/search/%2e%2e/tickets/1",
        "/api/v1/search/%2E%2E/tickets/1",
        "/api/v1/search/.%2e/tickets/1",
        "/api/v1/tickets/%2e/1",
        "/api/v1/tickets/%2E/1",
        "/../../api/v1/tickets/1",
        "/%2e%2e/api/v1/tickets/1",
        "/api/v1/../../../../api/v1/tickets/1",
    ],
)
def test_the_upstream_sees_the_canonical_path(
    gateway: GatewayProcess, services: Fleet, sent: str
) -> None:
    response = gateway.get(sent, token=mint())

    assert response.status == 200, response.body
    assert services["ticket"].only_request().target == CANONICAL_TICKET


def test_a_trailing_dot_segment_leaves_a_trailing_slash(
    gateway: GatewayProcess, services: Fleet
) -> None:
    assert gateway.get("/api/v1/tickets/1/.", token=mint()).status == 200

    assert services["ticket"].only_request().target == CANONICAL_TICKET + "/"


def test_normalization_keeps_the_query_string_untouched(
    gateway: GatewayProcess, services: Fleet
) -> None:
    response = gateway.get("/api/v1//tickets/./1?next=../../x&a=%2e%2e", token=mint())

    assert response.status == 200
    assert services["ticket"].only_request().target == CANONICAL_TICKET + "?next=../../x&a=%2e%2e"


@pytest.mark.parametrize(
    "sent",
    [
        "/api/v1/auth/login/../../tickets/1",
        "/api/v1/auth/login/%2e%2e/%2e%2e/tickets/1",
        "/api/v1/search/../tickets/1",
        "/api/v1/search/%2E%2E/tickets/1",
        "/api/v1/tickets/health/../1",
        "/api/v1/tickets/health/..",
        "/api/v1/payments/webhooks/../charge",
        "/api/v1/payments/webhooks/%2e%2e/charge",
        "/api/v1/search/..//tickets/1",
    ],
)
def test_a_public_looking_path_that_resolves_elsewhere_needs_a_token(
    gateway: GatewayProcess, services: Fleet, sent: str
) -> None:
    response = gateway.get(sent)

    assert_problem(response, 401)
    assert_nothing_reached(services)


def test_percent_encoding_is_decoded_only_once(gateway: GatewayProcess, services: Fleet) -> None:
    sent = "/api/v1/search/%252e%252e/tickets/1"

    response = gateway.get(sent)

    assert response.status == 200
    assert services["search"].only_request().target == sent
    assert not services["ticket"].requests


def test_a_protected_looking_path_that_resolves_to_a_public_one_is_public(
    gateway: GatewayProcess, services: Fleet
) -> None:
    response = gateway.get("/api/v1/tickets/../search/q")

    assert response.status == 200, response.body
    assert services["search"].only_request().target == "/api/v1/search/q"


@pytest.mark.parametrize(
    "sent",
    [
        "/api/v1/tickets/a%2fb",
        "/api/v1/tickets/a%2Fb",
        "/api/v1/search/..%2f..%2ftickets/1",
        "/api/v1/tickets/a%5cb",
        "/api/v1/tickets/a%5Cb",
        "/api/v1/tickets/a%23b",
        "/api/v1/tickets/a%00b",
        "/api/v1/tickets/a%zzb",
        "/api/v1/tickets/a%4",
        "/api/v1/tickets/a%",
        "/api/v1/tickets/%G1",
    ],
)
def test_ambiguous_or_invalid_encodings_are_rejected(
    gateway: GatewayProcess, services: Fleet, sent: str
) -> None:
    response = gateway.get(sent, token=mint())

    assert_problem(response, 400)
    assert_nothing_reached(services)


def test_a_raw_backslash_in_the_path_is_rejected(gateway: GatewayProcess, services: Fleet) -> None:
    request = build_request(
        "GET", "/api/v1/search/..\\tickets\\1", [("Authorization", f"Bearer {mint()}")]
    )
    with RawConnection(gateway.port) as connection:
        connection.send(request)
        response = connection.read_response()

    assert_problem(response, 400)
    assert_nothing_reached(services)


@pytest.mark.parametrize("raw_byte", [b"\x00", b"\x01", b"\x1b", b"\x7f", b"\x80", b"\xff", b"\t"])
def test_raw_control_and_non_ascii_bytes_in_the_path_are_rejected(
    gateway: GatewayProcess, services: Fleet, raw_byte: bytes
) -> None:
    with RawConnection(gateway.port) as connection:
        connection.send(b"GET /api/v1/search/a" + raw_byte + b"b HTTP/1.1\r\nHost: x\r\n\r\n")
        response = connection.read_response()

    assert_problem(response, 400)
    assert_nothing_reached(services)

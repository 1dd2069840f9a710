"""Request ids: a well-formed one is kept end to end, anything else is replaced, every response
carries one."""

from __future__ import annotations

import re

import pytest
from support.assertions import assert_gateway_stamped
from support.client import RawConnection, build_request
from support.gateway import Fleet, GatewayProcess
from support.tokens import mint

WELL_FORMED = re.compile(r"[A-Za-z0-9._:-]{1,128}")


@pytest.mark.parametrize(
    "incoming", ["abc-123", "A.b_c:D-9", "x" * 128, "0", "f47ac10b-58cc-4372-a567-0e02b2c3d479"]
)
def test_a_well_formed_request_id_is_kept_end_to_end(
    gateway: GatewayProcess, services: Fleet, incoming: str
) -> None:
    response = gateway.get("/api/v1/search/q", headers=[("X-Request-ID", incoming)])

    assert response.header("x-request-id") == incoming
    assert services["search"].only_request().header_values("x-request-id") == [incoming]


@pytest.mark.parametrize(
    "incoming",
    [
        pytest.param("x" * 129, id="too-long"),
        pytest.param("has space", id="space"),
        pytest.param("semi;colon", id="semicolon"),
        pytest.param("comma,separated", id="comma"),
        pytest.param('quote"d', id="quote"),
        pytest.param("slash/ed", id="slash"),
        pytest.param("caf\u00e9", id="non-ascii"),
    ],
)
def test_a_malformed_request_id_is_replaced(
    gateway: GatewayProcess, services: Fleet, incoming: str
) -> None:
    response = gateway.get("/api/v1/search/q", headers=[("X-Request-ID", incoming)])

    generated = response.header("x-request-id") or ""
    assert generated != incoming
    assert WELL_FORMED.fullmatch(generated), generated
    assert services["search"].only_request().header_values("x-request-id") == [generated]


def test_two_request_ids_become_one(gateway: GatewayProcess, services: Fleet) -> None:
    headers = [("X-Request-ID", "first-id"), ("X-Request-ID", "second-id")]

    response = gateway.get("/api/v1/search/q", headers=headers)

    returned = response.header_values("x-request-id")
    assert len(returned) == 1
    assert services["search"].only_request().header_values("x-request-id") == returned


def test_an_empty_request_id_is_replaced(gateway: GatewayProcess, services: Fleet) -> None:
    with RawConnection(gateway.port) as connection:
        connection.send(build_request("GET", "/api/v1/search/q", [("X-Request-ID", "")]))
        response = connection.read_response()

    assert WELL_FORMED.fullmatch(response.header("x-request-id") or "")


def test_generated_request_ids_are_unique(gateway: GatewayProcess, services: Fleet) -> None:
    ids = {gateway.get("/api/v1/search/q").header("x-request-id") for _ in range(5)}

    assert len(ids) == 5
    assert all(WELL_FORMED.fullmatch(value or "") for value in ids)


@pytest.mark.parametrize(
    ("target", "token"),
    [
        ("/api/v1/search/q", None),
        ("/api/v1/nowhere", None),
        ("/api/v1/tickets/1", None),
        ("/api/v1/tickets/a%2fb", "valid"),
        ("/health", None),
        ("/live", None),
    ],
)
def test_every_response_carries_a_request_id_and_a_response_time(
    gateway: GatewayProcess, services: Fleet, target: str, token: str | None
) -> None:
    response = gateway.get(target, token=mint() if token else None)

    assert_gateway_stamped(response)


def test_a_rejected_request_returns_the_clients_request_id(
    gateway: GatewayProcess, services: Fleet
) -> None:
    response = gateway.get("/api/v1/tickets/1", headers=[("X-Request-ID", "trace-401")])

    assert response.status == 401
    assert response.header("x-request-id") == "trace-401"
    assert response.json()["request_id"] == "trace-401"

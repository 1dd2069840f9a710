"""An alias prefix reaches the same service paths as its route, so it gets the same protections:
the purchase limit (one bucket whichever prefix is used), body validation, and no path public
on the alias that its route protects."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from support.assertions import assert_problem
from support.bodies import purchase_body
from support.gateway import Fleet, GatewayProcess, launch_gateway, run_until_exit, running_gateway
from support.tokens import mint

PURCHASE_LIMIT = 5  # rate_limit.ticket_purchase: 5 per minute per user


def buy(gateway: GatewayProcess, token: str, target: str, event: int = 0) -> int:
    body = purchase_body(str(uuid.UUID(int=event + 1)))
    return gateway.request("POST", target, token=token, body=body).status


@pytest.mark.parametrize(
    ("buyer", "targets"),
    [
        ("buyer-alias", ["/api/v1/ticket/purchase"]),
        ("buyer-both", ["/api/v1/ticket/purchase", "/api/v1/tickets/purchase"]),
        (
            "buyer-spellings",
            ["/api/v1/ticket/Purchase/", "/api/v1/ticket/purchase;x", "/api/v1/tickets/purchase"],
        ),
    ],
)
def test_the_purchase_limit_holds_whichever_prefix_is_used(
    gateway: GatewayProcess, services: Fleet, buyer: str, targets: list[str]
) -> None:
    token = mint(sub=buyer)
    # One event per purchase: the per-(user, event) limit of 2 is not the one under test.
    answers = [buy(gateway, token, targets[n % len(targets)], n) for n in range(PURCHASE_LIMIT + 2)]

    assert answers == [200] * PURCHASE_LIMIT + [429, 429]


def test_the_per_event_limit_holds_whichever_prefix_is_used(
    gateway: GatewayProcess, services: Fleet
) -> None:
    token = mint(sub="buyer-event-alias")
    targets = ["/api/v1/ticket/purchase", "/api/v1/tickets/purchase", "/api/v1/ticket/Purchase"]
    assert [buy(gateway, token, target) for target in targets] == [200, 200, 429]


def test_a_json_body_is_validated_on_the_alias_as_on_its_route(
    gateway: GatewayProcess, services: Fleet
) -> None:
    for target in ("/api/v1/tickets/1/transfer", "/api/v1/ticket/1/transfer"):
        response = gateway.request(
            "POST",
            target,
            token=mint(),
            body=b'{"to": ',
            headers=[("Content-Type", "application/json")],
        )
        assert_problem(response, 400)
    assert services["ticket"].requests == []


def test_an_alias_cannot_open_a_path_its_route_protects(
    service_fleet: Fleet, tmp_path: Path
) -> None:
    config = {"routes": {"/ticket": {"alias_of": "/tickets", "public": ["/*"]}}}
    gateway = launch_gateway(tmp_path, service_fleet.urls(), config=config)

    assert run_until_exit(gateway) == 1
    assert "routes./ticket.public" in gateway.stderr()


def test_the_seed_alias_keeps_its_stricter_public_paths(
    gateway: GatewayProcess, services: Fleet
) -> None:
    assert gateway.get("/api/v1/venues/health").status == 200
    assert_problem(gateway.get("/api/v1/venue/health"), 401)


def test_an_alias_with_settings_of_its_own_is_refused(service_fleet: Fleet, tmp_path: Path) -> None:
    config = {"routes": {"/ticket": {"alias_of": "/tickets", "timeout_ms": 1}}}
    gateway = launch_gateway(tmp_path, service_fleet.urls(), config=config)

    assert run_until_exit(gateway) == 1
    assert "routes./ticket.timeout_ms" in gateway.stderr()


def test_an_ordinary_route_is_still_a_route_of_its_own(
    service_fleet: Fleet, tmp_path: Path
) -> None:
    config = {"routes": {"/ticket": {"alias_of": None, "service": "ticket", "public": ["/*"]}}}
    with running_gateway(tmp_path, service_fleet.urls(), config=config) as gateway:
        assert gateway.get("/api/v1/ticket/anything").status == 200

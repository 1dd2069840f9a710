"""A token from the cookie acts only for the gateway's own pages and the listed origins."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from support.assertions import assert_problem
from support.client import RawResponse
from support.gateway import Fleet, GatewayProcess, running_gateway
from support.tokens import mint

ORIGINS = ["https://app.tickettoken.com", "*.partner.example"]
TARGET = "/api/v1/marketplace/offers"


@pytest.fixture(scope="module")
def gateway(service_fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    directory = tmp_path_factory.mktemp("cross-site")
    with running_gateway(directory, service_fleet.urls(), {"cors_origins": ORIGINS}) as gateway:
        yield gateway


def send(
    gateway: GatewayProcess, method: str, origin: str | None, cookie: bool = True
) -> RawResponse:
    headers = [("Content-Type", "application/json")]
    if cookie:
        headers.append(("Cookie", f"theme=dark; access_token={mint(sub='cookie-user')}"))
    if origin is not None:
        headers.append(("Origin", origin))
    body = b"{}" if method == "POST" else None
    return gateway.request(method, TARGET, headers=headers, body=body, token=None)


@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.example",
        "https://app.tickettoken.com.evil.example",
        "https://evilpartner.example",
        "null",
        "http://gateway.test.evil.example",
    ],
)
def test_another_site_s_post_with_the_cookie_is_refused_unforwarded(
    gateway: GatewayProcess, service_fleet: Fleet, origin: str
) -> None:
    service_fleet.reset()
    response = send(gateway, "POST", origin)

    assert_problem(response, 403)
    assert response.json()["type"].endswith("cross-site-request")
    assert service_fleet["marketplace"].requests == []


@pytest.mark.parametrize(
    "origin",
    [
        "https://app.tickettoken.com",  # listed
        "https://shop.partner.example",  # listed by pattern
        "http://gateway.test",  # the gateway's own host (the Host header the client sent)
        None,  # not a browser's cross-site request
    ],
)
def test_the_gateway_s_own_and_listed_origins_may_use_the_cookie(
    gateway: GatewayProcess, service_fleet: Fleet, origin: str | None
) -> None:
    service_fleet.reset()
    response = send(gateway, "POST", origin)

    assert response.status == 200, response.body
    forwarded = service_fleet["marketplace"].only_request()
    assert forwarded.header("x-user-id") == "cookie-user"
    assert "access_token" not in (forwarded.header("cookie") or "")


def test_a_read_and_other_credentials_are_not_checked(
    gateway: GatewayProcess, service_fleet: Fleet
) -> None:
    read = send(gateway, "GET", "https://evil.example")
    bearer = gateway.request(
        "POST",
        TARGET,
        headers=[("Origin", "https://evil.example"), ("Content-Type", "application/json")],
        body=b"{}",
        token=mint(sub="bearer-user"),
    )

    assert read.status == 200
    assert bearer.status == 200


def test_without_the_cookie_another_site_gets_the_usual_401(gateway: GatewayProcess) -> None:
    assert_problem(send(gateway, "POST", "https://evil.example", cookie=False), 401)

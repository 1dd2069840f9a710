"""Fields a client sends twice where the gateway acts on one value: never "the first line wins".

``X-Request-ID`` sent twice is no id (the gateway's logs and a service's could each pick a
different line): the gateway makes a new one. ``Idempotency-Key`` sent twice on a route where the
key lets a POST be retried is a 400 before anything is sent: the service dedupes on one line and
the retry decision on another would be a guess that can charge a payment twice. Elsewhere the
key decides nothing at the gateway and passes on untouched. Exact bytes over raw sockets.
"""

from __future__ import annotations

import pytest
from support.assertions import assert_nothing_reached, assert_problem
from support.client import RawResponse, http_request
from support.gateway import Fleet, GatewayProcess
from support.tokens import mint

TICKETS = "/api/v1/tickets/1"
CHARGES = "/api/v1/payments/charges"  # idempotency_key_retries: true
EVENTS = "/api/v1/events"  # POST without key retries


@pytest.fixture(scope="module")
def token() -> str:
    return mint(sub="repeated-fields")


def send(
    gateway: GatewayProcess,
    method: str,
    target: str,
    headers: list[tuple[str, str]],
    body: bytes | None = None,
) -> RawResponse:
    return http_request(gateway.port, method, target, headers, body)


@pytest.mark.parametrize(
    "ids",
    [["client-a", "client-b"], ["client-a", "client-a"], ["bad id!", "client-b"]],
    ids=["two-valid", "same-twice", "invalid-then-valid"],
)
def test_two_request_ids_are_no_id_a_new_one_is_made(
    gateway: GatewayProcess, services: Fleet, token: str, ids: list[str]
) -> None:
    headers = [("Authorization", f"Bearer {token}"), *(("X-Request-ID", i) for i in ids)]

    response = send(gateway, "GET", TICKETS, headers)

    assert response.status == 200, response.body
    made = response.header("x-request-id")
    assert made is not None and made not in ids, made
    # The service and the client see the same, single id.
    assert services["ticket"].only_request().header_values("x-request-id") == [made]


def test_one_request_id_is_still_kept(gateway: GatewayProcess, services: Fleet, token: str) -> None:
    headers = [("Authorization", f"Bearer {token}"), ("X-Request-ID", "client-a")]

    response = send(gateway, "GET", TICKETS, headers)

    assert response.header("x-request-id") == "client-a"
    assert services["ticket"].only_request().header_values("x-request-id") == ["client-a"]


@pytest.mark.parametrize("keys", [["k-1", "k-2"], ["k-1", "k-1"], ["", "k-2"]])
def test_two_idempotency_keys_where_the_key_allows_retries_are_refused(
    gateway: GatewayProcess, services: Fleet, token: str, keys: list[str]
) -> None:
    headers = [("Authorization", f"Bearer {token}"), *(("Idempotency-Key", k) for k in keys)]

    response = send(gateway, "POST", CHARGES, headers, b"{}")

    document = assert_problem(response, 400)
    assert "idempotency-key" in str(document["detail"]).lower()
    assert_nothing_reached(services)


def test_one_idempotency_key_passes(gateway: GatewayProcess, services: Fleet, token: str) -> None:
    headers = [("Authorization", f"Bearer {token}"), ("Idempotency-Key", "k-1")]

    response = send(gateway, "POST", CHARGES, headers, b"{}")

    assert response.status == 200, response.body
    assert services["payment"].only_request().header_values("idempotency-key") == ["k-1"]


def test_two_idempotency_keys_where_the_key_decides_nothing_pass_untouched(
    gateway: GatewayProcess, services: Fleet, token: str
) -> None:
    headers = [
        ("Authorization", f"Bearer {token}"),
        ("Content-Type", "application/json"),
        ("Idempotency-Key", "k-1"),
        ("Idempotency-Key", "k-2"),
    ]

    response = send(gateway, "POST", EVENTS, headers, b"{}")

    assert response.status == 200, response.body
    assert services["event"].only_request().header_values("idempotency-key") == ["k-1", "k-2"]

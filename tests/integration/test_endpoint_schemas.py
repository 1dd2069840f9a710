"""The original gateway's body and parameter schemas, shipped as configuration: a body that fits
reaches its service byte for byte; a missing field, an unknown one or a wrong type is a 400
naming the field, and the service sees nothing. One keep-alive connection per endpoint."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support.assertions import assert_problem
from support.client import RawConnection, RawResponse, build_request
from support.gateway import Fleet, GatewayProcess, launch_gateway, run_until_exit
from support.tokens import mint

UUID_A = "3f2b8c1e-9d4a-4c6b-8e2f-1a2b3c4d5e6f"
UUID_B = "a1b2c3d4-e5f6-4a7b-9c8d-0e1f2a3b4c5d"


@dataclass(frozen=True)
class Case:
    path: str
    service: str
    body: dict[str, Any]
    required: tuple[str, ...]
    # A field and a value of the wrong type for it.
    wrong: tuple[str, Any]


TICKET_LINE = {"ticketTypeId": UUID_B, "quantity": 2, "seatNumbers": ["A1", "A2"]}
CASES = [
    Case(
        "/api/v1/tickets/purchase",
        "ticket",
        {"userId": UUID_A, "eventId": UUID_B, "tickets": [TICKET_LINE], "metadata": {"a": [1]}},
        ("userId", "eventId", "tickets"),
        ("tickets", {"ticketTypeId": UUID_B}),
    ),
    Case(
        "/api/v1/tickets/types",
        "ticket",
        {
            "eventId": UUID_A,
            "name": "Floor",
            "price": 45.5,
            "quantity": 500,
            "maxPerPurchase": 4,
            "saleStartDate": "2027-01-01T10:00:00Z",
            "saleEndDate": "2027-02-01",
        },
        ("eventId", "name", "price", "quantity", "maxPerPurchase", "saleStartDate", "saleEndDate"),
        ("quantity", "500"),
    ),
    Case(
        "/api/v1/tickets/transfer",
        "ticket",
        {"ticketId": UUID_A, "toUserId": UUID_B, "reason": "gift"},
        ("ticketId", "toUserId"),
        ("reason", 7),
    ),
    Case(
        "/api/v1/tickets/validate-qr",
        "ticket",
        {"qrCode": "TT:abc", "eventId": UUID_A, "entrance": "North"},
        ("qrCode", "eventId"),
        ("qrCode", ["TT:abc"]),
    ),
    Case(
        "/api/v1/payments",
        "payment",
        {
            "venueId": UUID_A,
            "eventId": UUID_B,
            "tickets": [{"ticketTypeId": UUID_A, "quantity": 1, "price": 20}],
            "paymentMethod": {"type": "card", "token": "tok_visa"},
            "deviceFingerprint": "fp-1",
            "sessionData": {"actions": [{"type": "click", "timestamp": 1.5}]},
        },
        ("venueId", "eventId", "tickets", "paymentMethod", "deviceFingerprint"),
        ("paymentMethod", "card"),
    ),
    Case(
        "/api/v1/payments/calculate-fees",
        "payment",
        {"venueId": UUID_A, "amount": 99.99, "ticketCount": 3},
        ("venueId", "amount", "ticketCount"),
        ("ticketCount", True),
    ),
    Case(
        f"/api/v1/payments/{UUID_A}/refund",
        "payment",
        {"amount": 10, "reason": "event cancelled"},
        ("reason",),
        ("amount", "10"),
    ),
    Case(
        "/api/v1/auth/login",
        "auth",
        {"email": "fan@example.com", "password": "correct horse"},
        ("email", "password"),
        ("password", 12345678),
    ),
    Case(
        "/api/v1/auth/register",
        "auth",
        {
            "email": "fan@example.com",
            "password": "correct horse",
            "firstName": "Ada",
            "lastName": "Lovelace",
            "tenant_id": UUID_A,
        },
        ("email", "password", "firstName", "lastName", "tenant_id"),
        ("firstName", None),
    ),
    Case(
        "/api/v1/auth/refresh",
        "auth",
        {"refreshToken": "r.t.x"},
        ("refreshToken",),
        ("refreshToken", {"t": 1}),
    ),
    Case(
        "/api/v1/auth/forgot-password",
        "auth",
        {"email": "fan@example.com"},
        ("email",),
        ("email", 1),
    ),
    Case(
        "/api/v1/auth/reset-password",
        "auth",
        {"token": "t0k3n", "newPassword": "new password"},
        ("token", "newPassword"),
        ("newPassword", False),
    ),
    Case(
        "/api/v1/marketplace/listings",
        "marketplace",
        {"ticketId": UUID_A, "price": 120, "venueId": UUID_B},
        ("ticketId", "price", "venueId"),
        ("price", "120"),
    ),
    # The alias carries its route's endpoints, schemas included.
    Case(
        "/api/v1/ticket/transfer",
        "ticket",
        {"ticketId": UUID_A, "toUserId": UUID_B},
        ("ticketId", "toUserId"),
        ("toUserId", 5),
    ),
]


def encoded(body: object) -> bytes:
    # Spaces and key order as a client wrote them: what passes must pass unchanged.
    return json.dumps(body, indent=1).encode()


@pytest.fixture
def connection(gateway: GatewayProcess) -> Iterator[RawConnection]:
    with RawConnection(gateway.port) as open_connection:
        yield open_connection


def post(connection: RawConnection, path: str, body: bytes) -> RawResponse:
    headers = [("Authorization", f"Bearer {mint()}"), ("Content-Type", "application/json")]
    connection.send(build_request("POST", path, headers, body))
    return connection.read_response()


def fields(response: RawResponse) -> dict[str, str]:
    assert_problem(response, 400)
    document = response.json()
    assert document["type"].endswith("/validation-failed")
    return {error["field"]: error["message"] for error in document["errors"]}


@pytest.mark.parametrize("case", CASES, ids=[c.path.rsplit("/", 1)[-1] for c in CASES])
def test_each_endpoint_schema(case: Case, connection: RawConnection, services: Fleet) -> None:
    good = encoded(case.body)
    passed = post(connection, case.path, good)
    assert passed.status == 200, passed.body
    forwarded = services[case.service].only_request()
    assert (forwarded.path, forwarded.body) == (case.path, good)

    for name in case.required:
        missing = {k: v for k, v in case.body.items() if k != name}
        assert fields(post(connection, case.path, encoded(missing))) == {
            f"body.{name}": "is required"
        }
    unknown = fields(post(connection, case.path, encoded({**case.body, "isAdmin": True})))
    assert unknown == {"body.isAdmin": "is not allowed"}
    name, value = case.wrong
    wrong = fields(post(connection, case.path, encoded({**case.body, name: value})))
    assert list(wrong) == [f"body.{name}"]
    assert wrong[f"body.{name}"].startswith("must ")
    assert fields(post(connection, case.path, b"")) == {"body": "is required"}
    assert services.total_requests() == 1


def test_a_refund_needs_a_uuid_payment_id(connection: RawConnection, services: Fleet) -> None:
    body = encoded({"reason": "duplicate charge"})
    for target in (
        "/api/v1/payments/12345/refund",
        "/api/v1/payments/not-a-uuid/REFUND/",
        f"/api/v1/payments/{UUID_A}x/refund",
        f"/api/v1/payments/{UUID_A};x/refund",  # the service may read the segment whole
    ):
        assert fields(post(connection, target, body)) == {"params.id": "must be a UUID"}
    both = fields(post(connection, "/api/v1/payments/1/refund", encoded({"reason": 1})))
    assert both == {"params.id": "must be a UUID"}  # judged before the body is read
    upper = UUID_A.upper()
    assert post(connection, f"/api/v1/payments/{upper}/refund/", body).status == 200
    assert services["payment"].only_request().path == f"/api/v1/payments/{upper}/refund/"


def test_paths_beside_the_schemas_are_forwarded_unchecked(
    connection: RawConnection, services: Fleet
) -> None:
    webhook = b"\x00not json at all"
    connection.send(build_request("POST", "/api/v1/payments/webhooks/stripe", [], webhook))
    assert connection.read_response().status == 200
    assert services["payment"].only_request().body == webhook
    services.reset()
    # Another method or a deeper path is not the endpoint.
    assert post(connection, f"/api/v1/payments/{UUID_A}/refund/items", b"[]").status == 200
    assert post(connection, "/api/v1/tickets/purchase/quote", b'{"any": 1}').status == 200
    assert services.total_requests() == 2


def test_verify_email_needs_its_token(connection: RawConnection, services: Fleet) -> None:
    connection.send(build_request("GET", "/api/v1/auth/verify-email"))
    assert fields(connection.read_response()) == {"query.token": "is required"}
    connection.send(build_request("GET", "/api/v1/auth/verify-email?token=" + "t" * 257))
    assert "query.token" in fields(connection.read_response())
    connection.send(build_request("GET", "/api/v1/auth/verify-email?token=abc"))
    assert connection.read_response().status == 200
    assert services["auth"].only_request().target == "/api/v1/auth/verify-email?token=abc"


def test_hostile_bodies_are_bounded(connection: RawConnection, services: Fleet) -> None:
    path = "/api/v1/tickets/purchase"
    base = {"userId": UUID_A, "eventId": UUID_B, "tickets": [TICKET_LINE]}
    deep: Any = 1
    for _ in range(200):
        deep = {"x": deep}
    nested = fields(post(connection, path, encoded({**base, "metadata": deep})))
    assert nested == {"body": "nested deeper than 64 levels"}
    huge = fields(post(connection, path, b'{"tickets": [' + b"1," * 20_000 + b"1]}"))
    assert huge == {"body": "holds more than 10000 values"}
    many = fields(post(connection, path, encoded({**base, "tickets": [TICKET_LINE] * 51})))
    assert many == {"body.tickets": "must hold at most 50 items"}
    # Fifty bad lines and a thousand unknown keys: the problem names at most 20 fields.
    bad_lines = {**base, "tickets": [{"quantity": 0}] * 50}
    assert len(fields(post(connection, path, encoded(bad_lines)))) == 20
    noisy = {**base, **{f"k{i}" * 40: i for i in range(1000)}}
    named = fields(post(connection, path, encoded(noisy)))
    assert len(named) == 20
    assert all(len(field) <= len("body.") + 64 + 3 for field in named)
    assert services.total_requests() == 0


def test_a_missing_schema_file_stops_start_up_naming_the_key(
    services: Fleet, tmp_path: Path
) -> None:
    endpoint = {"path": "/x", "methods": ["POST"], "validation": {"body": "nowhere.json"}}
    config = {"routes": {"/marketplace": {"endpoints": [endpoint]}}}
    gateway = launch_gateway(tmp_path, services.urls(), config)

    assert run_until_exit(gateway) == 1
    assert "routes./marketplace.endpoints[0].validation.body: cannot read" in gateway.stderr()

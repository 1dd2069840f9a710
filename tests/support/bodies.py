"""Bodies that pass the shipped endpoint schemas (config/schemas), for tests about something
else (limits, retries, public paths) that post to those endpoints."""

from __future__ import annotations

import json
import uuid

UUID_A = "3f2b8c1e-9d4a-4c6b-8e2f-1a2b3c4d5e6f"
UUID_B = "a1b2c3d4-e5f6-4a7b-9c8d-0e1f2a3b4c5d"


def purchase_body(event_id: str = UUID_B) -> bytes:
    """A purchase the schema accepts, for one event (a UUID: the purchase limits count per
    user and event)."""
    tickets = [{"ticketTypeId": UUID_B, "quantity": 1}]
    return json.dumps({"userId": UUID_A, "eventId": event_id, "tickets": tickets}).encode()


PURCHASE_BODY = purchase_body()
LOGIN_BODY = b'{"email": "fan@example.com", "password": "correct horse"}'

# Path below /api/v1/<prefix> -> a body its schema accepts.
BY_ENDPOINT = {
    "/auth/login": LOGIN_BODY,
    "/auth/register": json.dumps(
        {
            "email": "fan@example.com",
            "password": "correct horse",
            "firstName": "Ada",
            "lastName": "Lovelace",
            "tenant_id": UUID_A,
        }
    ).encode(),
    "/auth/refresh": b'{"refreshToken": "r.t.x"}',
    "/auth/forgot-password": b'{"email": "fan@example.com"}',
    "/auth/reset-password": b'{"token": "t0k3n", "newPassword": "new password"}',
    "/tickets/purchase": PURCHASE_BODY,
    "/ticket/purchase": PURCHASE_BODY,
}


def body_for(target: str) -> bytes:
    """A body the endpoint's schema accepts, or ``{}`` where no schema applies."""
    path = target.split("?", 1)[0].removeprefix("/api/v1").rstrip("/").lower()
    return BY_ENDPOINT.get(path, b"{}")


def any_purchase() -> bytes:
    """A purchase for an event of its own: counted by the per-user purchase limit, never by
    the per-event one."""
    return purchase_body(str(uuid.uuid4()))

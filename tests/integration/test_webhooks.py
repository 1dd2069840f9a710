"""Webhooks: Stripe's POST reaches payment-service byte for byte, with no token and its signature
headers intact, because the signature is computed over those exact bytes."""

from __future__ import annotations

from support.assertions import assert_nothing_reached, assert_problem
from support.client import RawConnection, build_request
from support.gateway import Fleet, GatewayProcess
from support.upstream import Reply

WEBHOOK = "/api/v1/webhooks/stripe"

# Bytes a re-serializing proxy would change: key order, spacing, escapes, CRLF, non-UTF-8, padding.
ODD_BODY = (
    b'{"type":"charge.succeeded" ,  "id" : "evt_1",\r\n'
    b'  "data":{"z":1,"a":[1.0, 1e3, -0.0],"s":"caf\\u00e9 \xc3\xa9 \xff\xfe"}}  \t\r\n  '
)
STRIPE_HEADERS = [
    ("Content-Type", "application/json; charset=utf-8"),
    (
        "Stripe-Signature",
        "t=1492774577,v1=5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd",
    ),
    ("Stripe-Webhook-Id", "wh_1Mr5jPLkdIwHu7ix"),
]


def test_a_stripe_webhook_reaches_payment_service_byte_for_byte(
    gateway: GatewayProcess, services: Fleet
) -> None:
    response = gateway.request(
        "POST", "/api/v1/webhooks/stripe", headers=STRIPE_HEADERS, body=ODD_BODY
    )

    assert response.status == 200, response.body
    received = services["payment"].only_request()
    assert received.target == "/api/v1/webhooks/stripe"
    assert received.body == ODD_BODY
    for name, value in STRIPE_HEADERS:
        assert received.header_values(name) == [value]


def test_a_chunked_webhook_body_arrives_byte_for_byte(
    gateway: GatewayProcess, services: Fleet
) -> None:
    pieces = [ODD_BODY[:10], ODD_BODY[10:11], ODD_BODY[11:]]
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
    headers = [*STRIPE_HEADERS, ("Transfer-Encoding", "chunked")]
    with RawConnection(gateway.port) as connection:
        connection.send(build_request("POST", "/api/v1/webhooks/stripe", headers) + chunked)
        response = connection.read_response()

    assert response.status == 200
    assert services["payment"].only_request().body == ODD_BODY


def test_the_payment_webhooks_subtree_is_public_too(
    gateway: GatewayProcess, services: Fleet
) -> None:
    response = gateway.request(
        "POST", "/api/v1/payments/webhooks/stripe", headers=STRIPE_HEADERS, body=ODD_BODY
    )

    assert response.status == 200
    assert services["payment"].only_request().body == ODD_BODY


def test_webhooks_accept_only_post(gateway: GatewayProcess, services: Fleet) -> None:
    response = gateway.get("/api/v1/webhooks/stripe")

    assert_problem(response, 405)
    assert_nothing_reached(services)


def test_the_upstreams_answer_to_a_webhook_reaches_the_sender(
    gateway: GatewayProcess, services: Fleet
) -> None:
    services["payment"].respond(Reply(status=400, body=b'{"error":"bad signature"}'))

    response = gateway.request(
        "POST", "/api/v1/webhooks/stripe", headers=STRIPE_HEADERS, body=b"{}"
    )

    assert response.status == 400
    assert response.body == b'{"error":"bad signature"}'

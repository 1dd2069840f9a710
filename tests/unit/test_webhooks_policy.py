"""The StripeWebhook policy on its own (policies/webhooks.py): what reaches the next handler,
what is answered instead, and what is counted; memory events on an injected clock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from support.stripe import SECRET, stripe_signature

from api_gateway.errors import InvalidWebhookSignature, PayloadTooLarge
from api_gateway.policies.webhooks import Deduplication, StripeWebhook, WebhookCounts
from api_gateway.stores import StoreUnavailable
from api_gateway.types import Body, Request, Response
from api_gateway.webhook_events import EventLog, MemoryEvents
from api_gateway.webhooks import StripeSignatures

NOW = 1_700_000_000.0
BODY = b'{"id": "evt_1", "type": "invoice.paid"}'
MAX_BYTES = 1024


class Service:
    """The next handler: records the bodies it gets and answers ``status``."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.bodies: list[bytes] = []

    async def __call__(self, request: Request) -> Response:
        assert isinstance(request.body, bytes)
        assert request.content_length == len(request.body)
        self.bodies.append(request.body)
        return Response(self.status, [], b"ok")


class Chunks:
    """A body arriving in pieces, as the data plane's stream delivers it."""

    def __init__(self, *pieces: bytes) -> None:
        self.pieces = pieces
        self.aborted = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for piece in self.pieces:
            yield piece

    def abort(self) -> None:
        self.aborted = True


class DownEvents:
    """An event store that cannot answer (Redis down)."""

    async def claim(self, event: str, token: str, in_flight_ms: int) -> int:
        raise StoreUnavailable("redis at 127.0.0.1:1 unavailable")

    async def seen(self, event: str, ttl_ms: int) -> None:
        raise StoreUnavailable("redis at 127.0.0.1:1 unavailable")

    async def release(self, event: str, token: str) -> None:
        raise StoreUnavailable("redis at 127.0.0.1:1 unavailable")


def policy(dedupe: bool = True, events: EventLog | None = None) -> StripeWebhook:
    log = events or MemoryEvents(100, lambda: 0.0)
    deduplication = Deduplication(log, 86_400_000, lambda: 0.0) if dedupe else None
    signatures = StripeSignatures([SECRET], 300.0)
    return StripeWebhook(signatures, deduplication, WebhookCounts(), MAX_BYTES, 40_000, lambda: NOW)


def delivery(body: Body = BODY, signature: str | None = None, method: str = "POST") -> Request:
    signed = (
        body
        if isinstance(body, bytes)
        else b"".join(body.pieces)
        if isinstance(body, Chunks)
        else b""
    )
    header = stripe_signature(signed, t=int(NOW)) if signature is None else signature
    headers = [(b"content-type", b"application/json"), (b"stripe-signature", header.encode())]
    return Request(method, b"/api/v1/webhooks/stripe", headers, body, "127.0.0.1")


def answer(webhook: StripeWebhook, service: Service, request: Request) -> Response:
    return asyncio.run(webhook(request, service))


def test_a_verified_delivery_reaches_the_service_with_its_exact_bytes() -> None:
    webhook, service = policy(), Service()

    assert answer(webhook, service, delivery()).status == 200
    assert service.bodies == [BODY]
    assert webhook.counts.verified == 1


def test_a_streamed_body_is_buffered_and_forwarded_whole() -> None:
    webhook, service = policy(), Service()

    assert answer(webhook, service, delivery(Chunks(BODY[:7], b"", BODY[7:]))).status == 200
    assert service.bodies == [BODY]


@pytest.mark.parametrize(
    "signature",
    [
        "",
        "t=1700000000",
        f"v1={'a' * 64}",
        stripe_signature(BODY, ("whsec_forger",), t=int(NOW)),
        stripe_signature(BODY, t=int(NOW) - 301),
        stripe_signature(BODY, t=int(NOW) + 301),
    ],
)
def test_a_bad_signature_is_refused_and_counted_and_nothing_is_forwarded(signature: str) -> None:
    webhook, service = policy(), Service()

    with pytest.raises(InvalidWebhookSignature):
        answer(webhook, service, delivery(signature=signature))
    assert service.bodies == []
    assert (webhook.counts.rejected, webhook.counts.verified) == (1, 0)


def test_a_missing_header_is_refused() -> None:
    webhook, service = policy(), Service()
    request = Request("POST", b"/api/v1/webhooks/stripe", [], BODY, "127.0.0.1")

    with pytest.raises(InvalidWebhookSignature, match="missing"):
        answer(webhook, service, request)
    assert service.bodies == []


def test_a_streamed_body_past_the_limit_is_cut_off_unhashed() -> None:
    webhook, service = policy(), Service()
    body = Chunks(b"x" * 1000, b"x" * 1000, b"never read")
    request = delivery(body, signature=stripe_signature(b"x" * 2000, t=int(NOW)))

    with pytest.raises(PayloadTooLarge):
        answer(webhook, service, request)
    assert body.aborted
    assert service.bodies == []
    assert webhook.counts.verified == webhook.counts.rejected == 0


def test_a_duplicate_is_answered_without_forwarding() -> None:
    webhook, service = policy(), Service()

    first = answer(webhook, service, delivery())
    second = answer(webhook, service, delivery())

    assert (first.status, second.status) == (200, 200)
    assert second.body == b'{"received":true,"duplicate":true}'
    assert service.bodies == [BODY]
    assert webhook.counts.duplicates == 1


def test_a_delivery_the_service_failed_reaches_it_again() -> None:
    webhook, failing, healthy = policy(), Service(500), Service()

    assert answer(webhook, failing, delivery()).status == 500
    assert answer(webhook, healthy, delivery()).status == 200
    assert answer(webhook, healthy, delivery()).status == 200

    assert failing.bodies == [BODY]
    assert healthy.bodies == [BODY]


async def concurrently(webhook: StripeWebhook) -> tuple[int, int, int]:
    release = asyncio.Event()

    async def slow(request: Request) -> Response:
        await release.wait()
        return Response(200, [], b"")

    first = asyncio.ensure_future(webhook(delivery(), slow))
    await asyncio.sleep(0)
    second = await webhook(delivery(), slow)
    release.set()
    done = await first
    third = await webhook(delivery(), slow)
    return done.status, second.status, third.status


def test_a_second_delivery_while_the_first_is_in_flight_gets_409() -> None:
    webhook = policy()

    assert asyncio.run(concurrently(webhook)) == (200, 409, 200)
    assert (webhook.counts.in_flight, webhook.counts.duplicates) == (1, 1)


async def cancelled_then_retried(webhook: StripeWebhook, service: Service) -> int:
    async def hangs(request: Request) -> Response:
        await asyncio.Event().wait()
        raise AssertionError("never answered")

    first = asyncio.ensure_future(webhook(delivery(), hangs))
    await asyncio.sleep(0)
    first.cancel()
    await asyncio.gather(first, return_exceptions=True)
    for _ in range(3):  # the release runs as a task of its own
        await asyncio.sleep(0)
    return (await webhook(delivery(), service)).status


def test_a_delivery_cut_short_releases_its_claim() -> None:
    webhook, service = policy(), Service()

    assert asyncio.run(cancelled_then_retried(webhook, service)) == 200
    assert service.bodies == [BODY]


def test_with_the_event_store_down_a_verified_delivery_is_forwarded_unchecked() -> None:
    webhook, service = policy(events=DownEvents()), Service()

    assert answer(webhook, service, delivery()).status == 200
    assert answer(webhook, service, delivery()).status == 200
    with pytest.raises(InvalidWebhookSignature):
        answer(webhook, service, delivery(signature=stripe_signature(BODY, ("whsec_x",))))

    assert service.bodies == [BODY, BODY]
    assert (webhook.counts.unchecked, webhook.counts.rejected) == (2, 1)


def test_without_dedupe_or_without_an_id_every_verified_delivery_is_forwarded() -> None:
    service = Service()
    no_id = b'{"object": "event"}'

    answer(policy(dedupe=False), service, delivery())
    answer(policy(dedupe=False), service, delivery())
    webhook = policy()
    answer(webhook, service, delivery(no_id))
    answer(webhook, service, delivery(no_id))

    assert service.bodies == [BODY, BODY, no_id, no_id]


def test_other_methods_pass_untouched() -> None:
    webhook, service = policy(), Service()

    request = delivery(b"", signature="garbage", method="PUT")
    request.content_length = 0
    answer(webhook, service, request)

    assert service.bodies == [b""]
    assert webhook.counts.rejected == 0

"""Verified Stripe webhooks: a delivery reaches payment-service only with a valid signature, and
an event it already answered 2xx is not forwarded again.

    POST ─▶ Stripe-Signature missing, malformed, t outside the tolerance? 400
         ─▶ body buffered (within the route's limit: 413) ─▶ no v1 matches? 400
         ─▶ event id ─▶ seen? 200 {"received": true, "duplicate": true}
                     ─▶ in flight elsewhere? 409 (Stripe retries later)
                     ─▶ claimed (or the store is down: unchecked) ─▶ service, the same bytes
         ─▶ 2xx: seen for the dedupe TTL; anything else: released, so Stripe's retry gets through

Only on the endpoints ``webhooks.stripe.paths`` names (webhook_endpoints.py; pipeline.py gives
them chains of their own), and only once ``STRIPE_WEBHOOK_SECRET`` is set.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from typing import Final

from api_gateway.errors import InvalidWebhookSignature, PayloadTooLarge
from api_gateway.http.body import read_whole
from api_gateway.stores import StoreUnavailable
from api_gateway.types import Handler, Request, Response
from api_gateway.webhook_events import IN_FLIGHT, SEEN, EventLog
from api_gateway.webhooks import (
    SignatureError,
    StripeSignatures,
    event_id,
    parse_signature,
    signature_header,
)

log = logging.getLogger("api_gateway")
JSON: Final = b"application/json"
DUPLICATE: Final = b'{"received":true,"duplicate":true}'
IN_FLIGHT_BODY: Final = b'{"received":false,"in_flight":true}'
OUTAGE_LOG_EVERY_MS: Final = 10_000.0


class WebhookCounts:
    """What the webhook endpoints decided, for the metrics exporter."""

    __slots__ = ("duplicates", "in_flight", "rejected", "unchecked", "verified")

    def __init__(self) -> None:
        self.verified = 0  # a signature matched
        self.rejected = 0  # 400: missing, malformed, stale, future or no match
        self.duplicates = 0  # answered 200 without forwarding
        self.in_flight = 0  # answered 409: the same event was being forwarded
        self.unchecked = 0  # verified, forwarded without dedupe: the event store was down


class Deduplication:
    """The event store shared by the webhook endpoints, and its outage log (once per
    ``OUTAGE_LOG_EVERY_MS`` at most: an outage must not flood the log)."""

    __slots__ = ("clock_ms", "events", "logged_at", "ttl_ms")

    def __init__(self, events: EventLog, ttl_ms: int, clock_ms: Callable[[], float]) -> None:
        self.events, self.ttl_ms, self.clock_ms = events, ttl_ms, clock_ms
        self.logged_at = -OUTAGE_LOG_EVERY_MS

    def outage(self, exc: StoreUnavailable) -> None:
        now = self.clock_ms()
        if now - self.logged_at >= OUTAGE_LOG_EVERY_MS:
            self.logged_at = now
            log.warning(
                "Stripe webhook deduplication skipped: event store unavailable",
                extra={"reason": str(exc)},
            )


class StripeWebhook:
    """The policy of one webhook endpoint; ``dedupe`` None forwards every verified delivery."""

    def __init__(
        self,
        signatures: StripeSignatures,
        dedupe: Deduplication | None,
        counts: WebhookCounts,
        max_bytes: int,
        in_flight_ms: int,
        wall_clock_s: Callable[[], float],
    ) -> None:
        self.signatures, self.dedupe, self.counts = signatures, dedupe, counts
        self.max_bytes, self.in_flight_ms = max_bytes, in_flight_ms
        self.wall_clock_s = wall_clock_s
        # Releases scheduled by a delivery that ended abruptly, kept until done.
        self.releasing: set[asyncio.Task[None]] = set()

    async def __call__(self, request: Request, call_next: Handler) -> Response:
        if request.method != "POST":
            return await call_next(request)
        try:
            signature = parse_signature(signature_header(request.headers))
            # Before the body is read: a stale replay costs no upload.
            self.signatures.check_time(signature, self.wall_clock_s())
        except SignatureError as exc:
            self.counts.rejected += 1
            raise InvalidWebhookSignature(str(exc)) from None
        body = await self._body(request)
        if not self.signatures.matches(signature, body):
            self.counts.rejected += 1
            raise InvalidWebhookSignature("no v1 signature of the Stripe-Signature header matches")
        self.counts.verified += 1
        request.body = body
        request.content_length = len(body)
        event = None if self.dedupe is None else event_id(body)
        if event is None:
            return await call_next(request)
        return await self._once(event, request, call_next)

    async def _body(self, request: Request) -> bytes:
        # RequestBounds ran first (413 from a declared length, a chunked body counted); the
        # bound is kept here too, so nothing beyond the limit is ever held.
        body = await read_whole(request.body, self.max_bytes)
        if body is None:
            raise PayloadTooLarge(f"the body exceeds {self.max_bytes} bytes")
        return body

    async def _once(self, event: str, request: Request, call_next: Handler) -> Response:
        dedupe = self.dedupe
        assert dedupe is not None
        token = os.urandom(8).hex()
        try:
            state = await dedupe.events.claim(event, token, self.in_flight_ms)
        except StoreUnavailable as exc:
            self.counts.unchecked += 1
            dedupe.outage(exc)
            return await call_next(request)
        if state == SEEN:
            self.counts.duplicates += 1
            return Response(200, [(b"content-type", JSON)], DUPLICATE)
        if state == IN_FLIGHT:
            self.counts.in_flight += 1
            return Response(409, [(b"content-type", JSON), (b"retry-after", b"60")], IN_FLIGHT_BODY)
        try:
            response = await call_next(request)
        except BaseException:
            self._release_later(dedupe, event, token)
            raise
        try:
            if 200 <= response.status < 300:
                await dedupe.events.seen(event, dedupe.ttl_ms)
            else:
                await dedupe.events.release(event, token)
        except StoreUnavailable as exc:
            # The claim expires by itself; until then a retry is answered 409.
            dedupe.outage(exc)
        return response

    def _release_later(self, dedupe: Deduplication, event: str, token: str) -> None:
        """A failed or cancelled delivery: release its claim without holding up the error."""
        task = asyncio.get_running_loop().create_task(release(dedupe, event, token))
        self.releasing.add(task)
        task.add_done_callback(self.releasing.discard)


async def release(dedupe: Deduplication, event: str, token: str) -> None:
    try:
        await dedupe.events.release(event, token)
    except StoreUnavailable as exc:
        dedupe.outage(exc)

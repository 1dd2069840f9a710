"""Idempotency keys on POST and PATCH (the Stripe / IETF ``Idempotency-Key`` model).

    no key ─▶ required? 400 │ optional: pass on
    key ─▶ valid (1 to 128 of [A-Za-z0-9_-], one line)? else 400
        ─▶ whole body in hand ─▶ fingerprint (SHA-256 of method, target, body)
        ─▶ claim (tenant, user, key) in the store (unavailable: fail_closed? 503 : pass on)
           free     ─▶ forward; keep the final answer for ``ttl_ms``
           answered ─▶ the kept answer, ``Idempotency-Replayed: true``, the service not asked
           in flight ─▶ 409 with Retry-After │ another request's key ─▶ 422

The first request is forwarded in a task of its own with a deadline of ``lock_ms`` less 5 s (at
least the route's): its client gets a 504 at the route's deadline as before, but the service's
answer, when it comes, is kept, and a retry with the same key gets it. An answer that says "not
done" (a gateway error: 502, 503 circuit open, 504; or the service's 408, 429, 502, 503, 504)
releases the key, so a retry is forwarded. The policy stands before the per-user and endpoint rate
limits: a replay or a 409 never counts against them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable
from typing import Final

from api_gateway import idempotency as core
from api_gateway.errors import (
    IdempotencyAnswerNotKept,
    IdempotencyConflict,
    IdempotencyKeyRequired,
    IdempotencyKeyReused,
    InvalidIdempotencyKey,
    ServiceUnavailable,
    UpstreamTimeout,
)
from api_gateway.policies.cache import collect
from api_gateway.stores import StoreUnavailable
from api_gateway.stores.idempotency import IdempotencyStore
from api_gateway.types import Handler, Request, Response

log = logging.getLogger("api_gateway.idempotency")
IDEMPOTENCY_KEY: Final = b"idempotency-key"
REPLAYED: Final = (b"idempotency-replayed", b"true")
KEYED_METHODS: Final = frozenset({"POST", "PATCH"})
# Answers of the service that say the request was not done: a retry must reach it again.
RELEASED_STATUSES: Final = frozenset({408, 429, 502, 503, 504})
# Time the first request has, past its upstream deadline, to collect and keep its answer.
LOCK_MARGIN_MS: Final = 5000
RETRY_AFTER_S: Final = 1
# The counters the metrics exporter reads, by attribute name.
OUTCOMES: Final[tuple[str, ...]] = (
    "stored",
    "replayed",
    "conflicts",
    "mismatches",
    "released",
    "unchecked",
    "unavailable",
)
WARN_EVERY_S: Final = 10.0


class Idempotency:
    """One route's (or endpoint's) Idempotency-Key handling; ``required`` or ``optional``."""

    def __init__(
        self,
        store: IdempotencyStore,
        required: bool,
        timeout_ms: int,
        lock_ms: int,
        ttl_ms: int,
        max_answer_bytes: int,
        fail_closed: bool,
    ) -> None:
        self.store, self.required, self.fail_closed = store, required, fail_closed
        self.wait_s = timeout_ms / 1000
        self.deadline_ms = max(timeout_ms, lock_ms - LOCK_MARGIN_MS)
        self.lock_ms = self.deadline_ms + LOCK_MARGIN_MS
        self.ttl_ms, self.max_answer_bytes = ttl_ms, max_answer_bytes
        # First requests still going upstream (kept here so none is garbage-collected).
        self.running: set[asyncio.Task[None]] = set()
        self.last_warning = 0.0
        # A claim's owner: this policy's random half and a count (no system call per claim).
        self.owner = os.urandom(core.OWNER_SIZE // 2)
        self.claims_made = 0
        # Read by the metrics exporter.
        self.stored = self.replayed = self.conflicts = self.mismatches = 0
        self.released = self.unchecked = self.unavailable = 0

    def __call__(self, request: Request, call_next: Handler) -> Awaitable[Response]:
        if request.method not in KEYED_METHODS:
            return call_next(request)
        lines = [value for name, value in request.headers if name == IDEMPOTENCY_KEY]
        if not lines:
            if self.required:
                raise IdempotencyKeyRequired(f"{request.method} here needs an Idempotency-Key")
            return call_next(request)
        if len(lines) > 1 or not core.valid_key(lines[0]):
            raise InvalidIdempotencyKey(
                "Idempotency-Key must be one value of 1 to 128 letters, digits, '_' or '-'"
            )
        return self._keyed(request, call_next, lines[0].decode("ascii"))

    async def _keyed(self, request: Request, call_next: Handler, key: str) -> Response:
        body = request.body
        if not isinstance(body, bytes):
            # Bounded already by the route's body limit (RequestBounds runs first).
            chunks = []
            async for chunk in body:
                chunks.append(chunk)
            body = b"".join(chunks)
            request.body, request.content_length = body, len(body)
        # The canonical path: spellings the service reads as one path are one request.
        target = request.path.encode("ascii") + b"?" + request.query
        print_ = core.fingerprint(request.method, target, body)
        claims = request.claims
        if claims is None:
            record = core.record_key("public", "ip:" + request.client_ip, key)
        else:
            record = core.record_key(claims.tenant_id, claims.user_id, key)
        self.claims_made += 1
        pending = core.pending_value(print_, self.owner + self.claims_made.to_bytes(8, "big"))
        try:
            found = await self.store.claim(record, pending, self.lock_ms)
            verdict = core.verdict(found, print_)
            if verdict == core.UNREADABLE:
                raise StoreUnavailable(f"idempotency record {record} does not decode")
        except StoreUnavailable as exc:
            return await self._unchecked(request, call_next, exc)
        except asyncio.CancelledError:
            # The client went away while the claim was on its way: it may have taken the key,
            # which nothing would then forward nor release before lock_ms.
            self._release_later(record, pending)
            raise
        if verdict == core.CLAIMED:
            return await self._first(request, call_next, record, pending)
        assert found is not None
        return self._repeat(verdict, found)

    def _repeat(self, verdict: int, found: bytes) -> Response:
        if verdict == core.IN_FLIGHT:
            self.conflicts += 1
            raise IdempotencyConflict(
                "a request with this Idempotency-Key is still in progress", RETRY_AFTER_S
            )
        if verdict == core.MISMATCH:
            self.mismatches += 1
            raise IdempotencyKeyReused(
                "this Idempotency-Key was used for a request with another method, path or body"
            )
        answer = core.decode_done(found) if verdict == core.REPLAY else None
        if answer is None:
            status = core.kept_status(found)
            raise IdempotencyAnswerNotKept(
                f"the request with this Idempotency-Key was answered ({status}), "
                "but its answer was too large to keep"
            )
        self.replayed += 1
        headers = answer.headers
        headers.append(REPLAYED)
        return Response(answer.status, headers, answer.body)

    async def _first(
        self, request: Request, call_next: Handler, record: str, pending: bytes
    ) -> Response:
        """Forward in a task that outlives this client's wait; its answer is kept either way."""
        request.deadline_ms = self.deadline_ms
        loop = asyncio.get_running_loop()
        flight = Flight(loop.create_future())
        flight.task = loop.create_task(self._forward(request, call_next, record, pending, flight))
        self.running.add(flight.task)
        timer = loop.call_later(self.wait_s, flight.wake)
        try:
            await flight.waiter
        except asyncio.CancelledError:
            flight.abandoned = True  # the client went away: the request still completes
            raise
        finally:
            timer.cancel()
        outcome = flight.outcome
        if isinstance(outcome, Response):
            return outcome
        if outcome is not None:
            raise outcome
        flight.abandoned = True
        raise UpstreamTimeout(
            "the service did not answer in time; the request goes on, and a retry with the "
            "same Idempotency-Key gets its answer once it is done"
        )

    async def _forward(
        self, request: Request, call_next: Handler, record: str, pending: bytes, flight: Flight
    ) -> None:
        """The flight's task: its outcome (an answer or an error) is handed over, never raised,
        so no error is left unretrieved when nobody waits any more."""
        try:
            flight.outcome = await self._kept(request, call_next, record, pending)
        except Exception as error:
            flight.outcome = error
        finally:
            if flight.task is not None:
                self.running.discard(flight.task)
            body = flight.outcome.body if isinstance(flight.outcome, Response) else b""
            if flight.abandoned and not isinstance(body, bytes):
                body.abort()  # nobody reads the rest of an answer too large to keep
            flight.wake()

    async def _kept(
        self, request: Request, call_next: Handler, record: str, pending: bytes
    ) -> Response:
        """The answer, kept in the store unless it says the request was not done."""
        try:
            response = await call_next(request)
            if response.status in RELEASED_STATUSES or response.switched is not None:
                await self._release(record, pending)
                return response
            body = await collect(response, self.max_answer_bytes)
        except BaseException:
            await self._release(record, pending)
            raise
        print_ = pending[1 : 1 + core.FINGERPRINT_SIZE]
        if body is None:
            value = core.not_kept_value(print_, response.status)
        else:
            headers = core.kept_headers(response.headers)
            value = core.done_value(print_, response.status, headers, body)
        try:
            if await self.store.complete(record, pending, value, self.ttl_ms):
                self.stored += 1
        except StoreUnavailable as exc:
            self._warn("cannot keep an answer (its key stays claimed until lock_ms)", exc)
        return response

    def _release_later(self, record: str, pending: bytes) -> None:
        task = asyncio.get_running_loop().create_task(self._release(record, pending))
        self.running.add(task)
        task.add_done_callback(self.running.discard)

    async def _release(self, record: str, pending: bytes) -> None:
        self.released += 1
        try:
            await self.store.release(record, pending)
        except StoreUnavailable as exc:
            self._warn("cannot release a key (it stays claimed until lock_ms)", exc)

    async def _unchecked(self, request: Request, call_next: Handler, exc: Exception) -> Response:
        if self.fail_closed:
            self.unavailable += 1
            raise ServiceUnavailable(
                "idempotency keys cannot be checked right now; try again shortly",
                [(b"retry-after", b"1")],
            ) from None
        self.unchecked += 1
        self._warn("idempotency store unavailable, forwarding without a key check", exc)
        return await call_next(request)

    def _warn(self, what: str, exc: Exception) -> None:
        now = time.monotonic()
        if now - self.last_warning > WARN_EVERY_S:
            self.last_warning = now
            log.warning("%s: %s", what, exc)


class Flight:
    """A first request going upstream in a task of its own, and the future its client waits
    on: woken by the outcome or by the route's deadline, whichever comes first (one future and
    no done-callbacks: cheaper than ``asyncio.wait``)."""

    __slots__ = ("abandoned", "outcome", "task", "waiter")

    def __init__(self, waiter: asyncio.Future[None]) -> None:
        self.waiter = waiter
        self.task: asyncio.Task[None] | None = None
        self.outcome: Response | Exception | None = None
        self.abandoned = False  # its client got a 504 or went away

    def wake(self) -> None:
        if not self.waiter.done():
            self.waiter.set_result(None)

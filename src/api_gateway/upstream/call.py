"""The terminal handler of every proxied route: one deadline, the breaker, the balancer, retries.

    deadline ─▶ breaker admits? ─▶ balancer picks an instance (not one already tried)
             ─▶ attempt (its timeout: what is left of the deadline, or the per-try cap)
             ─▶ success: return │ failure: outlier detection counts it against the instance
             ─▶ retry if the failure, the method, the budget and the deadline all allow
             ─▶ the request's final outcome is what the breaker counts for the service

A 5xx answer that is not retried is returned as the service gave it; an error that is not
retried is raised (502/504 problem). A failure that is not the service's doing (the client
went away, its body was too large) is not counted against the service.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from time import perf_counter
from typing import Final

from api_gateway.errors import (
    BadGateway,
    CircuitOpen,
    DeadlineExceeded,
    GatewayError,
    UpstreamTimeout,
    name_service,
)
from api_gateway.http.framing import single_value
from api_gateway.signing import buffer_body
from api_gateway.types import Pool, Request, Response
from api_gateway.upstream.breaker import State
from api_gateway.upstream.forward import render_head
from api_gateway.upstream.instances import UpstreamInstance
from api_gateway.upstream.retry import IDEMPOTENT, retryable_error, retryable_status
from api_gateway.upstream.service import UpstreamService
from api_gateway.websocket import WEBSOCKET

# Statuses that mean the service, not the request, is at fault.
FAILURE_STATUSES: Final = frozenset({500, 502, 503, 504})
IDEMPOTENCY_KEY: Final = b"idempotency-key"
Failure = Response | GatewayError
Send = Callable[[Request, UpstreamInstance, float], Awaitable[Response]]
# Wraps every attempt (tracing gives each its own span): (send, request, endpoint, ms, service).
AttemptHook = Callable[[Send, Request, UpstreamInstance, float, str], Awaitable[Response]]


class UpstreamCall:
    def __init__(
        self,
        service: UpstreamService,
        pool: Pool,
        timeout_ms: int,
        idempotency_key_retries: bool,
        clock_ms: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        around_attempt: AttemptHook | None = None,
        stream_idle_ms: int = 0,
        timer: Callable[[], float] = perf_counter,
    ) -> None:
        self.service, self.pool, self.timeout_ms = service, pool, timeout_ms
        self.key_retries, self.clock_ms, self.sleep = idempotency_key_retries, clock_ms, sleep
        self.around_attempt = around_attempt
        self.stream_idle_s = stream_idle_ms / 1000
        self.timer = timer  # seconds, fine-grained: how long each attempt took

    async def __call__(self, request: Request) -> Response:
        if self.key_retries and request.method not in IDEMPOTENT:
            # The key makes this request repeatable: two lines are a 400 before anything is
            # sent, as the service dedupes on one of them and which one is a guess (a retry
            # could then run the payment twice). Elsewhere the lines pass on untouched.
            single_value(request.headers, IDEMPOTENCY_KEY)
        service, clock = self.service, self.clock_ms
        signer = service.signer
        if signer is not None and not request.upgrade and not isinstance(request.body, bytes):
            # A body still arriving is hashed whole when small enough (signing.py); before the
            # deadline starts, as the client's upload is not the service's time.
            await buffer_body(request, signer.max_body_bytes)
        now = clock()
        if service.breaker.state is not State.CLOSED and not service.admit(now):
            raise self._circuit_open(now)
        timeout_ms = request.deadline_ms or self.timeout_ms
        expires = now + timeout_ms
        endpoint = service.balancer.pick(request, now, ())
        if service.balancer.panicking is not service.panicking:
            service.note_panic(service.balancer.panicking)
        request.upstream, request.attempts = endpoint.authority, 1
        budget = service.budget
        budget.active_requests += 1
        sent = now
        try:
            outcome = await self._attempt(request, endpoint, timeout_ms)
            now = clock()
            answer = self._answer(outcome, endpoint, sent, now)
            if answer is not None:
                return answer
            return await self._recover(request, endpoint, outcome, sent, now, expires)
        finally:
            budget.active_requests -= 1

    async def _recover(
        self,
        request: Request,
        endpoint: UpstreamInstance,
        failure: Failure,
        sent: float,
        now: float,
        expires: float,
    ) -> Response:
        """After a failed attempt: retry while it is safe and allowed, else give up."""
        service, clock, budget = self.service, self.clock_ms, self.service.budget
        tried: list[UpstreamInstance] = []
        attempt = 1
        claim: str | None = None  # what this request holds of the retry budget
        try:
            while True:
                service.attempt_failed(endpoint, now)
                delay = self._retry_delay(request, failure, attempt, now, expires)
                if delay is not None:
                    lost = isinstance(failure, BadGateway)  # the connection broke, no answer
                    claim = budget.claim(claim, endpoint.authority, sent, now, lost)
                    if claim is None:
                        service.events["budget_exhausted"] += 1
                        delay = None
                if delay is None:
                    if isinstance(failure, Response):
                        if failure.status in service.breaker_statuses:
                            service.gave_up(None, now, endpoint, sent)
                        else:
                            service.answered(now)  # one path's error, not the service's health
                        return failure
                    service.gave_up(failure, now, endpoint, sent)
                    raise name_service(failure, service.label)
                _discard(failure)
                service.events["retry"] += 1
                await self.sleep(delay / 1000)
                now = clock()
                if not service.admit(now):
                    raise self._circuit_open(now)
                tried.append(endpoint)
                attempt += 1
                endpoint = service.balancer.pick(request, now, tried)
                service.note_panic(service.balancer.panicking)
                request.upstream, request.attempts = endpoint.authority, attempt
                sent = now
                failure = await self._attempt(request, endpoint, expires - now)
                now = clock()
                answer = self._answer(failure, endpoint, sent, now)
                if answer is not None:
                    return answer
        finally:
            budget.release(claim)

    async def _attempt(
        self, request: Request, endpoint: UpstreamInstance, remaining_ms: float
    ) -> Failure:
        """One attempt: the response, or the service's error (anything else propagates)."""
        if remaining_ms <= 0:
            raise DeadlineExceeded("the request's deadline passed before the service answered")
        endpoint.in_flight += 1
        timer = self.timer
        started = timer()
        try:
            return await self._send(request, endpoint, remaining_ms)
        except (BadGateway, UpstreamTimeout) as error:
            return error
        except BaseException:
            self.service.not_blamed(self.clock_ms())
            raise
        finally:
            endpoint.in_flight -= 1
            # The access log's upstream time: the loop's clock ticks in whole milliseconds.
            request.upstream_ms += (timer() - started) * 1000

    def _answer(
        self, outcome: Failure, endpoint: UpstreamInstance, sent: float, now: float
    ) -> Response | None:
        """The response if the attempt sent at ``sent`` succeeded (the service is credited),
        else None: a failure, which the caller retries or gives up on."""
        service = self.service
        service.observe_attempt(endpoint.authority, now - sent)
        if isinstance(outcome, Response) and outcome.status not in FAILURE_STATUSES:
            service.succeeded(endpoint, now)
            return outcome
        return None

    def _send(
        self, request: Request, endpoint: UpstreamInstance, remaining_ms: float
    ) -> Awaitable[Response]:
        # Not async, like _forward: the pool's awaitable itself, a coroutine less (COMPILED.md §5).
        hook = self.around_attempt
        # A trace in wire form (bytes) is a new one not sampled: ``render_head`` sends its line
        # and the hook would record nothing (about 1,000 instructions an attempt less).
        if hook is None or isinstance(request.trace, bytes):
            return self._forward(request, endpoint, remaining_ms)
        return hook(self._forward, request, endpoint, remaining_ms, self.service.name)

    def _forward(
        self, request: Request, endpoint: UpstreamInstance, remaining_ms: float
    ) -> Awaitable[Response]:
        per_try = self.service.per_try_ms
        timeout_ms = remaining_ms if per_try is None or per_try > remaining_ms else per_try
        head, chunked = render_head(
            request, endpoint.host_line, int(timeout_ms), self.service.signer
        )
        return self.pool.request(
            endpoint.address,
            head,
            request.body,
            chunked,
            timeout_ms / 1000,
            request.method,
            request.upgrade == WEBSOCKET,
            self.stream_idle_s,
        )

    def _retry_delay(
        self, request: Request, failure: Failure, attempt: int, now: float, expires: float
    ) -> float | None:
        """The wait before the next attempt, or None when this failure is final."""
        service = self.service
        if attempt >= service.attempts:
            return None
        # A handshake the upstream received is never sent again: it may have opened a session.
        repeatable = not request.upgrade and (
            request.method in IDEMPOTENT
            or (self.key_retries and bool(request.header(IDEMPOTENCY_KEY)))
        )
        if isinstance(failure, Response):
            if not retryable_status(failure.status, repeatable):
                return None
        elif not retryable_error(failure, repeatable, isinstance(request.body, bytes)):
            return None
        if service.breaker.state is not State.CLOSED:
            return None  # the service is known to be failing (or on probation): don't pile on
        delay = service.backoff.delay_ms(attempt)
        return delay if now + delay < expires else None

    def _circuit_open(self, now: float) -> CircuitOpen:
        service = self.service
        retry_after_s = math.ceil(service.breaker.retry_after_ms(now) / 1000)
        return CircuitOpen(f"{service.label} is failing; try again shortly", retry_after_s)


def _discard(failure: Failure) -> None:
    if isinstance(failure, Response) and not isinstance(failure.body, bytes):
        failure.body.abort()

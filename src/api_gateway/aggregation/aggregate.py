"""The terminal handler of an aggregate route: its sources under one deadline, then one answer.

    path parameters + token ─▶ sources start as soon as their dependencies answered, in parallel
      required: must answer; the first failure cancels the rest and fails the aggregate
      optional: capped by its own timeout; a failure or a late answer becomes its fallback
    ─▶ 200 {"data", "meta"}, or a problem (404/403 passed on, 502, 503, 504) carrying "meta"

Everything runs under a ``TimeoutController`` over the aggregate's deadline: a step never gets
more than what is left, and waiting for the sources stops when the deadline does (a deadline
that passes while the loop is paused is extended once, like a step's).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Final

import orjson

from api_gateway.aggregation.fetch import Fetch, SourceAnswered
from api_gateway.aggregation.results import Outcome, Status, merge, meta
from api_gateway.aggregation.templates import Template, TemplateError
from api_gateway.config.aggregates import AggregateConfig, SourceConfig
from api_gateway.errors import (
    BadGateway,
    DeadlineExceeded,
    GatewayError,
    RouteNotFound,
    UpstreamTimeout,
)
from api_gateway.timers import PatientDeadline
from api_gateway.types import Handler, Request, Response
from api_gateway.upstream.deadline import STEP_EXTENSIONS, Deadline, TimeoutController

JSON_HEADERS: Final = [(b"content-type", b"application/json"), (b"cache-control", b"no-store")]
# How long cancelled source calls get to unwind (close their connections) before we answer.
CANCEL_GRACE_S: Final = 1.0
Tasks = dict["asyncio.Task[Outcome]", SourceConfig]


class Aggregate:
    def __init__(
        self, config: AggregateConfig, base: str, fetch: Fetch, clock_ms: Callable[[], float]
    ) -> None:
        self.config, self.fetch, self.clock_ms = config, fetch, clock_ms
        self.base_length = len(base)  # config.path is relative to /api/v1/aggregate
        self.keys = tuple(source.key for source in config.sources)

    async def __call__(self, request: Request) -> Response:
        params = self.config.path.match(request.path[self.base_length :])
        if params is None:
            raise RouteNotFound(f"no aggregate at {request.path}")
        scope: dict[str, object] = dict(params)
        if request.claims is not None:
            claims = request.claims
            scope["user"] = {
                "id": claims.user_id,
                "tenantId": claims.tenant_id,
                "role": claims.role,
                "email": claims.email,
            }
        controller = TimeoutController(Deadline(self.config.timeout_ms, self.clock_ms))
        outcomes = await Gathering(self, request, scope, controller).run()
        failed = next((o for o in outcomes.values() if o.status is Status.FAILED), None)
        if failed is not None:
            raise self.problem(failed, outcomes)
        return Response(200, list(JSON_HEADERS), orjson.dumps(merge(self.keys, outcomes)))

    def problem(self, failed: Outcome, outcomes: dict[str, Outcome]) -> GatewayError:
        cause = failed.cause
        if isinstance(cause, SourceAnswered):
            error = cause.as_problem()
        elif isinstance(cause, GatewayError):
            error = cause
        else:
            error = BadGateway(failed.error or "a required source failed")
        error.extensions["meta"] = meta(self.keys, outcomes)
        return error


class Gathering:
    """One request's run of the aggregate's sources."""

    def __init__(
        self,
        aggregate: Aggregate,
        request: Request,
        scope: dict[str, object],
        controller: TimeoutController,
    ) -> None:
        self.aggregate, self.request, self.scope = aggregate, request, scope
        self.controller = controller
        self.started = aggregate.clock_ms()
        # The client's time: a pause of the loop at the deadline extends it once, no more.
        self.patience = PatientDeadline(
            self.started / 1000,
            controller.deadline.remaining_ms() / 1000,
            max_extensions=STEP_EXTENSIONS,
        )
        self.outcomes: dict[str, Outcome] = {}
        self.waiting = list(aggregate.config.sources)
        self.running: Tasks = {}

    async def run(self) -> dict[str, Outcome]:
        try:
            self.start_ready()
            while self.running:
                done = await self.next_done()
                if done is None:
                    break
                if self.collect(done):
                    return self.outcomes  # a required source failed: the rest are skipped
                self.start_ready()
            self.past_deadline()
            return self.outcomes
        finally:
            await self.cancel_running()

    async def next_done(self) -> set[asyncio.Task[Outcome]] | None:
        """The sources that finished next; None when the deadline passed in time the loop was
        free. The wait's timer fires before the loop reads: after a pause, answers that came in
        time may be in the sockets, unread, so a late timer gives the aggregate one more bound
        (``timers.py``), and the sources that start after it get that time too."""
        deadline, patience = self.controller.deadline, self.patience
        while True:
            remaining_s = patience.due - deadline.clock_ms() / 1000
            if remaining_s > 0:
                done, _ = await asyncio.wait(
                    self.running, timeout=remaining_s, return_when=asyncio.FIRST_COMPLETED
                )
                if done:
                    return done
            if patience.over(deadline.clock_ms() / 1000):
                return None
            deadline.expires_ms = patience.due * 1000

    def start_ready(self) -> None:
        for source in list(self.waiting):
            if source.depends_on <= self.outcomes.keys():
                self.waiting.remove(source)
                task = asyncio.ensure_future(self.source(source))
                self.running[task] = source

    def collect(self, done: set[asyncio.Task[Outcome]]) -> bool:
        """Record finished sources; True when a required one failed."""
        failed = False
        for task in done:
            source = self.running.pop(task)
            outcome = self.outcomes[source.key] = task.result()
            if outcome.status is Status.OK:
                self.scope[source.key] = outcome.value
            failed = failed or outcome.status is Status.FAILED
        return failed

    def past_deadline(self) -> None:
        """The deadline passed with sources still out: required ones failed, optional fell back.
        Sources still waiting for one of them are skipped: they never started."""
        waited_ms = self.aggregate.clock_ms() - self.started
        for source in self.running.values():
            self.outcomes[source.key] = self.missed(source, waited_ms)

    def missed(self, source: SourceConfig, duration_ms: float) -> Outcome:
        error = DeadlineExceeded("no answer within the aggregate's deadline")
        return self.failure(source, error, duration_ms)

    async def cancel_running(self) -> None:
        tasks = list(self.running)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=CANCEL_GRACE_S)
        self.running.clear()

    async def source(self, source: SourceConfig) -> Outcome:
        """One source from start to outcome; never raises for the source's own failure."""
        clock = self.aggregate.clock_ms
        started = clock()
        try:
            target = resolve(source.path, self.scope)
            budget_ms = self.controller.step_budget_ms(source.timeout_ms)
            step = self.aggregate.fetch(source.service, target, budget_ms, self.request)
            value = await self.controller.run(step, source.timeout_ms)
        except GatewayError as error:
            if isinstance(error, UpstreamTimeout) and not source.required:
                error = UpstreamTimeout(f"no answer within {source.timeout_ms} ms")
            return self.failure(source, error, clock() - started)
        return Outcome(Status.OK, value, clock() - started)

    def failure(self, source: SourceConfig, error: GatewayError, duration_ms: float) -> Outcome:
        if not source.required:
            return Outcome(Status.FALLBACK, source.fallback, duration_ms, error.detail)
        error.detail = f"{source.key}: {error.detail}"  # the problem names the source at fault
        return Outcome(Status.FAILED, None, duration_ms, error.detail, error)


def resolve(template: Template, scope: dict[str, object]) -> str:
    try:
        return template.resolve(scope)
    except TemplateError as exc:
        raise BadGateway(f"cannot build the request: {exc}") from None


class AggregateRoutes:
    """Aggregates sharing a literal prefix: the one whose path fits gets the request."""

    def __init__(self, base: str, entries: list[tuple[Template, Handler]]) -> None:
        self.base_length, self.entries = len(base), entries

    def __call__(self, request: Request) -> Awaitable[Response]:
        relative = request.path[self.base_length :]
        for template, handler in self.entries:
            if template.match(relative) is not None:
                return handler(request)
        raise RouteNotFound(f"no aggregate at {request.path}")

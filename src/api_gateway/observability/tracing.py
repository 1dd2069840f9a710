"""Tracing: a server span per request and a client span per upstream attempt, exported as OTLP.

Built only when an OTLP endpoint is configured; otherwise neither this module's policy nor
its attempt hook is in any chain, and this module is not even imported, so tracing off costs
the request path nothing (a client's ``traceparent`` and ``tracestate`` still reach the
upstream as they came, like any other header).

When on: a client's W3C ``traceparent``/``tracestate`` make the server span a child of the
client's (two ``traceparent`` lines are invalid: a new trace); the sampler is parent-based (the
client's sampled flag decides, a new trace is kept with ``traces_sample_ratio``, by the same
rule as OpenTelemetry's ``TraceIdRatioBased``: spans.py); each attempt's client span is sent
upstream as the new ``traceparent``, so the service's spans hang under the gateway's. The trace
rides on the request (``Request.trace``), and an aggregate's calls take it from their client's
request: each is a client span of it too.

What it costs is what the sampling decides. A new trace not sampled (most requests) gets a
trace id (for the access log) and its ids in wire form, of which each attempt's head makes its
``traceparent`` line: no span is recorded, no coroutine, no context object, no attempt hook; ids
are drawn 64 traces at a time, and whether the client sent trace fields the reader noted while
parsing the head (about 3,000 instructions a request with its sockets, of some 163,000).
A sampled one records small ``Span`` objects as its spans end, appended to a bounded queue
(full: dropped and counted, never waited for); a thread encodes them in batches and posts them
(span_export.py, otlp.py), with the OpenTelemetry SDK's batching and exporter variables.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Final
from urllib.parse import unquote

from api_gateway.config.observability import ObservabilityConfig
from api_gateway.observability.otlp import Encoder
from api_gateway.observability.span_export import ExportSettings, SpanExport
from api_gateway.observability.spans import (
    CLIENT,
    SERVER,
    TRACEPARENT,
    TRACESTATE,
    Sampler,
    Span,
    TraceContext,
    exception_record,
    trace_headers,
    traceparent,
)
from api_gateway.types import Handler, Headers, Request, Response
from api_gateway.upstream.call import Send

if TYPE_CHECKING:
    from api_gateway.upstream.instances import UpstreamInstance

SHUTDOWN_TIMEOUT_S: Final = 5.0
# The attributes of each span, in the order the SDK-based gateway set them (COMPILED.md §2).
SERVER_KEYS: Final[tuple[str, ...]] = (
    "http.request.method",
    "http.route",
    "url.path",
    "http.response.status_code",
    "client.address",
    "gateway.request_id",
)
FAILED_SERVER_KEYS: Final[tuple[str, ...]] = ("http.request.method",)
CLIENT_KEYS: Final[tuple[str, ...]] = (
    "http.request.method",
    "server.address",
    "server.port",
    "gateway.service",
    "gateway.instance",
    "gateway.attempt",
    "http.response.status_code",
)
FAILED_CLIENT_KEYS: Final[tuple[str, ...]] = CLIENT_KEYS[:-1]


def resource_attributes(service_name: str, env: Mapping[str, str]) -> list[tuple[str, str]]:
    """``OTEL_RESOURCE_ATTRIBUTES`` (``k=v,...``, URL-encoded), then ``service.name``."""
    found: dict[str, str] = {"telemetry.sdk.language": "python"}
    for item in env.get("OTEL_RESOURCE_ATTRIBUTES", "").split(","):
        name, equals, value = item.partition("=")
        if equals and name.strip():
            found[unquote(name.strip())] = unquote(value.strip())
    found["service.name"] = service_name
    return list(found.items())


def with_trace(headers: Headers, parent: bytes, state: str) -> Headers:
    """The request's headers for an attempt: the client's trace fields replaced by ours."""
    sent = [h for h in headers if h[0] != TRACEPARENT and h[0] != TRACESTATE]
    sent.append((TRACEPARENT, parent))
    if state:
        sent.append((TRACESTATE, state.encode("ascii")))
    return sent


class Tracing:
    def __init__(
        self,
        config: ObservabilityConfig,
        env: Mapping[str, str] | None = None,
        random_bits: Callable[[int], int] | None = None,
        post: Callable[[bytes], int] | None = None,
    ) -> None:
        env = os.environ if env is None else env
        assert config.traces_endpoint is not None
        ratio = config.traces_sample_ratio
        self.sampler = (
            Sampler(ratio, random.getrandbits, os.urandom)
            if random_bits is None
            else Sampler(ratio, random_bits)  # a test's: every id from its bits
        )
        self.export = SpanExport(
            ExportSettings.from_environment(config.traces_endpoint, env),
            Encoder(resource_attributes(config.service_name, env)),
            post,
        )
        # Bound once (COMPILED.md §6).
        self.add = self.export.add
        self.clock_ns = time.time_ns

    def server_span(self, request: Request, call_next: Handler) -> Awaitable[Response]:
        """The policy outside every other: the span covers the whole request."""
        sampler, headers = self.sampler, request.headers
        carried = request.trace_fields  # noted by the reader as it parsed the head
        if carried is None:  # a request it did not parse
            carried = trace_headers(headers) is not None
        if not carried:  # a new trace: most requests
            at = sampler.new_trace()
            if not sampler.sampled(at):
                # Not sampled: the trace id for the log and the ids every attempt sends, in wire
                # form (``render_head`` adds their line; no attempt hook), no context object.
                request.trace_id = sampler.trace_id(at)
                request.trace = sampler.ids(at)
                return call_next(request)
            context = sampler.started(at, False)
        else:
            context = sampler.context(headers)
        request.trace = context
        request.trace_id = context.trace_id  # the access log's
        if not context.sampled:
            return call_next(request)
        return self._record_server(request, call_next, context)

    async def _record_server(
        self, request: Request, call_next: Handler, context: TraceContext
    ) -> Response:
        clock = self.clock_ns
        start, parent_id = clock(), context.parent_id
        try:
            response = await call_next(request)
        except BaseException as error:
            values: tuple[str | int, ...] = (request.method,)
            self.add(
                Span(SERVER, context, context.span_id, parent_id, parent_id != "",
                     request.method, start, clock(), FAILED_SERVER_KEYS, values,
                     exception_record(error))
            )  # fmt: skip
            raise
        status = response.status
        values = (
            request.method, request.route, request.path, status, request.client_ip,
            request.request_id,
        )  # fmt: skip
        self.add(
            Span(SERVER, context, context.span_id, parent_id, parent_id != "",
                 f"{request.method} {request.route}", start, clock(), SERVER_KEYS, values,
                 status >= 500)
        )  # fmt: skip
        return response

    def client_span(
        self,
        send: Send,
        request: Request,
        endpoint: UpstreamInstance,
        remaining_ms: float,
        service: str,
    ) -> Awaitable[Response]:
        """One attempt in its own span, whose context goes upstream as ``traceparent``."""
        context = request.trace
        # Not within a request's trace (no caller does this today), or a new trace that is not
        # sampled: ``render_head`` adds its line (UpstreamCall does not even call this then).
        if context is None or isinstance(context, bytes):
            return send(request, endpoint, remaining_ms)
        if not context.sampled:
            return self._send(send, request, endpoint, remaining_ms, context, context.line)
        span_id = self.sampler.span_id()
        line = (TRACEPARENT, traceparent(context.trace_id, span_id, context.flags))
        start = self.clock_ns()
        host, port = endpoint.address
        values: tuple[str | int, ...] = (
            request.method, host, port, service, endpoint.authority, request.attempts,
        )  # fmt: skip
        name = f"{request.method} {service}"
        try:
            sending = self._send(send, request, endpoint, remaining_ms, context, line)
        except BaseException as error:
            self._client_failed(context, span_id, name, start, values, error)
            raise
        return self._record_client(sending, context, span_id, name, start, values)

    def _send(
        self,
        send: Send,
        request: Request,
        endpoint: UpstreamInstance,
        remaining_ms: float,
        context: TraceContext,
        line: tuple[bytes, bytes],
    ) -> Awaitable[Response]:
        """``send`` with our ``traceparent`` (and the client's ``tracestate``) in the request's
        headers while it renders the head, which it does at once."""
        headers = request.headers
        if context.carried:  # the client's trace fields are replaced
            request.headers = with_trace(headers, line[1], context.state)
            try:
                return send(request, endpoint, remaining_ms)
            finally:
                request.headers = headers
        headers.append(line)  # none to replace: ours is added, and taken off, without a copy
        try:
            return send(request, endpoint, remaining_ms)
        finally:
            headers.pop()

    async def _record_client(
        self,
        sending: Awaitable[Response],
        context: TraceContext,
        span_id: str,
        name: str,
        start: int,
        values: tuple[str | int, ...],
    ) -> Response:
        try:
            response = await sending
        except BaseException as error:
            self._client_failed(context, span_id, name, start, values, error)
            raise
        status = response.status
        done = (*values, status)
        self.add(
            Span(CLIENT, context, span_id, context.span_id, False, name, start, self.clock_ns(),
                 CLIENT_KEYS, done, status >= 500)
        )  # fmt: skip
        return response

    def _client_failed(
        self,
        context: TraceContext,
        span_id: str,
        name: str,
        start: int,
        values: tuple[str | int, ...],
        error: BaseException,
    ) -> None:
        self.add(
            Span(CLIENT, context, span_id, context.span_id, False, name, start, self.clock_ns(),
                 FAILED_CLIENT_KEYS, values, exception_record(error))
        )  # fmt: skip

    async def close(self) -> None:
        """Export what is still queued (bounded), off the event loop."""
        loop = asyncio.get_running_loop()
        done = loop.run_in_executor(None, self.export.shutdown, SHUTDOWN_TIMEOUT_S)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done, SHUTDOWN_TIMEOUT_S + 1)

"""OpenTelemetry tracing: a server span per request and a client span per upstream attempt.

Built only when an OTLP endpoint is configured; otherwise neither this module's policy nor
its attempt hook is in any chain, and the OpenTelemetry packages are not even imported,
so tracing off costs the request path nothing (a client's ``traceparent`` and ``tracestate``
still reach the upstream as they came, like any other header).

When on: a client's W3C ``traceparent``/``tracestate`` make the server span a child of the
client's (two ``traceparent`` lines are invalid: a new trace); the sampler is parent-based (the
client's sampled flag decides, a new trace is kept with ``traces_sample_ratio``); each attempt's
client span is sent upstream as the new ``traceparent``, so the service's spans hang under the
gateway's. Spans go out in batches from the SDK's own thread (OTLP/HTTP protobuf).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

from opentelemetry import context, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from api_gateway.config.observability import ObservabilityConfig
from api_gateway.types import Handler, Headers, Request, Response
from api_gateway.upstream.call import Send

if TYPE_CHECKING:
    from api_gateway.upstream.instances import UpstreamInstance

TRACE_HEADERS = frozenset({b"traceparent", b"tracestate"})
SHUTDOWN_TIMEOUT_S = 5.0


def trace_carrier(headers: Headers) -> dict[str, list[str]] | None:
    """A client's W3C trace context: its one ``traceparent`` and every ``tracestate`` line.

    ``tracestate`` is a list, its lines one list (RFC 9110 §5.3). ``traceparent`` is one value:
    two lines are an invalid traceparent, so a new trace starts and ``tracestate`` is ignored
    with it, as W3C trace-context says for an invalid one, rather than the gateway continuing
    one line's trace while the service (or a tracer in between) continues the other's.
    """
    parents: list[str] = []
    states: list[str] = []
    for name, value in headers:
        if name == b"traceparent":
            parents.append(value.decode("latin-1"))
        elif name == b"tracestate":
            states.append(value.decode("latin-1"))
    if len(parents) != 1:
        return None
    return {"traceparent": parents, "tracestate": states} if states else {"traceparent": parents}


class Tracing:
    def __init__(self, config: ObservabilityConfig) -> None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        self.provider = TracerProvider(
            sampler=ParentBased(TraceIdRatioBased(config.traces_sample_ratio)),
            resource=Resource.create({"service.name": config.service_name}),
        )
        self.provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=config.traces_endpoint))
        )
        self.tracer = self.provider.get_tracer("api_gateway")
        self.propagator = TraceContextTextMapPropagator()

    async def server_span(self, request: Request, call_next: Handler) -> Response:
        """The policy outside every other: the span covers the whole request."""
        carrier = trace_carrier(request.headers)
        parent = self.propagator.extract(carrier) if carrier is not None else None
        span = self.tracer.start_span(
            f"{request.method}",
            context=parent,
            kind=SpanKind.SERVER,
            attributes={"http.request.method": request.method},
        )
        token = context.attach(trace.set_span_in_context(span))
        request.trace_id = format(span.get_span_context().trace_id, "032x")  # the access log's
        try:
            response = await call_next(request)
        except BaseException as error:
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR))
            span.end()
            raise
        finally:
            context.detach(token)
        span.update_name(f"{request.method} {request.route}")
        span.set_attributes(
            {
                "http.route": request.route,
                "url.path": request.path,
                "http.response.status_code": response.status,
                "client.address": request.client_ip,
                "gateway.request_id": request.request_id,
            }
        )
        if response.status >= 500:
            span.set_status(Status(StatusCode.ERROR))
        span.end()
        return response

    async def client_span(
        self,
        send: Send,
        request: Request,
        endpoint: UpstreamInstance,
        remaining_ms: float,
        service: str,
    ) -> Response:
        """One attempt in its own span, whose context goes upstream as ``traceparent``."""
        host, port = endpoint.address
        span = self.tracer.start_span(
            f"{request.method} {service}",
            kind=SpanKind.CLIENT,
            attributes={
                "http.request.method": request.method,
                "server.address": host,
                "server.port": port,
                "gateway.service": service,
                "gateway.instance": endpoint.authority,
                "gateway.attempt": request.attempts,
            },
        )
        headers = request.headers
        request.headers = [h for h in headers if h[0] not in TRACE_HEADERS] + self.inject(span)
        try:
            sending = send(request, endpoint, remaining_ms)  # renders the head at once
        finally:
            request.headers = headers
        try:
            response = await sending
        except BaseException as error:
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR))
            span.end()
            raise
        span.set_attribute("http.response.status_code", response.status)
        if response.status >= 500:
            span.set_status(Status(StatusCode.ERROR))
        span.end()
        return response

    def inject(self, span: trace.Span) -> Headers:
        carrier: dict[str, str] = {}
        self.propagator.inject(carrier, context=trace.set_span_in_context(span))
        return [
            (name.encode("latin-1"), value.encode("latin-1")) for name, value in carrier.items()
        ]

    async def close(self) -> None:
        """Export what is still queued (bounded), off the event loop."""
        loop = asyncio.get_running_loop()
        done = loop.run_in_executor(None, self.provider.shutdown)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done, SHUTDOWN_TIMEOUT_S)

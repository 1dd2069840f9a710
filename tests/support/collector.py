"""An OTLP/HTTP collector stand-in: a real HTTP server on loopback that keeps the spans posted
to ``/v1/traces`` (protobuf, or JSON; gzip-compressed or not), decoded into plain records."""

from __future__ import annotations

import gzip
import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

POLL_S = 0.05


@dataclass(frozen=True)
class Span:
    name: str
    kind: int  # 2: server, 3: client
    trace_id: str
    span_id: str
    parent_span_id: str
    attributes: dict[str, Any]
    service_name: str
    status_code: int = 0  # 0: unset, 2: error
    events: tuple[str, ...] = ()


def _value(value: AnyValue) -> Any:
    field = value.WhichOneof("value")
    return getattr(value, field) if field else None


def _decode(body: bytes, content_type: str) -> list[Span]:
    request = ExportTraceServiceRequest()
    if content_type.startswith("application/json"):
        from google.protobuf.json_format import Parse  # type: ignore[import-untyped]

        Parse(body, request)  # OTLP/JSON ids are hex strings; only protobuf is sent by the SDK
    else:
        request.ParseFromString(body)
    spans = []
    for resource_spans in request.resource_spans:
        resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
        for scope in resource_spans.scope_spans:
            for span in scope.spans:
                spans.append(
                    Span(
                        span.name,
                        span.kind,
                        span.trace_id.hex(),
                        span.span_id.hex(),
                        span.parent_span_id.hex(),
                        {a.key: _value(a.value) for a in span.attributes},
                        str(resource.get("service.name", "")),
                        span.status.code,
                        tuple(event.name for event in span.events),
                    )
                )
    return spans


class Collector:
    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.posts: list[str] = []  # request paths
        self.headers: list[dict[str, str]] = []  # each POST's header fields, names lower-case
        self.lock = threading.Lock()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                spans = _decode(body, self.headers.get("content-type", ""))
                with collector.lock:
                    collector.posts.append(self.path)
                    collector.headers.append({k.lower(): v for k, v in self.headers.items()})
                    collector.spans += spans
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> Collector:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def wait_for(self, count: int, timeout_s: float = 10.0, /, **match: Any) -> list[Span]:
        """At least ``count`` spans whose attributes include ``match``."""
        deadline = time.monotonic() + timeout_s
        while True:
            with self.lock:
                found = [
                    s for s in self.spans if all(s.attributes.get(k) == v for k, v in match.items())
                ]
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(POLL_S)


def dumps(spans: list[Span]) -> str:
    return json.dumps([span.__dict__ for span in spans], indent=1, default=str)

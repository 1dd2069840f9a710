"""Finished spans out of the request path: a bounded queue, and a thread that encodes and posts
them in batches (OTLP/HTTP protobuf), as the OpenTelemetry SDK's ``BatchSpanProcessor`` and
``OTLPSpanExporter`` do, with the same variables:

- ``OTEL_BSP_SCHEDULE_DELAY`` (ms, 5000): how long spans may wait for a batch to fill;
- ``OTEL_BSP_MAX_QUEUE_SIZE`` (2048): spans queued at most; past it a span is dropped and
  counted, never waited for;
- ``OTEL_BSP_MAX_EXPORT_BATCH_SIZE`` (512): spans per POST (a full batch is sent at once);
- ``OTEL_EXPORTER_OTLP_TRACES_HEADERS`` / ``OTEL_EXPORTER_OTLP_HEADERS`` (``k=v,k2=v2``,
  URL-encoded): sent with every POST (never logged);
- ``OTEL_EXPORTER_OTLP_TRACES_TIMEOUT`` / ``OTEL_EXPORTER_OTLP_TIMEOUT`` (s, 10): per POST;
- ``OTEL_EXPORTER_OTLP_TRACES_COMPRESSION`` / ``OTEL_EXPORTER_OTLP_COMPRESSION``: ``gzip``;
- ``..._CERTIFICATE``, ``..._CLIENT_CERTIFICATE``, ``..._CLIENT_KEY``: files, for an https
  collector (its CA; the gateway's certificate and key for mutual TLS).

A POST refused with 429, 502, 503 or 504, or that could not connect, is tried again after 1,
2 and 4 s, as the SDK's exporter does; then the batch is dropped with one warning.
"""

from __future__ import annotations

import gzip
import http.client
import logging
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import unquote, urlsplit

from api_gateway.observability.otlp import Encoder
from api_gateway.observability.spans import Span

log = logging.getLogger("api_gateway.tracing")
RETRYABLE: Final = frozenset({429, 502, 503, 504})
BACKOFF_S: Final[tuple[float, ...]] = (1.0, 2.0, 4.0)
WARN_EVERY_S: Final = 10.0


@dataclass(frozen=True, slots=True)
class ExportSettings:
    url: str
    schedule_delay_s: float = 5.0
    max_queue: int = 2048
    max_batch: int = 512
    timeout_s: float = 10.0
    headers: tuple[tuple[str, str], ...] = ()
    gzip: bool = False
    certificate: str | None = None  # the CA bundle an https collector is verified with
    client_certificate: str | None = None  # and the gateway's own, for mutual TLS
    client_key: str | None = None

    @classmethod
    def from_environment(cls, url: str, env: Mapping[str, str]) -> ExportSettings:
        def number(names: tuple[str, ...], default: float) -> float:
            for name in names:
                if env.get(name):
                    try:
                        value = float(env[name])
                    except ValueError:
                        log.warning("%s is not a number: using %s", name, default)
                        return default
                    if value > 0:
                        return value
                    log.warning("%s must be above 0: using %s", name, default)
                    return default
            return default

        def text(name: str) -> str | None:
            return env.get("OTEL_EXPORTER_OTLP_TRACES_" + name) or env.get(
                "OTEL_EXPORTER_OTLP_" + name
            )

        traces, otlp = "OTEL_EXPORTER_OTLP_TRACES_", "OTEL_EXPORTER_OTLP_"
        max_queue = int(number(("OTEL_BSP_MAX_QUEUE_SIZE",), 2048))
        return cls(
            url=url,
            schedule_delay_s=number(("OTEL_BSP_SCHEDULE_DELAY",), 5000) / 1000,
            max_queue=max_queue,
            max_batch=min(max_queue, int(number(("OTEL_BSP_MAX_EXPORT_BATCH_SIZE",), 512))),
            timeout_s=number((traces + "TIMEOUT", otlp + "TIMEOUT"), 10),
            headers=parse_headers(text("HEADERS") or ""),
            gzip=(text("COMPRESSION") or "").strip().lower() == "gzip",
            certificate=text("CERTIFICATE"),
            client_certificate=text("CLIENT_CERTIFICATE"),
            client_key=text("CLIENT_KEY"),
        )


def parse_headers(text: str) -> tuple[tuple[str, str], ...]:
    """``k=v,k2=v2`` (W3C baggage-like, URL-encoded), as the SDK reads its headers variable."""
    headers = []
    for item in text.split(","):
        name, equals, value = item.partition("=")
        if equals and name.strip():
            headers.append((unquote(name.strip()).lower(), unquote(value.strip())))
    return tuple(headers)


class SpanExport:
    """The queue the request path appends to, and the thread that empties it."""

    def __init__(
        self,
        settings: ExportSettings,
        encoder: Encoder,
        post: Callable[[bytes], int] | None = None,
        backoff_s: tuple[float, ...] = BACKOFF_S,
    ) -> None:
        self.settings, self.encoder, self.backoff_s = settings, encoder, backoff_s
        self.queue: deque[Span] = deque()
        self.limit = settings.max_queue
        # Spans the full queue turned away, and how many of them a warning has told of.
        self.dropped = self.reported = 0
        self.quiet_until = 0.0
        self.post = post or HttpPoster(settings).post
        self.wake = threading.Event()
        self.stopping = False
        self.thread = threading.Thread(target=self._run, name="span-export", daemon=True)
        self.thread.start()

    def add(self, span: Span) -> None:
        """On the request path: queue ``span``, or count it dropped; never waits."""
        queue = self.queue
        if len(queue) >= self.limit:
            self.dropped += 1
            return
        queue.append(span)
        if len(queue) == self.settings.max_batch:
            self.wake.set()

    def shutdown(self, timeout_s: float) -> None:
        """Export what is queued, for at most ``timeout_s``; blocking (run it off the loop)."""
        self.stopping = True
        self.wake.set()
        self.thread.join(timeout_s)

    def _run(self) -> None:
        delay, batch_size = self.settings.schedule_delay_s, self.settings.max_batch
        while not self.stopping:
            self.wake.wait(delay)
            self.wake.clear()
            while len(self.queue) >= batch_size and not self.stopping:
                self._export(batch_size)
            if self.queue and not self.stopping:
                self._export(batch_size)
        while self.queue:  # shutting down: what is left
            self._export(batch_size)

    def _export(self, batch_size: int) -> None:
        queue = self.queue
        batch = [queue.popleft() for _ in range(min(batch_size, len(queue)))]
        dropped = self.dropped - self.reported
        if dropped and (self.stopping or time.monotonic() >= self.quiet_until):
            log.warning("tracing: %d spans dropped, the export queue was full", dropped)
            self.reported += dropped
            self.quiet_until = time.monotonic() + WARN_EVERY_S  # one warning at most per period
        try:
            body = self.encoder.encode(batch)
        except Exception:
            log.exception("tracing: could not encode %d spans", len(batch))
            return
        for backoff in (*self.backoff_s, None):
            status = self.post(body)
            if 200 <= status < 300:
                return
            if status and status not in RETRYABLE:
                break
            if backoff is None or self.stopping:
                break
            time.sleep(backoff)
        log.warning("tracing: %d spans not exported (status %s)", len(batch), status or "none")


class HttpPoster:
    """POSTs a body to the traces endpoint over one kept-alive connection."""

    def __init__(self, settings: ExportSettings) -> None:
        parts = urlsplit(settings.url)
        self.https = parts.scheme == "https"
        self.host = parts.hostname or "localhost"
        self.port = parts.port or (443 if self.https else 80)
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.timeout_s, self.gzip = settings.timeout_s, settings.gzip
        self.headers = {"content-type": "application/x-protobuf", **dict(settings.headers)}
        if settings.gzip:
            self.headers["content-encoding"] = "gzip"
        self.connection: http.client.HTTPConnection | None = None
        self.tls: ssl.SSLContext | None = None
        if self.https:
            self.tls = ssl.create_default_context(cafile=settings.certificate)
            if settings.client_certificate:
                self.tls.load_cert_chain(settings.client_certificate, settings.client_key)

    def post(self, body: bytes) -> int:
        """The answer's status, or 0 when there was none (could not connect, timed out)."""
        if self.gzip:
            body = gzip.compress(body)
        for fresh in (False, True):  # a kept-alive connection the collector closed: once more
            connection = self.connection
            if connection is None or fresh:
                if connection is not None:
                    connection.close()
                connection = self.connection = self._connect()
            try:
                connection.request("POST", self.path, body, self.headers)
                response = connection.getresponse()
                response.read()
                if response.will_close:
                    connection.close()
                    self.connection = None
                return response.status
            except (OSError, http.client.HTTPException) as error:
                connection.close()
                self.connection = None
                if fresh:
                    log.warning("tracing: the collector did not answer: %s", type(error).__name__)
        return 0

    def _connect(self) -> http.client.HTTPConnection:
        if self.https:
            return http.client.HTTPSConnection(
                self.host, self.port, timeout=self.timeout_s, context=self.tls
            )
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_s)

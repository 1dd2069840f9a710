"""Server-Sent Events through the gateway: no request deadline once the head has arrived, a
bound on the gap between chunks instead, every event passed on the moment it arrives, and a
stream the gateway cuts told apart from one that ended."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.event_stream import EventStreamUpstream
from support.gateway import Fleet, GatewayProcess, running_gateway
from support.tokens import mint

READ_TIMEOUT_S = 10.0


@pytest.fixture(scope="module")
def upstream() -> Iterator[EventStreamUpstream]:
    server = EventStreamUpstream().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gateway(
    service_fleet: Fleet, module_dir: Path, upstream: EventStreamUpstream
) -> Iterator[GatewayProcess]:
    config: dict[str, Any] = {
        "routes": {
            "/events": {"timeout_ms": 1000},  # the request deadline
            "/analytics": {"timeout_ms": 1000, "stream_idle_timeout_ms": 700},
        }
    }
    urls = {**service_fleet.urls(), "event": upstream.url, "analytics": upstream.url}
    with running_gateway(module_dir, urls, config, {}) as process:
        yield process


class Stream:
    """The chunks of one streamed response, each with the time it arrived."""

    def __init__(self, port: int, path: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=READ_TIMEOUT_S)
        self.sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: gateway\r\nAccept: text/event-stream\r\n"
            f"Authorization: Bearer {mint()}\r\n\r\n".encode()
        )
        self.buffer = b""
        self.head = self._until(b"\r\n\r\n")
        self.events: list[tuple[float, bytes]] = []
        self.ended_cleanly = False

    def _more(self) -> bool:
        piece = self.sock.recv(65536)
        self.buffer += piece
        return bool(piece)

    def _until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            if not self._more():
                raise EOFError
        found, _, self.buffer = self.buffer.partition(marker)
        return found

    def read_all(self) -> None:
        try:
            while True:
                size = int(self._until(b"\r\n"), 16)
                if size == 0:
                    self._until(b"\r\n")
                    self.ended_cleanly = True
                    return
                while len(self.buffer) < size + 2:
                    if not self._more():
                        raise EOFError
                self.events.append((time.monotonic(), self.buffer[:size]))
                self.buffer = self.buffer[size + 2 :]
        except (EOFError, ConnectionResetError):
            return
        finally:
            self.sock.close()


def test_an_event_stream_outlives_the_request_deadline(
    gateway: GatewayProcess, upstream: EventStreamUpstream
) -> None:
    upstream.events, upstream.gap_s = 3, 1.5  # 3 s in all, the deadline is 1 s

    stream = Stream(gateway.port, "/api/v1/events/live")
    stream.read_all()

    assert b" 200 " in stream.head.split(b"\r\n")[0]
    assert [body for _, body in stream.events] == [
        f"id: {n}\ndata: event {n}\n\n".encode() for n in range(3)
    ]
    assert stream.ended_cleanly


def test_each_event_reaches_the_client_as_it_is_sent(
    gateway: GatewayProcess, upstream: EventStreamUpstream
) -> None:
    upstream.events, upstream.gap_s = 10, 0.1
    upstream.sent_at.clear()

    stream = Stream(gateway.port, "/api/v1/events/live")
    stream.read_all()

    assert len(stream.events) == 10
    delays = [
        arrived - sent for (arrived, _), sent in zip(stream.events, upstream.sent_at, strict=True)
    ]
    assert max(delays) < 0.05, delays


def test_a_stream_quiet_too_long_is_cut_and_logged_as_cut(
    gateway: GatewayProcess, upstream: EventStreamUpstream
) -> None:
    upstream.events, upstream.gap_s = 3, 1.5  # gaps over the route's 700 ms

    stream = Stream(gateway.port, "/api/v1/analytics/live")
    stream.read_all()

    assert len(stream.events) == 1
    assert not stream.ended_cleanly  # no last chunk: the client knows it was cut
    deadline = time.monotonic() + 5
    lines: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not lines:
        lines = [
            json.loads(line)
            for line in gateway.output().splitlines()
            if line.startswith("{") and '"/api/v1/analytics/live"' in line
        ]
        time.sleep(0.05)
    assert lines and lines[-1].get("outcome") == "stream_idle_timeout", lines

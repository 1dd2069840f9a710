"""Clients that speak to the gateway over real sockets.

``RawConnection`` sends exact bytes and parses whatever comes back (for framing attacks,
pipelining, HEAD, 100-continue). ``http_request`` is the convenience wrapper for normal requests.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Self

DEFAULT_TIMEOUT_S = 10.0
MAX_HEAD_BYTES = 1024 * 1024
MIN_WAIT_S = 0.01
MAX_READS_WHILE_WAITING = 100_000

HeaderList = Sequence[tuple[str, str]]


class IncompleteResponse(Exception):
    """The connection closed before the response was complete."""


@dataclass
class RawResponse:
    status: int
    reason: str
    version: str
    headers: list[tuple[str, str]]
    body: bytes = b""
    raw_head: bytes = field(default=b"", repr=False)

    def header_values(self, name: str) -> list[str]:
        lowered = name.lower()
        return [value for key, value in self.headers if key.lower() == lowered]

    def header(self, name: str) -> str | None:
        values = self.header_values(name)
        return values[0] if values else None

    def json(self) -> Any:
        return json.loads(self.body)


class RawConnection:
    """One TCP connection to ``127.0.0.1:port``; use as a context manager."""

    def __init__(self, port: int, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout_s)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout_s = timeout_s
        self.buffer = bytearray()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_tolerant(self, data: bytes) -> bool:
        """Send, returning False instead of raising when the server already closed on us."""
        try:
            self.sock.sendall(data)
        except OSError:
            return False
        return True

    def read_response(self, method: str = "GET") -> RawResponse:
        """Read one response (a 1xx interim response counts as one)."""
        head = self._read_head()
        response = _parse_head(head)
        if 100 <= response.status < 200 or method == "HEAD" or response.status in (204, 304):
            return response
        response.body = self._read_body(response)
        return response

    def stream_response(self, sink: Callable[[bytes], None]) -> RawResponse:
        """Read one response, handing its body to ``sink`` piece by piece instead of keeping it."""
        response = _parse_head(self._read_head())
        encoding = ",".join(response.header_values("transfer-encoding")).lower()
        if "chunked" in encoding:
            self._read_chunked(sink)
        else:
            self._stream_exact(int(response.header("content-length") or 0), sink)
        return response

    def _stream_exact(self, size: int, sink: Callable[[bytes], None]) -> None:
        remaining = size
        while remaining > 0:
            deadline = time.monotonic() + self.timeout_s
            if not self.buffer and not self._recv(deadline):
                raise IncompleteResponse(f"closed with {remaining} of {size} body bytes missing")
            piece = bytes(self.buffer[:remaining])
            del self.buffer[: len(piece)]
            remaining -= len(piece)
            sink(piece)

    def read_final_response(self, method: str = "GET") -> tuple[list[int], RawResponse]:
        """Skip interim 1xx responses; returns their statuses and the final response."""
        interim: list[int] = []
        for _ in range(10):
            response = self.read_response(method)
            if response.status >= 200:
                return interim, response
            interim.append(response.status)
        raise AssertionError(f"too many interim responses: {interim}")

    def read_until_closed(self, timeout_s: float | None = None) -> bytes:
        """Everything the server sends until it closes the connection (or the timeout)."""
        deadline = time.monotonic() + (timeout_s or self.timeout_s)
        with contextlib.suppress(TimeoutError):
            while self._recv(deadline):
                pass
        data = bytes(self.buffer)
        self.buffer.clear()
        return data

    def is_closed_by_peer(self, timeout_s: float = 3.0) -> bool:
        """True when the server closes (EOF or reset) within the timeout; buffered data is kept.

        Checks at least once, so ``timeout_s=0`` asks "is it closed already?".
        """
        deadline = time.monotonic() + timeout_s
        for _ in range(MAX_READS_WHILE_WAITING):
            try:
                self.sock.settimeout(max(deadline - time.monotonic(), MIN_WAIT_S))
                data = self.sock.recv(65536)
            except TimeoutError:
                return False
            except OSError:
                return True
            if not data:
                return True
            self.buffer += data
            if time.monotonic() >= deadline:
                return False
        return False

    def _recv(self, deadline: float) -> bool:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no complete response before the deadline")
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(262144)
        except TimeoutError:
            raise
        except OSError:
            return False
        self.buffer += data
        return bool(data)

    def _read_head(self) -> bytes:
        deadline = time.monotonic() + self.timeout_s
        while b"\r\n\r\n" not in self.buffer:
            if len(self.buffer) > MAX_HEAD_BYTES:
                raise AssertionError("response head too large")
            if not self._recv(deadline):
                raise IncompleteResponse(f"closed before a response head: {bytes(self.buffer)!r}")
        end = self.buffer.index(b"\r\n\r\n") + 4
        head = bytes(self.buffer[:end])
        del self.buffer[:end]
        return head

    def _read_exact(self, size: int, deadline: float) -> bytes:
        while len(self.buffer) < size:
            if not self._recv(deadline):
                raise IncompleteResponse(f"closed after {len(self.buffer)} of {size} body bytes")
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data

    def _read_line(self, deadline: float) -> bytes:
        while b"\r\n" not in self.buffer:
            if not self._recv(deadline):
                raise IncompleteResponse("closed inside a chunked body")
        end = self.buffer.index(b"\r\n") + 2
        line = bytes(self.buffer[:end])
        del self.buffer[:end]
        return line

    def _read_body(self, response: RawResponse) -> bytes:
        body = bytearray()
        encoding = ",".join(response.header_values("transfer-encoding")).lower()
        if "chunked" in encoding:
            self._read_chunked(body.extend)
            return bytes(body)
        length = response.header("content-length")
        if length is not None:
            self._stream_exact(int(length), body.extend)
            return bytes(body)
        return self.read_until_closed()

    def _read_chunked(self, sink: Callable[[bytes], None]) -> None:
        while True:
            deadline = time.monotonic() + self.timeout_s
            size = int(self._read_line(deadline).split(b";")[0].strip(), 16)
            if size == 0:
                while self._read_line(deadline) != b"\r\n":
                    pass
                return
            self._stream_exact(size, sink)
            self._read_exact(2, deadline)


def _parse_head(head: bytes) -> RawResponse:
    lines = head[:-4].split(b"\r\n")
    version, status, reason = ([*lines[0].decode("latin-1").split(" ", 2), ""])[:3]
    headers = []
    for line in lines[1:]:
        name, _, value = line.decode("latin-1").partition(":")
        headers.append((name, value.strip(" \t")))
    return RawResponse(int(status), reason, version, headers, raw_head=head)


def build_request(
    method: str,
    target: str,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes | None = None,
    host: str = "gateway.test",
) -> bytes:
    """Exact request bytes: Host first, then ``headers``, then Content-Length if a body is given."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}"]
    header_list = list(headers)
    lines.extend(f"{name}: {value}" for name, value in header_list)
    names = {name.lower() for name, _ in header_list}
    if body is not None and "content-length" not in names and "transfer-encoding" not in names:
        lines.append(f"Content-Length: {len(body)}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head + (body or b"")


def http_request(
    port: int,
    method: str,
    target: str,
    headers: HeaderList | Mapping[str, str] = (),
    body: bytes | None = None,
    token: str | None = None,
    host: str = "gateway.test",
) -> RawResponse:
    """One request on a fresh connection; ``token`` adds ``Authorization: Bearer``."""
    header_list = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
    if token is not None:
        header_list.append(("Authorization", f"Bearer {token}"))
    with RawConnection(port) as connection:
        connection.send(build_request(method, target, header_list, body, host))
        return connection.read_response(method)

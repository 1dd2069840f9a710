"""A recording upstream: a real HTTP/1.1 server on 127.0.0.1 that remembers what it was sent.

Each accepted connection gets its own daemon thread and is served keep-alive until the peer
closes it. For every request the server records the raw head, method, target, headers (case and
duplicates preserved) and the body (kept in memory only up to ``BODY_KEEP_LIMIT``; beyond that
only its length and SHA-256). What it answers is a ``Reply``, set per path or as a default.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import Enum

from support.patterns import pattern_blocks
from support.readiness import readable

BODY_KEEP_LIMIT = 8 * 1024 * 1024
MAX_HEAD_BYTES = 1024 * 1024
RECV_SIZE = 256 * 1024
WAIT_STEP_S = 0.02


class Behaviour(Enum):
    RESPOND = "respond"
    RESPOND_THEN_CLOSE = "respond-then-close"  # a full reply, then the connection is closed
    CLOSE_WITHOUT_RESPONSE = "close"
    GARBAGE = "garbage"
    TRUNCATED_HEAD = "truncated-head"
    TRUNCATED_BODY = "truncated-body"
    STALLED_BODY = "stalled-body"  # half the body, then nothing for ``stall_s``, then close


@dataclass(frozen=True)
class Reply:
    """What the upstream answers. ``body=None`` means: echo the request as JSON."""

    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None
    delay_s: float = 0.0
    stall_s: float = 0.0
    generated_size: int | None = None  # stream this many pattern bytes instead of ``body``
    chunked: bool = False
    behaviour: Behaviour = Behaviour.RESPOND


@dataclass
class RecordedRequest:
    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]
    raw_head: bytes
    body: bytes = b""
    body_length: int = 0
    body_sha256: str = ""
    body_complete: bool = False
    body_read_ended: bool = False
    trailers: list[tuple[str, str]] = field(default_factory=list)
    client_gone_before_reply: bool = False

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    def header_values(self, name: str) -> list[str]:
        lowered = name.lower()
        return [value for key, value in self.headers if key.lower() == lowered]

    def header(self, name: str) -> str | None:
        values = self.header_values(name)
        return values[0] if values else None

    def header_names(self) -> set[str]:
        return {key.lower() for key, _ in self.headers}


@dataclass
class _Connection:
    sock: socket.socket
    buffer: bytearray = field(default_factory=bytearray)

    def recv_more(self) -> bool:
        try:
            data = self.sock.recv(RECV_SIZE)
        except OSError:
            return False
        self.buffer += data
        return bool(data)

    def read_until(self, marker: bytes, limit: int) -> bytes | None:
        while marker not in self.buffer:
            if len(self.buffer) > limit or not self.recv_more():
                return None
        end = self.buffer.index(marker) + len(marker)
        data = bytes(self.buffer[:end])
        del self.buffer[:end]
        return data

    def read_chunks(self, size: int) -> Iterator[bytes]:
        """Yield exactly ``size`` bytes in pieces, or stop early when the peer closes."""
        remaining = size
        while remaining > 0:
            if not self.buffer and not self.recv_more():
                return
            piece = bytes(self.buffer[:remaining])
            del self.buffer[: len(piece)]
            remaining -= len(piece)
            yield piece

    def peer_closed(self) -> bool:
        if not readable([self.sock], 0):
            return False
        try:
            return self.sock.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True


class _BodySink:
    """Counts and hashes a body; keeps the bytes only while they are small."""

    def __init__(self) -> None:
        self.length = 0
        self.digest = hashlib.sha256()
        self.kept = bytearray()

    def add(self, piece: bytes) -> None:
        self.length += len(piece)
        self.digest.update(piece)
        if self.length <= BODY_KEEP_LIMIT:
            self.kept += piece

    def fill(self, record: RecordedRequest, complete: bool) -> None:
        record.body = bytes(self.kept) if self.length <= BODY_KEEP_LIMIT else b""
        record.body_length = self.length
        record.body_sha256 = self.digest.hexdigest()
        record.body_complete = complete
        record.body_read_ended = True


class RecordingUpstream:
    """Start with ``start()`` (or use as a context manager); ``url`` is where it listens."""

    def __init__(self, name: str = "upstream") -> None:
        self.name = name
        self.requests: list[RecordedRequest] = []
        self.connections_accepted = 0
        self.default_reply = Reply()
        self.replies: dict[str, Reply] = {}
        self.pause_before_body_s = 0.0  # a slow consumer: wait this long before reading a body
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._open: set[socket.socket] = set()
        self._stopping = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> RecordingUpstream:
        threading.Thread(target=self._accept_loop, name=f"{self.name}-accept", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stopping = True
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            for sock in list(self._open):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> RecordingUpstream:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # -- what tests configure and read --------------------------------------------------------

    def respond(self, reply: Reply, path: str | None = None) -> None:
        """Answer ``reply`` for requests to ``path`` (target without query), or to all."""
        if path is None:
            self.default_reply = reply
        else:
            self.replies[path] = reply

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.default_reply = Reply()
            self.replies.clear()
            self.pause_before_body_s = 0.0

    def wait_for_requests(self, count: int, timeout_s: float = 5.0) -> list[RecordedRequest]:
        """Wait until ``count`` requests were recorded; returns what was recorded by then."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while len(self.requests) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._changed.wait(left)
            return list(self.requests)

    def only_request(self, timeout_s: float = 5.0) -> RecordedRequest:
        requests = self.wait_for_requests(1, timeout_s)
        assert len(requests) == 1, f"{self.name} expected 1 request, saw {len(requests)}"
        return requests[0]

    def wait_until(self, condition: str, timeout_s: float = 5.0) -> bool:
        """Wait until the last request's flag ``condition`` is true (e.g. body_complete)."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while not (self.requests and getattr(self.requests[-1], condition)):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
            return True

    # -- the server -----------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        while not self._stopping:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections_accepted += 1
                self._open.add(sock)
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connection = _Connection(sock)
        try:
            while not self._stopping and self._serve_one(connection):
                pass
        except OSError:
            pass
        finally:
            with self._lock:
                self._open.discard(sock)
            with contextlib.suppress(OSError):
                sock.close()

    def _serve_one(self, connection: _Connection) -> bool:
        head = connection.read_until(b"\r\n\r\n", MAX_HEAD_BYTES)
        if head is None:
            return False
        record = _parse_head(head)
        self._record(record)
        time.sleep(self.pause_before_body_s)
        sink = _BodySink()
        complete = _read_body(connection, record, sink)
        with self._changed:
            sink.fill(record, complete)
            self._changed.notify_all()
        if not complete:
            return False
        reply = self.reply_for(record)
        if not self._wait_reply_delay(connection, record, reply.delay_s):
            return False
        keep_alive = _send_reply(connection.sock, record, reply, self.name)
        return keep_alive and reply.behaviour is Behaviour.RESPOND and not _says_close(reply)

    def reply_for(self, record: RecordedRequest) -> Reply:
        """What to answer ``record`` (its body read): the path's reply, else the default."""
        return self.replies.get(record.path, self.default_reply)

    def _record(self, record: RecordedRequest) -> None:
        with self._changed:
            self.requests.append(record)
            self._changed.notify_all()

    def _wait_reply_delay(
        self, connection: _Connection, record: RecordedRequest, delay: float
    ) -> bool:
        """Sleep ``delay`` seconds, noticing when the gateway gives up on the request."""
        deadline = time.monotonic() + delay
        while time.monotonic() < deadline:
            if connection.peer_closed():
                with self._changed:
                    record.client_gone_before_reply = True
                    self._changed.notify_all()
                return False
            time.sleep(WAIT_STEP_S)
        return True


def _parse_head(head: bytes) -> RecordedRequest:
    lines = head[:-4].split(b"\r\n")
    method, target, version = ([*lines[0].decode("latin-1").split(" ", 2), "", ""])[:3]
    headers = []
    for line in lines[1:]:
        name, _, value = line.decode("latin-1").partition(":")
        headers.append((name, value.strip(" \t")))
    return RecordedRequest(method, target, version, headers, raw_head=head)


def _read_body(connection: _Connection, record: RecordedRequest, sink: _BodySink) -> bool:
    encodings = ",".join(record.header_values("transfer-encoding")).lower()
    if "chunked" in encodings:
        return _read_chunked(connection, record, sink)
    length = record.header("content-length")
    size = int(length) if length and length.isdigit() else 0
    for piece in connection.read_chunks(size):
        sink.add(piece)
    return sink.length == size


def _read_chunked(connection: _Connection, record: RecordedRequest, sink: _BodySink) -> bool:
    while True:
        line = connection.read_until(b"\r\n", 4096)
        if line is None:
            return False
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            return False
        if size == 0:
            return _read_trailers(connection, record)
        for piece in connection.read_chunks(size):
            sink.add(piece)
        if connection.read_until(b"\r\n", 4096) is None:
            return False


def _read_trailers(connection: _Connection, record: RecordedRequest) -> bool:
    for _ in range(100):
        line = connection.read_until(b"\r\n", 8192)
        if line is None:
            return False
        if line == b"\r\n":
            return True
        name, _, value = line.decode("latin-1").partition(":")
        record.trailers.append((name, value.strip()))
    return False


def _says_close(reply: Reply) -> bool:
    return any(
        key.lower() == "connection" and "close" in value.lower() for key, value in reply.headers
    )


def _echo_body(record: RecordedRequest, name: str) -> bytes:
    document = {
        "service": name,
        "method": record.method,
        "target": record.target,
        "request_id": record.header("x-request-id"),
    }
    return json.dumps(document).encode()


def _send_reply(sock: socket.socket, record: RecordedRequest, reply: Reply, name: str) -> bool:
    """Write the reply; returns whether the connection may be kept alive."""
    if reply.behaviour is Behaviour.CLOSE_WITHOUT_RESPONSE:
        return False
    if reply.behaviour is Behaviour.GARBAGE:
        sock.sendall(b"\x00\x01 this is not HTTP at all \xff\xfe\r\n\r\n")
        return False
    body = _echo_body(record, name) if reply.body is None else reply.body
    size = reply.generated_size if reply.generated_size is not None else len(body)
    head = _reply_head(reply, size, name)
    if reply.behaviour is Behaviour.TRUNCATED_HEAD:
        sock.sendall(head[: len(head) // 2])
        return False
    sock.sendall(head)
    if record.method == "HEAD":
        return True
    if reply.behaviour is Behaviour.TRUNCATED_BODY:
        sock.sendall(body[: len(body) // 2] if body else b"partial")
        return False
    if reply.behaviour is Behaviour.STALLED_BODY:
        sock.sendall(body[: len(body) // 2])
        time.sleep(reply.stall_s)
        return False
    pieces = pattern_blocks(size) if reply.generated_size is not None else iter([body])
    _send_pieces(sock, pieces, reply.chunked)
    return True


def _reply_head(reply: Reply, size: int, name: str) -> bytes:
    lines = [f"HTTP/1.1 {reply.status} {_reason(reply.status)}"]
    names = {key.lower() for key, _ in reply.headers}
    if "content-type" not in names:
        lines.append("Content-Type: application/json")
    lines.append(f"X-Upstream-Name: {name}")
    if reply.chunked:
        lines.append("Transfer-Encoding: chunked")
    elif "content-length" not in names:
        lines.append(f"Content-Length: {size}")
    lines.extend(f"{key}: {value}" for key, value in reply.headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _send_pieces(sock: socket.socket, pieces: Iterator[bytes], chunked: bool) -> None:
    for piece in pieces:
        if not piece:
            continue
        if chunked:
            sock.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
        else:
            sock.sendall(piece)
    if chunked:
        sock.sendall(b"0\r\n\r\n")


def _reason(status: int) -> str:
    reasons = {200: "OK", 201: "Created", 204: "No Content", 404: "Not Found", 500: "Oops"}
    return reasons.get(status, "Status")

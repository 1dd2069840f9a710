"""An upstream that writes exact bytes: what a broken or hostile service puts on the wire.

Each connection gets a thread that reads request heads (the gateway sends GET and HEAD here,
without bodies) and answers each with the script registered for its path, byte for byte.
A script may hold bytes back until the test calls ``release()``, to send them while the
gateway keeps the connection idle in its pool.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from dataclasses import dataclass, field

from support.ports import free_port

RECV_SIZE = 65536
MAX_HEAD_BYTES = 65536
SOCKET_TIMEOUT_S = 10.0
RELEASE_WAIT_S = 10.0
WAIT_STEP_S = 0.01
DEFAULT_REPLY = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"
# A service (in the gateway's config) whose failures no circuit, no ejection and no health
# check may hide: for tests whose point is those failures.
QUIET_SERVICE = {
    "circuit_breaker": {"volume_threshold": 100_000},
    "outlier_detection": {"consecutive_failures": 100_000},
    "health_check": {"enabled": False},
}


@dataclass(frozen=True)
class Repeat:
    """``piece`` written ``count`` times: a huge answer without holding it in memory."""

    piece: bytes
    count: int


@dataclass(frozen=True)
class Drip:
    """``piece`` written ``count`` times, ``interval_s`` apart: a body that never quite stalls."""

    piece: bytes
    count: int
    interval_s: float


Piece = bytes | Repeat | Drip


@dataclass(frozen=True)
class Script:
    pieces: tuple[Piece, ...]
    later: bytes = b""  # written once the test calls release(), while the connection is idle


@dataclass
class Exchange:
    connection: int  # the upstream connection it arrived on, numbered from 0
    method: str
    path: str
    head: bytes
    written: bool = False  # the whole script went out (the gateway read it all)


@dataclass
class RawUpstream:
    port: int = field(default_factory=free_port)
    scripts: dict[str, Script] = field(default_factory=dict)
    exchanges: list[Exchange] = field(default_factory=list)
    closed: set[int] = field(default_factory=set)  # connections the gateway ended
    connections: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._stopping = False
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._threads = [threading.Thread(target=self._accept_loop, daemon=True)]
        self._threads[0].start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def script(self, path: str, *pieces: Piece, later: bytes = b"") -> None:
        self.scripts[path] = Script(pieces, later)

    @property
    def fully_written(self) -> list[bool]:
        with self._lock:
            return [e.written for e in self.exchanges]

    def reset(self) -> None:
        with self._lock:
            self.scripts.clear()
            self.exchanges.clear()
            self._release.clear()

    def release(self) -> None:
        self._release.set()

    def requests_for(self, path: str) -> list[Exchange]:
        with self._lock:
            return [e for e in self.exchanges if e.path == path]

    def wait_for(self, path: str, count: int, timeout_s: float = 5.0) -> list[Exchange]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = self.requests_for(path)
            if len(found) >= count:
                return found
            time.sleep(WAIT_STEP_S)
        raise AssertionError(f"{count} requests for {path} not seen: {self.requests_for(path)}")

    def wait_closed(self, connection: int, timeout_s: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if connection in self.closed:
                return True
            time.sleep(WAIT_STEP_S)
        return False

    def stop(self) -> None:
        self._stopping = True
        self._release.set()
        with contextlib.suppress(OSError):
            self._listener.close()

    def _accept_loop(self) -> None:
        while not self._stopping:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                number = self.connections
                self.connections += 1
            thread = threading.Thread(target=self._serve, args=(sock, number), daemon=True)
            thread.start()

    def _serve(self, sock: socket.socket, number: int) -> None:
        sock.settimeout(SOCKET_TIMEOUT_S)
        buffer = b""
        try:
            while not self._stopping:
                while b"\r\n\r\n" not in buffer:
                    data = sock.recv(RECV_SIZE)
                    if not data or len(buffer) > MAX_HEAD_BYTES:
                        return
                    buffer += data
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                method, target = head.split(b" ", 2)[:2]
                path = target.decode("latin-1").partition("?")[0]
                exchange = Exchange(number, method.decode(), path, head)
                with self._lock:
                    self.exchanges.append(exchange)
                    script = self.scripts.get(path, Script((DEFAULT_REPLY,)))
                self._answer(sock, script)
                exchange.written = True
        except OSError:
            pass
        finally:
            with self._lock:
                self.closed.add(number)
            sock.close()

    def _answer(self, sock: socket.socket, script: Script) -> None:
        for piece in script.pieces:
            if isinstance(piece, Repeat):
                for _ in range(piece.count):
                    sock.sendall(piece.piece)
            elif isinstance(piece, Drip):
                for _ in range(piece.count):
                    if self._stopping:
                        return
                    sock.sendall(piece.piece)
                    time.sleep(piece.interval_s)
            else:
                sock.sendall(piece)
        if script.later and self._release.wait(RELEASE_WAIT_S):
            sock.sendall(script.later)

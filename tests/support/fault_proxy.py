"""A TCP proxy on 127.0.0.1 between the gateway and an upstream that injects faults on demand.

Requests always pass through untouched; the fault applies to what the upstream answers, read at
the moment each piece of the answer arrives (so a pooled keep-alive connection that was healthy
becomes faulty when the mode changes). ``kill()`` stops listening and closes every connection;
``restart()`` listens again on the same port.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from dataclasses import dataclass
from enum import Enum

from support.readiness import readable

RECV_SIZE = 64 * 1024
POLL_S = 0.05
KILL_WAIT_S = 2.0
GARBAGE = b"\x00\x01 not HTTP \xff\xfe\r\n\r\n"
HEAD_END = b"\r\n\r\n"


class Mode(Enum):
    PASS = "pass"
    LATENCY = "latency"  # hold each answer ``latency_s`` before passing it on
    STALL = "stall"  # pass the request, never a byte of the answer
    RESET = "reset"  # pass ``after_bytes`` of the answer, then RST (SO_LINGER 0)
    CLOSE_MID_BODY = "close-mid-body"  # the head and ``after_bytes`` of body, then FIN
    GARBAGE = "garbage"  # bytes that are not HTTP instead of the answer, then FIN


@dataclass
class Fault:
    mode: Mode = Mode.PASS
    latency_s: float = 0.0
    after_bytes: int = 0


class _Link:
    """One gateway connection and its upstream connection; the answer's direction is faulted.

    One thread per link, polling both sockets: a socket is closed only by the thread that reads
    it (Linux does not release a socket another thread is blocked reading, so an RST would not
    go out).
    """

    def __init__(self, proxy: FaultProxy, client: socket.socket, upstream: socket.socket) -> None:
        self.proxy, self.client, self.upstream = proxy, client, upstream
        self.fault_seen: Fault | None = None
        self.passed = 0  # answer bytes passed on since the current fault was set
        self.head_seen = False
        self.stalled = False
        self.closed = False
        self.life = proxy.lives  # a kill() ends every link of the life before it

    def start(self) -> None:
        threading.Thread(target=self._run, daemon=True).start()

    def close(self, reset: bool = False) -> None:
        if reset:
            with contextlib.suppress(OSError):
                self.client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        for sock in (self.client, self.upstream):
            with contextlib.suppress(OSError):
                sock.close()
        self.closed = True
        self.proxy._forget(self)

    def _run(self) -> None:
        try:
            while not self.closed and self._step():
                pass
        except OSError:
            pass
        if not self.closed:
            self.close()

    def _step(self) -> bool:
        if self.life != self.proxy.lives or (
            self.stalled and self.proxy.fault.mode is not Mode.STALL
        ):
            return False
        watched: list[socket.socket | int] = (
            [self.client] if self.stalled else [self.client, self.upstream]
        )
        ready = readable(watched, POLL_S)
        if self.client in ready:
            data = self.client.recv(RECV_SIZE)
            if not data:
                return False
            self.upstream.sendall(data)
        if self.upstream in ready:
            data = self.upstream.recv(RECV_SIZE)
            if not data:
                return False
            return self._pass(data)
        return True

    def _pass(self, data: bytes) -> bool:
        """Pass ``data`` on as the current fault allows; False once the link was cut."""
        fault = self.proxy.fault
        if fault is not self.fault_seen:
            self.fault_seen, self.passed, self.head_seen = fault, 0, False
        mode = fault.mode
        if mode is Mode.STALL:
            self.stalled = True  # the answer is dropped; the link ends when the stall does
            return True
        if mode is Mode.GARBAGE:
            self.client.sendall(GARBAGE)
            return False
        if mode is Mode.LATENCY:
            time.sleep(fault.latency_s)
        if mode is Mode.RESET or mode is Mode.CLOSE_MID_BODY:
            return self._pass_until_cut(data, fault)
        self.client.sendall(data)
        return True

    def _pass_until_cut(self, data: bytes, fault: Fault) -> bool:
        allowance = fault.after_bytes
        if fault.mode is Mode.CLOSE_MID_BODY:
            end = data.find(HEAD_END) if not self.head_seen else -1
            if not self.head_seen and end < 0:
                self.client.sendall(data)  # the head is not over yet
                return True
            if not self.head_seen:
                self.head_seen = True
                allowance += end + len(HEAD_END)
        piece = data[: max(allowance - self.passed, 0)]
        self.client.sendall(piece)
        self.passed += len(piece)
        if self.passed < allowance:
            return True
        self.close(reset=fault.mode is Mode.RESET)
        return False


class FaultProxy:
    """``FaultProxy(upstream_port).start()``; ``url`` is what the gateway is given."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.fault = Fault()
        self.killed = False
        self.lives = 0
        self.accepted = 0
        self._links: set[_Link] = set()
        self._lock = threading.Lock()
        self._listener = self._listen(0)
        self.port: int = self._listener.getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def set(self, mode: Mode, latency_s: float = 0.0, after_bytes: int = 0) -> None:
        # A new object each time: links notice the change by identity and restart their count.
        self.fault = Fault(mode, latency_s, after_bytes)

    def start(self) -> FaultProxy:
        threading.Thread(target=self._accept_loop, args=(self._listener,), daemon=True).start()
        return self

    def kill(self) -> None:
        """Stop listening and cut every connection, like a process that died."""
        self.killed = True
        self.lives += 1
        # shutdown() wakes the thread blocked in accept(); close() alone would not (Linux).
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self._listener.close()
        # Each link notices within one poll and closes its own sockets.
        deadline = time.monotonic() + KILL_WAIT_S
        while self.open_links() and time.monotonic() < deadline:
            time.sleep(POLL_S / 5)

    def restart(self) -> None:
        self.killed = False
        self._listener = self._listen(self.port)
        self.start()

    def stop(self) -> None:
        self.kill()

    def open_links(self) -> int:
        with self._lock:
            return len(self._links)

    def _listen(self, port: int) -> socket.socket:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(128)
        return listener

    def _accept_loop(self, listener: socket.socket) -> None:
        while not self.killed:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            link = _Link(self, client, upstream)
            with self._lock:
                self.accepted += 1
                self._links.add(link)
            link.start()

    def _forget(self, link: _Link) -> None:
        with self._lock:
            self._links.discard(link)

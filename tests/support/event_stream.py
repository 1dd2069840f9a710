"""An upstream that answers every request with a Server-Sent Events stream: ``events`` events,
``gap_s`` apart, each written the moment its send time is recorded, then the last chunk."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field

HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
)


@dataclass
class EventStreamUpstream:
    events: int = 3
    gap_s: float = 0.5
    content_type: bytes = b"text/event-stream"
    sent_at: list[float] = field(default_factory=list)
    finished: list[bool] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.running = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> EventStreamUpstream:
        self.thread.start()
        return self

    def _accept(self) -> None:
        while self.running:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        with sock:
            data = b""
            while b"\r\n\r\n" not in data:
                piece = sock.recv(65536)
                if not piece:
                    return
                data += piece
            if b"user-agent: api-gateway-health" in data.lower():
                sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
                return
            try:
                sock.sendall(HEAD.replace(b"text/event-stream", self.content_type))
                for n in range(self.events):
                    if n:
                        time.sleep(self.gap_s)
                    event = f"id: {n}\ndata: event {n}\n\n".encode()
                    self.sent_at.append(time.monotonic())
                    sock.sendall(b"%x\r\n%s\r\n" % (len(event), event))
                sock.sendall(b"0\r\n\r\n")
                self.finished.append(True)
            except OSError:
                self.finished.append(False)

    def stop(self) -> None:
        self.running = False
        self.listener.close()

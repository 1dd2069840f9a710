"""A WebSocket upstream made with the real ``websockets`` library, on its own thread and loop.

It echoes every message, records each handshake's headers and each close code it receives,
closes with a code when told ``close:<code>``, sends ``n`` messages on ``burst:<n>``, and answers
plain HTTP (the gateway's health checks) with 200.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from dataclasses import dataclass, field
from http import HTTPStatus

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

START_TIMEOUT_S = 5.0


@dataclass
class Recorded:
    handshakes: list[Headers] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    close_codes: list[int | None] = field(default_factory=list)
    open_now: int = 0


class WebSocketUpstream:
    def __init__(self, refuse_with: int | None = None) -> None:
        self.recorded = Recorded()
        self.refuse_with = refuse_with  # answer handshakes with this status instead of 101
        self.loop = asyncio.new_event_loop()
        self.server: Server | None = None
        self.port = 0
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> WebSocketUpstream:
        self.thread.start()
        future = asyncio.run_coroutine_threadsafe(self._start(), self.loop)
        future.result(START_TIMEOUT_S)
        return self

    async def _start(self) -> None:
        self.server = await serve(
            self._handle,
            "127.0.0.1",
            0,
            process_request=self._plain_http,
            max_size=4 * 1024 * 1024,
            ping_interval=None,
        )
        self.port = self.server.sockets[0].getsockname()[1]

    def _plain_http(self, connection: ServerConnection, request: Request) -> Response | None:
        self.recorded.handshakes.append(request.headers)
        self.recorded.paths.append(request.path)
        if request.headers.get("Upgrade", "").lower() != "websocket":
            return connection.respond(HTTPStatus.OK, "ok\n")
        if self.refuse_with is not None:
            return connection.respond(HTTPStatus(self.refuse_with), "no websocket here\n")
        return None

    async def _handle(self, connection: ServerConnection) -> None:
        self.recorded.open_now += 1
        try:
            async for message in connection:
                if isinstance(message, str) and message.startswith("close:"):
                    await connection.close(int(message.split(":")[1]), "asked to")
                    break
                if isinstance(message, str) and message.startswith("burst:"):
                    for n in range(int(message.split(":")[1])):
                        await connection.send(f"event {n}")
                    continue
                await connection.send(message)
        except Exception:  # a connection cut from the other side ends the handler
            pass
        finally:
            self.recorded.open_now -= 1
            self.recorded.close_codes.append(
                connection.close_code if connection.protocol.close_rcvd is not None else None
            )

    def wait_close_code(self, code: int, since: int, timeout_s: float = 5.0) -> bool:
        """Whether a connection closed with ``code`` is recorded after the first ``since``
        closes. By code, not by count: a connection of an earlier test that the upstream closed
        itself is recorded once its closing handshake ends, which may be after that test."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if code in self.recorded.close_codes[since:]:
                return True
            time.sleep(0.02)
        return False

    def wait_closed_count(self, count: int, timeout_s: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if len(self.recorded.close_codes) >= count:
                return True
            time.sleep(0.02)
        return False

    def stop(self) -> None:
        async def shut() -> None:
            if self.server is not None:
                self.server.close()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self.server.wait_closed(), 2)

        if self.thread.is_alive():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(shut(), self.loop).result(5)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)

"""The access log: one JSON line per request, written in batches once per loop iteration
so that logging costs one ``write`` per burst, not one per request."""

from __future__ import annotations

import asyncio
import sys
import time
from typing import BinaryIO

from api_gateway.types import Request, Response

# Every field is JSON-safe by construction (a validated request id, an llhttp-checked method,
# a canonical path, an IP address), so one f-string (the cheapest way Python has to build a
# string) replaces building and encoding a dict for every request. The time is read once per
# batch, when it is written: every line of a batch is recorded in the same loop iteration.
TIME = '{"time":%d,'


class AccessLog:
    def __init__(self, loop: asyncio.AbstractEventLoop, stream: BinaryIO | None = None) -> None:
        self.loop = loop
        self.stream = stream or sys.stdout.buffer
        self.pending: list[str] = []

    def record(self, request: Request, response: Response, duration_ms: str) -> None:
        """One line; ``duration_ms`` is already formatted (``%.3f``), as in X-Response-Time."""
        line = (
            f'"level":"info","msg":"request","request_id":"{request.request_id}",'
            f'"method":"{request.method}","path":"{request.path}","route":"{request.route}",'
            f'"status":{response.status},"duration_ms":{duration_ms},'
            f'"client_ip":"{request.client_ip}"}}'
        )
        if not self.pending:
            self.loop.call_soon(self.flush)
        self.pending.append(line)

    def flush(self) -> None:
        pending, self.pending = self.pending, []
        if pending:
            start = TIME % (time.time() * 1000)
            self.stream.write((start + ("\n" + start).join(pending) + "\n").encode())
            self.stream.flush()

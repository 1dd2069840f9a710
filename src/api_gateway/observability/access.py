"""The access log: one JSON line per request, written in batches once per loop iteration
so that logging costs one ``write`` per burst, not one per request."""

from __future__ import annotations

import asyncio
import sys
import time
from typing import BinaryIO

import orjson

from api_gateway.types import Request, Response


class AccessLog:
    def __init__(self, loop: asyncio.AbstractEventLoop, stream: BinaryIO | None = None) -> None:
        self.loop = loop
        self.stream = stream or sys.stdout.buffer
        self.pending: list[bytes] = []

    def record(self, request: Request, response: Response, duration_s: float) -> None:
        line = orjson.dumps(
            {
                "time": int(time.time() * 1000),
                "level": "info",
                "msg": "request",
                "request_id": request.request_id,
                "method": request.method,
                "path": request.path,
                "route": request.route,
                "status": response.status,
                "duration_ms": round(duration_s * 1000, 3),
                "client_ip": request.client_ip,
            }
        )
        if not self.pending:
            self.loop.call_soon(self.flush)
        self.pending.append(line)

    def flush(self) -> None:
        pending, self.pending = self.pending, []
        if pending:
            pending.append(b"")
            self.stream.write(b"\n".join(pending))
            self.stream.flush()

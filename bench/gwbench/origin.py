"""A minimal file-service origin for the streaming case (run as a script, one process).

``GET .../download/<n>`` streams ``n`` zero bytes with a Content-Length; any request with a body
(Content-Length or chunked) is read and discarded, and answered ``{"received": <bytes>}``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from typing import cast

import httptools

CHUNK = bytes(256 * 1024)


class Origin(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.received = 0
        self.can_write = asyncio.Event()
        self.can_write.set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.can_write.set()
        self.transport = None

    def pause_writing(self) -> None:
        self.can_write.clear()

    def resume_writing(self) -> None:
        self.can_write.set()

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.url, self.received = b"", 0

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.received += len(body)

    def on_message_complete(self) -> None:
        keep_alive = self.parser.should_keep_alive()
        if self.parser.get_method() == b"GET":
            size = int(self.url.rsplit(b"/", 1)[-1] or b"0")
            assert self.transport is not None
            self.transport.pause_reading()
            asyncio.get_running_loop().create_task(self.send_zeros(size, keep_alive))
        else:
            body = b'{"received":%d}' % self.received
            self.write_head(200, len(body), b"application/json", keep_alive)
            self.write(body)
            if not keep_alive:
                self.close()

    def write_head(self, status: int, length: int, kind: bytes, keep_alive: bool) -> None:
        connection = b"keep-alive" if keep_alive else b"close"
        self.write(
            b"HTTP/1.1 %d OK\r\ncontent-type: %s\r\ncontent-length: %d\r\n"
            b"connection: %s\r\n\r\n" % (status, kind, length, connection)
        )

    def write(self, data: bytes | memoryview) -> None:
        if self.transport is not None:
            self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    async def send_zeros(self, size: int, keep_alive: bool) -> None:
        self.write_head(200, size, b"application/octet-stream", keep_alive)
        view = memoryview(CHUNK)
        left = size
        while left > 0 and self.transport is not None:
            await self.can_write.wait()
            step = min(left, len(CHUNK))
            self.write(view[:step])
            left -= step
        if not keep_alive:
            self.close()
        elif self.transport is not None:
            self.transport.resume_reading()


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Origin, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:
        runner = asyncio.run
    else:
        runner = uvloop.run
    with contextlib.suppress(KeyboardInterrupt):
        runner(serve(args.port))


if __name__ == "__main__":
    main()

"""A body that arrives over time, with back-pressure to the socket it comes from."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable

from api_gateway.errors import PayloadTooLarge
from api_gateway.types import BodySource

HIGH_WATER = 256 * 1024
LOW_WATER = 64 * 1024


class BodyStream:
    """Chunks fed by a protocol, read by one consumer.

    The producer's socket is paused while more than ``HIGH_WATER`` bytes wait, and resumed once
    the consumer has drained below ``LOW_WATER``, so a slow reader never makes us buffer a
    large body.
    """

    __slots__ = (
        "_chunks",
        "_eof",
        "_error",
        "_on_abort",
        "_on_first_read",
        "_pause",
        "_paused",
        "_resume",
        "_size",
        "_waiter",
        "aborted",
        "received",
    )

    def __init__(
        self,
        pause: Callable[[], None],
        resume: Callable[[], None],
        on_abort: Callable[[], None] | None = None,
    ) -> None:
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._eof = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._pause, self._resume, self._on_abort = pause, resume, on_abort
        self._paused = False
        self._on_first_read: Callable[[], None] | None = None
        self.aborted = False
        self.received = 0

    @property
    def complete(self) -> bool:
        return self._eof

    def on_first_read(self, callback: Callable[[], None]) -> None:
        self._on_first_read = callback

    def feed(self, chunk: bytes) -> None:
        if self.aborted:
            return
        self._chunks.append(chunk)
        self._size += len(chunk)
        self.received += len(chunk)
        if self._size > HIGH_WATER and not self._paused:
            self._paused = True
            self._pause()
        self._wake()

    def feed_eof(self) -> None:
        self._eof = True
        self._wake()

    def fail(self, error: BaseException) -> None:
        if not self._eof:
            self._error = error
            self._wake()

    def abort(self) -> None:
        """The consumer gives up: drop what is buffered and tell the producer."""
        if self.aborted:
            return
        self.aborted = True
        self._chunks.clear()
        if self._paused:
            self._paused = False
            self._resume()
        if self._on_abort is not None and not self._eof:
            self._on_abort()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self._on_first_read is not None:
            self._on_first_read()
            self._on_first_read = None
        chunks = self._chunks
        while True:
            if chunks:
                chunk = chunks.popleft()
                self._size -= len(chunk)
                if self._paused and self._size < LOW_WATER:
                    self._paused = False
                    self._resume()
                yield chunk
            elif self._error is not None:
                raise self._error
            elif self._eof:
                return
            else:
                self._waiter = asyncio.get_running_loop().create_future()
                await self._waiter
                self._waiter = None


class CountedBody:
    """A body of unknown length cut off with 413 once it passes ``max_bytes``."""

    __slots__ = ("inner", "max_bytes")

    def __init__(self, inner: BodySource, max_bytes: int) -> None:
        self.inner, self.max_bytes = inner, max_bytes

    async def __aiter__(self) -> AsyncIterator[bytes]:
        seen = 0
        async for chunk in self.inner:
            seen += len(chunk)
            if seen > self.max_bytes:
                self.inner.abort()
                raise PayloadTooLarge(f"the body exceeds {self.max_bytes} bytes")
            yield chunk

    def abort(self) -> None:
        self.inner.abort()

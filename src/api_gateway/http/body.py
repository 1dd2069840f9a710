"""A body that arrives over time, with back-pressure to the socket it comes from."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable

from api_gateway.errors import PayloadTooLarge
from api_gateway.types import Body, BodySource

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
        "_on_done",
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
        self._on_done: Callable[[], None] | None = None
        self.aborted = False
        self.received = 0

    @property
    def complete(self) -> bool:
        return self._eof

    def on_first_read(self, callback: Callable[[], None]) -> None:
        self._on_first_read = callback

    def when_done(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once, when the body has arrived, failed or been given up."""
        self._on_done = callback

    def _done(self) -> None:
        callback, self._on_done = self._on_done, None
        if callback is not None:
            callback()

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
        self._done()

    def fail(self, error: BaseException) -> None:
        if not self._eof:
            self._error = error
            self._wake()
        self._done()

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
        self._done()

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


class BodyPace:
    """Whether a body arrives fast enough: at least ``min_rate`` bytes a second over every
    window of ``window_s`` (the first window is the grace period), as Apache's mod_reqtimeout
    MinRate does. A drip of a byte now and then would otherwise hold a connection, a task and
    an upstream connection for as long as it liked, each pause shorter than the body timeout.

    Time in which the gateway itself did not read (back-pressure from a slow upstream, a
    ``100 Continue`` not yet sent) is not the client's: a window ends there and a new one
    begins when reading resumes. Pure: the caller gives the time and the bytes received.
    """

    __slots__ = ("held", "min_bytes", "window_end", "window_received", "window_s")

    def __init__(self, min_rate: int, window_s: float, now: float, received: int) -> None:
        self.min_bytes = min_rate * window_s
        self.window_s = window_s
        self.held = False
        self.window_end = now + window_s
        self.window_received = received

    @property
    def deadline(self) -> float:
        """When the current window must be judged (infinite while reading is held)."""
        return float("inf") if self.held else self.window_end

    def hold(self) -> None:
        self.held = True

    def release(self, now: float, received: int) -> None:
        self.held = False
        self._next_window(now, received)

    def too_slow(self, now: float, received: int) -> bool:
        """Judge the window once it is over: too few bytes, or else the next window begins."""
        if self.held or now < self.window_end:
            return False
        if received - self.window_received < self.min_bytes:
            return True
        self._next_window(now, received)
        return False

    def _next_window(self, now: float, received: int) -> None:
        self.window_end = now + self.window_s
        self.window_received = received


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


async def read_whole(body: Body, limit: int) -> bytes | None:
    """A streamed body read whole when it is at most ``limit`` bytes; else None, and the rest
    of it given up (``abort``: nothing beyond the limit is ever held). A body already whole is
    returned as it is: its size was bounded where it was read."""
    if isinstance(body, bytes):
        return body
    chunks: list[bytes] = []
    size = 0
    async for chunk in body:
        size += len(chunk)
        if size > limit:
            body.abort()
            return None
        chunks.append(chunk)
    return b"".join(chunks)

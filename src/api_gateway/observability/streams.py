"""The access-log line of a response that streams, or of a WebSocket: written when it ends,
with how it ended, never at its head as a plain 200 (a stream the gateway cut, or one whose
client left, must be told apart from one that was delivered whole).

Outcomes: ``complete``; ``stream_idle_timeout`` (the upstream went quiet longer than the
stream's bound); ``upstream_error`` (it failed mid-stream); ``client_gone``; for a WebSocket,
``closed``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable

from api_gateway.errors import GatewayError, StreamIdleTimeout
from api_gateway.types import BodySource

# How the stream ended, and the bytes it delivered.
Done = Callable[[str, int], None]


class LoggedBody:
    """A streamed body that reports how it ended and how many bytes it gave, once."""

    __slots__ = ("done", "inner", "pieces", "reported", "sent")

    def __init__(self, inner: BodySource, done: Done) -> None:
        self.inner, self.done = inner, done
        self.pieces: AsyncIterator[bytes] | None = None
        self.reported = False
        self.sent = 0

    def __aiter__(self) -> LoggedBody:
        self.pieces = self.inner.__aiter__()
        return self

    async def __anext__(self) -> bytes:
        pieces = self.pieces
        assert pieces is not None
        try:
            piece = await pieces.__anext__()
        except StopAsyncIteration:
            self.report("complete")
            raise
        except StreamIdleTimeout:
            self.report("stream_idle_timeout")
            raise
        except GatewayError:
            self.report("upstream_error")
            raise
        self.sent += len(piece)
        return piece

    def abort(self) -> None:
        self.report("client_gone")
        self.inner.abort()

    def report(self, outcome: str) -> None:
        if not self.reported:
            self.reported = True
            self.done(outcome, self.sent)


def elapsed_ms(start: float) -> str:
    return "%.3f" % ((time.perf_counter() - start) * 1000)

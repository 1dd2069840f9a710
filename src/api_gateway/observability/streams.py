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

Done = Callable[[str], None]


class LoggedBody:
    """A streamed body that reports how it ended, once."""

    __slots__ = ("done", "inner", "pieces", "reported")

    def __init__(self, inner: BodySource, done: Done) -> None:
        self.inner, self.done = inner, done
        self.pieces: AsyncIterator[bytes] | None = None
        self.reported = False

    def __aiter__(self) -> LoggedBody:
        self.pieces = self.inner.__aiter__()
        return self

    async def __anext__(self) -> bytes:
        pieces = self.pieces
        assert pieces is not None
        try:
            return await pieces.__anext__()
        except StopAsyncIteration:
            self.report("complete")
            raise
        except StreamIdleTimeout:
            self.report("stream_idle_timeout")
            raise
        except GatewayError:
            self.report("upstream_error")
            raise

    def abort(self) -> None:
        self.report("client_gone")
        self.inner.abort()

    def report(self, outcome: str) -> None:
        if not self.reported:
            self.reported = True
            self.done(outcome)


def elapsed_ms(start: float) -> str:
    return "%.3f" % ((time.perf_counter() - start) * 1000)

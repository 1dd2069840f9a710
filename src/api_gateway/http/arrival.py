"""A request body still arriving after its request was dispatched: the timeouts that guard it.

Its bytes go to a ``BodyStream`` (back-pressure, ``body.py``); here is what the connection's
sweep judges: the idle timeout between reads, the minimum rate (``BodyPace``) and the
``100 Continue`` owed to a client that waits for it before sending (time the client spends
waiting for us is not the client's, so the rate window is held meanwhile).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from api_gateway.http.body import BodyPace, BodyStream

if TYPE_CHECKING:
    from api_gateway.http.server import ServerBounds


class Arrival:
    __slots__ = (
        "body_timeout_s",
        "continue_pending",
        "idle_deadline",
        "min_rate",
        "pace",
        "stream",
    )

    def __init__(
        self,
        stream: BodyStream,
        bounds: ServerBounds,
        now: float,
        reading_paused: bool,
        continue_pending: bool,
    ) -> None:
        self.stream = stream
        self.body_timeout_s = bounds.body_timeout_s
        self.min_rate = bounds.min_body_rate_bytes_per_s
        self.idle_deadline = now + bounds.body_timeout_s
        self.pace: BodyPace | None = None
        if bounds.min_body_rate_bytes_per_s:
            self.pace = BodyPace(
                bounds.min_body_rate_bytes_per_s, bounds.body_rate_window_s, now, stream.received
            )
            if reading_paused or continue_pending:
                # Not reading, or the client waiting for our 100 Continue: our doing.
                self.pace.hold()
        self.continue_pending = continue_pending

    def deadline(self, now: float) -> float:
        """Bytes arrived at ``now``: the body ends at the idle timeout or the rate window's end."""
        self.idle_deadline = idle = now + self.body_timeout_s
        pace = self.pace
        return idle if pace is None else min(idle, pace.deadline)

    def hold(self) -> None:
        """The gateway stopped reading: the rate window stops counting."""
        if self.pace is not None:
            self.pace.hold()

    def release(self, now: float) -> float | None:
        """Reading goes on: a new rate window; the new deadline, or None if nothing was held."""
        pace = self.pace
        if pace is None or not pace.held:
            return None
        pace.release(now, self.stream.received)
        return self.deadline(now)

    def on_pace(self, now: float) -> float | None:
        """At the sweep: the deadline to go on to, or None when the body is too slow."""
        pace = self.pace
        if pace is None or now >= self.idle_deadline or pace.too_slow(now, self.stream.received):
            return None
        return min(self.idle_deadline, pace.deadline)

    def too_slow(self, now: float) -> str:
        if now < self.idle_deadline:
            return f"the request body arrives slower than {self.min_rate} bytes a second"
        return "the client was too slow sending the request"

"""The upstream connection's phases, and the one table of the moves allowed between them.

Everything that decides where an ``UpstreamConnection`` may go next is here (h11's rule: the
state machine lives in one file). The connection makes every move through ``moved``, so a move
the table does not allow is a bug that raises at once, not a connection reused out of step.

    CONNECTING ─▶ IDLE ─▶ AWAITING_HEAD ─▶ READING_BODY ─▶ DONE ─▶ IDLE (back in the pool)
                            └─▶ SWITCHED: a 101 the gateway never asked for (refused)
    any phase ─▶ CLOSED: the transport is gone (a closed connection never leaves it)

An interim head (100 Continue, 103) is no move: AWAITING_HEAD waits on for the final one.

The phase follows the response, the half that decides whether the connection may be reused.
A request body that streams goes out beside it (an upstream may answer, even completely, before
reading it all), so whether it is still going out is the connection's ``sending``, not a phase:
h11 too keeps one state per side.

Phases are plain ``Final`` integers (COMPILED.md §1: an ``Enum`` member would be an attribute
lookup at every use) and the table is bits in one integer, so a check is a shift and a mask.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    # Compiled, an ``i64`` is a machine integer (its shifts are C's); interpreted, an ``int``.
    # Named for the type checker only: mypy_extensions is not needed at run time.
    from mypy_extensions import i64

CONNECTING: Final = 0
IDLE: Final = 1  # connected, no exchange: in the pool, or just connected
AWAITING_HEAD: Final = 2  # the request is out (or its body still going): no final head yet
READING_BODY: Final = 3  # the final head is in; the body is arriving
DONE: Final = 4  # the response is complete: the exchange ends (reused or closed)
SWITCHED: Final = 5  # a 101: the connection would speak another protocol now
CLOSED: Final = 6

NAMES: Final = ("CONNECTING", "IDLE", "AWAITING_HEAD", "READING_BODY", "DONE", "SWITCHED", "CLOSED")

# The moves allowed from each phase. Any phase may end in CLOSED: the peer can close whenever.
TRANSITIONS: Final[dict[int, tuple[int, ...]]] = {
    CONNECTING: (IDLE, CLOSED),
    IDLE: (AWAITING_HEAD, CLOSED),
    AWAITING_HEAD: (READING_BODY, SWITCHED, CLOSED),
    READING_BODY: (DONE, CLOSED),
    DONE: (IDLE, CLOSED),
    SWITCHED: (CLOSED,),
    CLOSED: (),
}


# TRANSITIONS packed into one integer, what ``moved`` reads: bit ``current * 8 + new`` is set
# when ``current`` may become ``new``. 7 phases of 8 bits fit an ``i64``: compiled, the check is
# a C shift and mask (measured: half the cost of the same check on ``int``).
ALLOWED: Final[i64] = sum(1 << (p * 8 + t) for p, targets in TRANSITIONS.items() for t in targets)


class ImpossibleTransition(Exception):
    """A move the table does not allow: a bug in the connection, never the peer's doing."""

    def __init__(self, current: int, new: int) -> None:
        super().__init__(f"an upstream connection cannot go from {NAMES[current]} to {NAMES[new]}")
        self.current, self.new = current, new


def moved(current: i64, new: i64) -> i64:
    """``new``, once the table allows the move from ``current``; else ``ImpossibleTransition``."""
    if not ALLOWED >> (current * 8 + new) & 1:
        raise ImpossibleTransition(current, new)
    return new

"""The server connection's phases and the transitions allowed between them: the one place that
says what state a client connection is in (h11 keeps its state machine in one file, as data).

    NEW      accepted, no request begun yet (a drain gives it a short grace to send one)
    IDLE     between requests: nothing in flight, nothing arriving (the keep-alive timeout; a
             drain ends it once quiet for a short grace, during which a request that was
             already on its way is still read and answered)
    READING  a request is arriving and nothing is in flight (the header or body timeout)
    BUSY     a request is in flight (its task runs); more may be queued or arriving behind it
    ENDING   the graceful end: nothing more is read, what was received is answered in order,
             the last answer says ``Connection: close``, then the connection closes
    CLOSED   closed by us or by the peer: nothing more is read or written
    TUNNEL   handed over after a ``101``: the transport is a byte tunnel's (``tunnel.py``)

Where the parser is within a message (a head arriving while a request is in flight, a body
still arriving) is the parser's own business (``HttpConnection.in_head``, ``body_stream``),
not a phase: pipelining overlaps it with every phase but the last two.

A phase is a ``Final`` int (``COMPILED.md`` §1) and the table a packed bit set, so a checked
transition costs a shift and a mask on the request path; ``TRANSITIONS`` is the readable form it
is built from.
"""

from __future__ import annotations

from typing import Final

NEW: Final = 0
IDLE: Final = 1
READING: Final = 2
BUSY: Final = 3
ENDING: Final = 4
CLOSED: Final = 5
TUNNEL: Final = 6

NAMES: Final = ("NEW", "IDLE", "READING", "BUSY", "ENDING", "CLOSED", "TUNNEL")

TRANSITIONS: Final[dict[int, tuple[int, ...]]] = {
    NEW: (READING, ENDING, CLOSED),
    IDLE: (READING, ENDING, CLOSED),
    READING: (BUSY, ENDING, CLOSED),
    # To READING when the next head began while this request was in flight.
    BUSY: (IDLE, READING, ENDING, CLOSED, TUNNEL),
    # To TUNNEL: an upgrade request ends the HTTP exchanges, its 101 hands the transport over.
    ENDING: (CLOSED, TUNNEL),
    CLOSED: (CLOSED,),  # the peer's close reported after our own
    TUNNEL: (),  # the connection's callbacks are the tunnel's from then on
}

# Bit ``old * WIDTH + new`` is set when ``old`` may become ``new`` (7 * 8 bits: a short int).
WIDTH: Final = 8


def _packed(transitions: dict[int, tuple[int, ...]]) -> int:
    bits = 0
    for old, targets in transitions.items():
        for new in targets:
            bits |= 1 << (old * WIDTH + new)
    return bits


ALLOWED: Final = _packed(TRANSITIONS)


class ImpossibleTransition(Exception):  # not RuntimeError: mypyc subclasses Exception only
    """A bug: the connection was asked to go where its table does not lead."""

    def __init__(self, old: int, new: int) -> None:
        super().__init__(f"a connection cannot go from {NAMES[old]} to {NAMES[new]}")
        self.old, self.new = old, new


def allowed(old: int, new: int) -> bool:
    return bool(ALLOWED >> (old * WIDTH + new) & 1)

"""Which sockets are readable, with poll(2): select(2) refuses descriptors numbered 1024 or more,
which a long test session reaches once a test has held a few thousand sockets (a connection a
shared upstream accepted then keeps its high number for the rest of the session)."""

from __future__ import annotations

import select
import socket

FileLike = socket.socket | int


def readable(watched: list[FileLike], timeout_s: float) -> list[FileLike]:
    """The members of ``watched`` with data (or an end of stream) to read within ``timeout_s``."""
    poller = select.poll()
    by_fd: dict[int, FileLike] = {}
    for item in watched:
        fd = item if isinstance(item, int) else item.fileno()
        by_fd[fd] = item
        poller.register(fd, select.POLLIN)
    events = poller.poll(timeout_s * 1000)
    return [by_fd[fd] for fd, _ in events]

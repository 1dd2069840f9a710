"""An idle pooled connection the upstream already closed is not used for a request that cannot
be sent again. The upstream's FIN is made to wait in the kernel, unread by the event loop (the
loop is blocked), which is the moment a busy gateway would pick the connection."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time

import uvloop

from api_gateway.http.client import PoolSettings, UpstreamPool
from api_gateway.types import Response

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
FIN_WAIT_S = 0.2


def answer_once_then_close(listener: socket.socket) -> None:
    """Each connection: read one request, answer it, close (no ``Connection: close``)."""
    while True:
        try:
            sock, _ = listener.accept()
        except OSError:
            return
        with sock:
            sock.recv(65536)
            sock.sendall(ANSWER)


async def two_posts(port: int) -> list[int]:
    pool = UpstreamPool(asyncio.get_running_loop(), PoolSettings())
    head = b"POST / HTTP/1.1\r\nHost: upstream\r\nContent-Length: 2\r\n\r\n"
    statuses = []
    try:
        for _ in range(2):
            response: Response = await pool.request(
                ("127.0.0.1", port), head, b"{}", False, 2, "POST"
            )
            statuses.append(response.status)
            # Blocking on purpose: the FIN arrives while the loop cannot read it.
            time.sleep(FIN_WAIT_S)  # noqa: ASYNC251
    finally:
        pool.close()
    return statuses


def test_a_post_is_not_sent_on_a_connection_the_upstream_closed() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    threading.Thread(target=answer_once_then_close, args=(listener,), daemon=True).start()
    try:
        statuses = uvloop.run(two_posts(listener.getsockname()[1]))
    finally:
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() of the serving thread
        listener.close()

    assert statuses == [200, 200]

"""Running one worker: the listening socket, the event loop, signals and graceful shutdown."""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
import os
import signal
import socket
import struct
from collections.abc import Callable
from types import FrameType
from typing import Final

import uvloop

from api_gateway import compiled
from api_gateway.config.admin import AdminListenError
from api_gateway.config.settings import GatewayConfig
from api_gateway.gateway import Gateway
from api_gateway.http.server import (
    DRAIN_IDLE_GRACE_S,
    Connections,
    HttpConnection,
    ServerBounds,
)

log = logging.getLogger("api_gateway")

STOP_SIGNALS: Final = (signal.SIGTERM, signal.SIGINT)
# Sent by the supervisor to a worker it has replaced (rolling restart): the successor accepts on
# the same listening socket, whose queue lives on in it, so this worker only stops accepting.
HANDOVER_SIGNAL: Final = signal.SIGUSR2
# How long a handshake under way when the drain began may take to complete (a round trip or
# two; generous for a load balancer next door).
HANDSHAKE_SETTLE_S: Final = 0.5
QUEUE_POLL_S: Final = 0.005
SO_ATTACH_FILTER: Final = 26  # Linux
# A classic BPF program run on the TCP header of each segment reaching the listener: drop one
# with SYN set (byte 13, bit 0x02), pass the rest. New handshakes never start (the client
# retransmits its SYN a second later and is then refused), those under way still complete.
DROP_SYN: Final = ((0x30, 0, 0, 13), (0x45, 0, 1, 0x02), (0x06, 0, 0, 0), (0x06, 0, 0, 0xFFFFFFFF))
TCP_INFO_BYTES: Final = 104
TCPI_UNACKED: Final = 24  # offset of tcpi_unacked: on a listener, the length of its accept queue


def listening_socket(host: str, port: int, reuse_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(4096)
    sock.setblocking(False)
    return sock


def bounds_from(config: GatewayConfig) -> ServerBounds:
    server = config.server
    return ServerBounds(
        max_header_bytes=server.max_header_bytes,
        max_header_count=server.max_header_count,
        max_uri_bytes=server.max_uri_bytes,
        header_timeout_s=server.header_timeout_ms / 1000,
        keep_alive_timeout_s=server.keep_alive_timeout_ms / 1000,
        body_timeout_s=server.body_timeout_ms / 1000,
        min_body_rate_bytes_per_s=server.min_body_rate_bytes_per_s,
        body_rate_window_s=server.body_rate_window_ms / 1000,
    )


class StopRequest:
    """The stop signal and its kind: a stop for good, or a hand-over to a successor."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.handover = False

    def stop(self) -> None:
        self.event.set()

    def hand_over(self) -> None:
        if not self.event.is_set():
            self.handover = True
        self.event.set()


async def serve(
    config: GatewayConfig,
    sock: socket.socket,
    on_ready: Callable[[], None] | None = None,
    admin_sock: socket.socket | None = None,
) -> None:
    loop = asyncio.get_running_loop()
    port = sock.getsockname()[1]
    gateway = Gateway(config, loop, port)
    gateway.start()
    connections = gateway.connections = Connections(loop)
    gateway.operations.connections = connections
    bounds = bounds_from(config)
    server = await loop.create_server(
        lambda: HttpConnection(gateway, bounds, connections, port), sock=sock, backlog=4096
    )
    admin = None if admin_sock is None else await serve_admin(gateway, admin_sock, bounds)
    # Everything built so far lives as long as the process: keep it out of every GC pass.
    gc.collect()
    gc.freeze()
    request = StopRequest()
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, request.stop)
    loop.add_signal_handler(HANDOVER_SIGNAL, request.hand_over)
    log.info(
        "listening", extra={"host": config.server.host, "port": port, "compiled": compiled.ACTIVE}
    )
    if on_ready is not None:
        on_ready()  # the supervisor may now stop the worker this one replaces
    if _STOPPED_WHILE_STARTING:
        request.stop()
    await request.event.wait()
    grace_s = config.server.shutdown_grace_ms / 1000
    deadline = loop.time() + grace_s
    log.info("shutting down", extra={"grace_s": grace_s, "handover": request.handover})
    # In this order: /ready says 503 on any connection still open, idle connections close once
    # quiet for a moment (a request may be crossing on the wire), the listener's queue is
    # accepted and answered (Connection: close) before it closes (on a hand-over the successor
    # accepts from it), then busy connections finish within the grace period.
    gateway.admin.draining = True
    connections.begin_drain(DRAIN_IDLE_GRACE_S)
    if admin is not None:
        admin[0].close()  # the admin socket stays open in the supervisor and the other workers
        admin[1].begin_drain()
    if request.handover:
        server.close()
    else:
        await drain_listener(server, sock, deadline)
    await connections.shutdown(max(deadline - loop.time(), 0.0))
    await connections.websockets.shutdown(max(deadline - loop.time(), 0.0))
    if admin is not None:
        await admin[1].shutdown(max(deadline - loop.time(), 0.0))
    await gateway.close()


async def serve_admin(
    gateway: Gateway, sock: socket.socket, bounds: ServerBounds
) -> tuple[asyncio.AbstractServer, Connections]:
    """The admin listener on this worker's loop: the same data plane, its own App and
    connections (so keep-alive, limits and timeouts apply as on the traffic port)."""
    from api_gateway.admin_api import AdminApi
    from api_gateway.observability.snapshots import DIRECTORY_VARIABLE

    loop = asyncio.get_running_loop()
    admin_config = gateway.config.admin
    token = "" if admin_config is None else admin_config.token
    app = AdminApi(gateway, token, os.environ.get(DIRECTORY_VARIABLE))
    connections = Connections(loop)
    host, port = sock.getsockname()[:2]
    server = await loop.create_server(
        lambda: HttpConnection(app, bounds, connections, port), sock=sock, backlog=128
    )
    log.info("admin listening", extra={"host": host, "port": port, "token": bool(token)})
    return server, connections


def admin_socket(config: GatewayConfig) -> socket.socket | None:
    """The admin listener's socket, opened once (the supervisor's, shared by every worker);
    None when the configuration has no admin listener."""
    admin = config.admin
    if admin is None:
        return None
    try:
        return listening_socket(admin.host, admin.port, reuse_port=False)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        where = f"{admin.host}:{admin.port}"
        raise AdminListenError(
            f"cannot listen on {where} (the admin listener, ADMIN_PORT): {reason}"
        ) from exc


async def drain_listener(
    server: asyncio.AbstractServer, sock: socket.socket, deadline: float
) -> None:
    """Accept every connection the kernel queued, then close the listener, losing none.

    Closing a listener resets the connections in its accept queue, requests sent and all. So new
    handshakes are refused first (a socket filter drops SYNs), those under way get a moment to
    complete, and the listener closes once its queue is empty: from then on nothing can join it.
    """
    loop = asyncio.get_running_loop()
    filtered = refuse_new_handshakes(sock)
    settle_until = loop.time() + (HANDSHAKE_SETTLE_S if filtered else 0.0)
    while loop.time() < deadline:
        if queued_connections(sock) == 0 and loop.time() >= settle_until:
            break
        await asyncio.sleep(QUEUE_POLL_S)
    server.close()


def refuse_new_handshakes(sock: socket.socket) -> bool:
    """Drop every SYN reaching ``sock`` from now on; False where socket filters are missing."""
    program = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *i) for i in DROP_SYN))
    fprog = struct.pack("HL", len(DROP_SYN), ctypes.addressof(program))  # struct sock_fprog
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
    except OSError:
        return False
    return True


def queued_connections(sock: socket.socket) -> int:
    """How many connections wait in ``sock``'s accept queue (0 where the kernel cannot say)."""
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, TCP_INFO_BYTES)
    except (OSError, AttributeError):
        return 0
    return int(struct.unpack_from("I", info, TCPI_UNACKED)[0])


# Set by a stop signal that arrives before serve() took the signals over: the worker finishes
# starting and then drains, since the kernel may already have queued connections for it.
_STOPPED_WHILE_STARTING = False


def _stop_before_serving(signum: int, frame: FrameType | None) -> None:
    global _STOPPED_WHILE_STARTING
    if signum == HANDOVER_SIGNAL:
        os._exit(0)  # the successor accepts on the same socket: nothing here to drain
    _STOPPED_WHILE_STARTING = True


def run_worker(
    config: GatewayConfig,
    sock: socket.socket,
    on_ready: Callable[[], None] | None = None,
    admin_sock: socket.socket | None = None,
) -> None:
    # Until serve() installs its own handlers, a stop signal must still mean a clean exit.
    for signum in (*STOP_SIGNALS, HANDOVER_SIGNAL):
        signal.signal(signum, _stop_before_serving)
    uvloop.run(serve(config, sock, on_ready, admin_sock))

"""Running one worker: the listening socket, the event loop, signals and graceful shutdown."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import socket
from collections.abc import Callable
from types import FrameType

import uvloop

from api_gateway import compiled
from api_gateway.config.settings import GatewayConfig
from api_gateway.gateway import Gateway
from api_gateway.http.server import Connections, HttpConnection, ServerLimits

log = logging.getLogger("api_gateway")


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


def limits_from(config: GatewayConfig) -> ServerLimits:
    server = config.server
    return ServerLimits(
        max_header_bytes=server.max_header_bytes,
        max_header_count=server.max_header_count,
        max_uri_bytes=server.max_uri_bytes,
        header_timeout_s=server.header_timeout_ms / 1000,
        keep_alive_timeout_s=server.keep_alive_timeout_ms / 1000,
        body_timeout_s=server.body_timeout_ms / 1000,
    )


async def serve(
    config: GatewayConfig, sock: socket.socket, on_ready: Callable[[], None] | None = None
) -> None:
    loop = asyncio.get_running_loop()
    port = sock.getsockname()[1]
    gateway = Gateway(config, loop, port)
    gateway.start()
    connections = Connections(loop)
    limits = limits_from(config)
    server = await loop.create_server(
        lambda: HttpConnection(gateway, limits, connections, port), sock=sock, backlog=4096
    )
    # Everything built so far lives as long as the process: keep it out of every GC pass.
    gc.collect()
    gc.freeze()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    log.info(
        "listening", extra={"host": config.server.host, "port": port, "compiled": compiled.ACTIVE}
    )
    if on_ready is not None:
        on_ready()  # the supervisor may now stop the worker this one replaces
    await stop.wait()
    grace_s = config.server.shutdown_grace_ms / 1000
    log.info("shutting down", extra={"grace_s": grace_s})
    # In this order: /ready says 503 on any connection still open, then no new connection is
    # accepted, then idle ones close and busy ones finish within the grace period.
    gateway.admin.draining = True
    server.close()
    await connections.shutdown(grace_s)
    await gateway.close()


def _stop_before_serving(signum: int, frame: FrameType | None) -> None:
    # Nothing has been accepted yet, so there is nothing to drain: a clean stop.
    os._exit(0)


def run_worker(
    config: GatewayConfig, sock: socket.socket, on_ready: Callable[[], None] | None = None
) -> None:
    # Until serve() installs its own handlers, a stop signal must still mean a clean exit.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _stop_before_serving)
    uvloop.run(serve(config, sock, on_ready))

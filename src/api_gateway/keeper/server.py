"""The keeper: the state the workers of one gateway share when no Redis is configured.

With ``--workers N`` and no ``REDIS_URL``, per-process limits would let N times the documented
number through. The supervisor forks this process first; it listens on a Unix socket in a
private directory and speaks the part of the Redis protocol the gateway's stores use, so the
workers reach it through the very stores (and Lua scripts) they use with Redis: one code path,
exact across workers. Each command runs to the end before the next, so a script is atomic.

Cost per decision (bench/keeper.py): one round trip on a Unix socket, pipelined by the
workers' client; the keeper itself spends about 10 µs of CPU per rate-limit script.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable
from typing import Final, cast

from api_gateway.keeper.keyspace import Keyspace
from api_gateway.keeper.scripts import Scripts
from api_gateway.resp.protocol import ProtocolError, Reply, RespError, RespParser, bulk

log = logging.getLogger("api_gateway.keeper")

SCRIPT_COMMANDS: Final = frozenset({b"EVAL", b"EVALSHA", b"SCRIPT"})
DECISION: Final = b"*4\r\n:%d\r\n:%d\r\n:%d\r\n:%d\r\n"


def encode_reply(reply: Reply) -> bytes:
    if reply is None:
        return b"$-1\r\n"
    if isinstance(reply, bytes):
        return bulk(reply)
    if isinstance(reply, int):
        return b":%d\r\n" % reply
    if isinstance(reply, str):
        return b"+%s\r\n" % reply.encode()
    if isinstance(reply, RespError):
        return b"-%s\r\n" % reply.message.replace("\r\n", " ").encode()
    return b"*%d\r\n" % len(reply) + b"".join(encode_reply(item) for item in reply)


class Keeper:
    """The keyspace and the scripts over it: every command any connection sends."""

    def __init__(self, space: Keyspace | None = None) -> None:
        self.space = space or Keyspace(lambda: time.time() * 1000)
        self.scripts = Scripts(self.space)

    def execute(self, args: list[bytes]) -> Reply:
        self.space.sweep()
        if args and args[0].upper() in SCRIPT_COMMANDS:
            return self.scripts.command(args)
        return self.space.execute(args)


class KeeperConnection(asyncio.Protocol):
    """One worker's connection: commands in (RESP arrays), replies out, in order."""

    def __init__(self, keeper: Keeper) -> None:
        self.keeper = keeper
        self.parser = RespParser()  # a command is a RESP array, as a reply would be
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        try:
            commands = self.parser.feed(data)
        except (ProtocolError, RecursionError) as exc:
            self.transport.write(b"-ERR Protocol error: %s\r\n" % str(exc).encode())
            self.transport.close()
            return
        keeper = self.keeper
        keeper.space.sweep()
        scripts, gcra = keeper.scripts, keeper.scripts.gcra_sha
        out = []
        for command in commands:
            # The rate-limit script, nearly every command: decided and encoded in place.
            if type(command) is list and len(command) == 8 and command[1] == gcra:
                decision = scripts.rate_limit(cast("list[bytes]", command))
                if not isinstance(decision, RespError):
                    out.append(DECISION % decision)
                    continue
            if not isinstance(command, list) or not all(isinstance(a, bytes) for a in command):
                out.append(b"-ERR Protocol error: expected an array of bulk strings\r\n")
                continue
            out.append(encode_reply(keeper.execute(cast("list[bytes]", command))))
        if out:
            self.transport.write(b"".join(out))


async def serve(
    path: str, keeper: Keeper | None = None, ready: Callable[[], None] | None = None
) -> None:
    """Listen on ``path`` until SIGTERM (or cancellation); ``ready`` is called once listening."""
    keeper = keeper or Keeper()
    loop = asyncio.get_running_loop()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    server = await loop.create_unix_server(lambda: KeeperConnection(keeper), path)
    os.chmod(path, 0o600)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    log.info("keeper listening on %s", path)
    if ready is not None:
        ready()
    try:
        await stop.wait()
    finally:
        server.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def run_keeper(path: str, ready: Callable[[], None] | None = None) -> None:
    """The forked keeper's life: one event loop until the supervisor stops it."""
    import uvloop

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides when it stops
    uvloop.run(serve(path, ready=ready))

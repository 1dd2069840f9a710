"""The gateway in process, its upstream a pool that answers at once: what ``bench/chain.py``,
``bench/idempotency.py`` and ``bench/purchase_limits.py`` time, with no sockets at all."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

from api_gateway.config import loader
from api_gateway.gateway import Gateway
from api_gateway.pipeline import RouteBuilder
from api_gateway.routing import RouteTable
from api_gateway.types import Body, Response
from gwbench.servers import JWT_SECRET

PORT = 3000
# Limits raised so that nothing is refused: the benchmarks time the path a request takes.
HIGH = 100_000_000
# A purchase the shipped schema accepts (config/schemas/purchase-tickets.json).
PURCHASE_BODY = json.dumps(
    {
        "userId": "3f2b8c1e-9d4a-4c6b-8e2f-1a2b3c4d5e6f",
        "eventId": "a1b2c3d4-e5f6-4a7b-9c8d-0e1f2a3b4c5d",
        "tickets": [{"ticketTypeId": "a1b2c3d4-e5f6-4a7b-9c8d-0e1f2a3b4c5d", "quantity": 1}],
    },
    separators=(",", ":"),
).encode()


def environment(log_level: str = "info") -> dict[str, str]:
    return {
        "JWT_SECRET": JWT_SECRET,
        "RATE_LIMIT_MAX": str(HIGH),
        "RATE_LIMIT_USER_MAX": str(HIGH),
        "LOG_LEVEL": log_level,
        "TICKET_SERVICE_URL": "http://127.0.0.1:9",
    }


class AnsweringPool:
    """Answers every request at once with ``status`` and a small JSON body."""

    def __init__(self, status: int = 200, body: bytes = b'{"id":1}') -> None:
        self.response = (status, body)

    async def request(
        self,
        address: tuple[str, int],
        head: bytes,
        body: Body,
        chunked: bool,
        timeout_s: float,
        method: str,
        upgrade: bool = False,
        stream_idle_s: float = 0.0,
    ) -> Response:
        status, answer = self.response
        return Response(status, [(b"content-type", b"application/json")], answer)


def in_process(
    loop: asyncio.AbstractEventLoop,
    document: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    pool: AnsweringPool | None = None,
) -> Gateway:
    """A gateway of ``document`` (default: the shipped defaults) whose routes call ``pool``."""
    built_document = loader.default_document() if document is None else dict(document)
    loader.apply_environment(built_document, environment() if env is None else env)
    config = loader.build(built_document)
    built = Gateway(config, loop, PORT)
    old = built.builder
    builder = RouteBuilder(
        config, pool or AnsweringPool(), old.verifier, old.store, old.services, old.clock_ms, PORT
    )
    built.routes = RouteTable()
    for route in config.routes:
        built.routes.add(config.API_PREFIX + route.prefix, builder.build(route))
    return built

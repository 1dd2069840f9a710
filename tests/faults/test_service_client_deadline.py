"""The gateway's own service clients (auth, venue: token checks, venue lookups, domain
resolution) are bounded in time as a whole: a service that drips its body, each read arriving
just before the per-read timeout, cannot hold the requests waiting on it for longer than the
client's deadline."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Iterator

import pytest
import uvloop
from support.raw_upstream import Drip, RawUpstream
from support.resilience import service_config, upstream_service

from api_gateway.config.settings import Instance
from api_gateway.errors import GatewayError, UpstreamTimeout
from api_gateway.http.client import PoolSettings, UpstreamPool
from api_gateway.upstream.clients import VenueServiceClient

TIMEOUT_MS = 500
DRIP_INTERVAL_S = 0.05  # a tenth of the timeout: every read comes well within it
DRIP_BYTES = 200  # 10 s of dripping in all, twenty times the client's deadline
BOUND_S = 3.0
BIG = 70_000  # more than the pool buffers: the body streams


@pytest.fixture
def venue() -> Iterator[RawUpstream]:
    upstream = RawUpstream()
    yield upstream
    upstream.stop()


def test_a_dripping_body_ends_at_the_clients_deadline(venue: RawUpstream) -> None:
    path = "/api/v1/venues/v-1"
    venue.script(
        path,
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
        % (BIG + DRIP_BYTES)
        + b" " * BIG,
        Drip(b" ", DRIP_BYTES, DRIP_INTERVAL_S),
    )
    config = service_config(instances=1)
    service = upstream_service(
        dataclasses.replace(config, instances=(Instance("127.0.0.1", venue.port),))
    )

    async def scenario() -> tuple[GatewayError | None, float]:
        loop = asyncio.get_running_loop()
        pool = UpstreamPool(loop, PoolSettings())
        client = VenueServiceClient(service, pool, lambda: loop.time() * 1000, TIMEOUT_MS)
        started = time.monotonic()
        try:
            await client.get_venue("v-1")
        except GatewayError as error:
            return error, time.monotonic() - started
        finally:
            pool.close()
        return None, time.monotonic() - started

    error, took_s = uvloop.run(scenario())

    assert isinstance(error, UpstreamTimeout), error
    assert took_s < BOUND_S
    [exchange] = venue.requests_for(path)
    assert venue.wait_closed(exchange.connection), "the dripping connection was kept"

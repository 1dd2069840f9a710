"""Time the policy chain alone: the full default chain for a proxied request, in process.

    .venv/bin/python bench/chain.py [--requests 200000]
    API_GATEWAY_COMPILED=0 .venv/bin/python bench/chain.py      # the interpreted modules

Builds the gateway from the default configuration (JWT, per-IP and per-user limits in memory,
breaker, metrics, access log at info, request id, header rules) and sends ``GET
/api/v1/tickets/1`` with a valid token through ``Gateway.handle``, ending in a pool that answers
at once: no sockets, no parser, so what is left is routing and policies. A quick way to compare
a change to them (the machine's noise still applies: repeat and compare medians); the figures
that count come from ``bench/run`` and ``bench/instructions.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gwbench.inprocess import in_process
from gwbench.servers import mint_token

from api_gateway import compiled
from api_gateway.gateway import Gateway

PATH = b"/api/v1/tickets/1"


def gateway(loop: asyncio.AbstractEventLoop) -> Gateway:
    return in_process(loop)


async def run(requests: int, rounds: int) -> list[float]:
    from api_gateway.types import Request

    loop = asyncio.get_running_loop()
    target = gateway(loop)
    headers = [
        (b"host", b"127.0.0.1:3000"),
        (b"authorization", b"Bearer " + mint_token().encode()),
        (b"accept", b"*/*"),
    ]
    clock = time.perf_counter
    per_request = []
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(requests):
            request = Request(
                "GET", PATH, list(headers), b"", "127.0.0.1", server_port=3000, start=clock()
            )
            response = await target.handle(request)
            if response.status != 200:
                raise RuntimeError(f"unexpected status {response.status}")
        per_request.append((time.perf_counter() - started) / requests * 1e6)
    return per_request


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    logging.getLogger().setLevel(logging.WARNING)
    figures = asyncio.run(run(args.requests, args.rounds))
    mode = "compiled" if compiled.ACTIVE else "interpreted"
    print(  # stdout carries the access log
        f"policy chain ({mode}): median {statistics.median(figures):.2f} µs per request "
        f"(rounds: {', '.join(f'{f:.2f}' for f in figures)})",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What idempotency keys cost on the purchase endpoint, in process (µs per request).

    .venv/bin/python bench/idempotency.py [--requests 20000] [--rounds 5]

Builds the gateway from the default configuration as ``bench/chain.py`` does (JWT, limits in
memory, breaker, metrics, access log at info), with the purchase limit raised out of the way,
and sends ``POST /api/v1/tickets/purchase`` with a small JSON body through ``Gateway.handle``
to a pool that answers at once, three ways: the endpoint with ``idempotency: off``; with a new
``Idempotency-Key`` every request (claim, forward, keep the answer: the in-memory store); and
with one key (every request after the first a replay, the pool not asked). Rounds alternate
the three, so the machine's drift falls on each alike; compare the medians.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import logging
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gwbench.inprocess import PURCHASE_BODY, AnsweringPool, in_process
from gwbench.servers import mint_token

from api_gateway import compiled
from api_gateway.config import loader
from api_gateway.gateway import Gateway
from api_gateway.types import Request

PATH = b"/api/v1/tickets/purchase"
BODY = PURCHASE_BODY


def gateway(loop: asyncio.AbstractEventLoop, mode: str) -> Gateway:
    document = copy.deepcopy(loader.default_document())
    # Raised so that nothing is refused: every purchase here is for one event.
    for limit in ("ticket_purchase",):
        document["rate_limit"][limit] = {"max": 100_000_000, "window_ms": 60_000}
    for endpoint in document["routes"]["/tickets"]["endpoints"]:
        endpoint["idempotency"] = mode
        for limit in endpoint.get("limits", []):
            if "max" in limit:
                limit["max"] = 100_000_000
    return in_process(loop, document, pool=AnsweringPool(201, b'{"orderId":"o-1"}'))


async def one_round(target: Gateway, requests: int, key: str | None) -> float:
    token = b"Bearer " + mint_token().encode()
    headers = [
        (b"host", b"127.0.0.1:3000"),
        (b"authorization", token),
        (b"content-type", b"application/json"),
        (b"content-length", b"%d" % len(BODY)),
    ]
    clock = time.perf_counter
    started = clock()
    for n in range(requests):
        lines = list(headers)
        if key is not None:
            lines.append((b"idempotency-key", (key or f"k-{n}-{int(started * 1e9)}").encode()))
        request = Request(
            "POST", PATH, lines, BODY, "127.0.0.1", content_length=len(BODY), start=clock()
        )
        response = await target.handle(request)
        if response.status != 201:
            raise RuntimeError(f"unexpected status {response.status}: {response.body!r}")
    return (clock() - started) / requests * 1e6


async def run(requests: int, rounds: int) -> dict[str, list[float]]:
    loop = asyncio.get_running_loop()
    off, on = gateway(loop, "off"), gateway(loop, "optional")
    cases = {"off": (off, None), "new key": (on, ""), "replay": (on, "same-key")}
    figures: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, (target, key) in cases.items():
            figures[name].append(await one_round(target, requests, key))
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    logging.getLogger().setLevel(logging.WARNING)
    figures = asyncio.run(run(args.requests, args.rounds))
    mode = "compiled" if compiled.ACTIVE else "interpreted"
    base = statistics.median(figures["off"])
    for name, values in figures.items():
        median = statistics.median(values)
        print(  # stdout carries the access log
            f"POST purchase, {name} ({mode}): median {median:.2f} µs per request "
            f"({median - base:+.2f} vs off; rounds: {', '.join(f'{v:.2f}' for v in values)})",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

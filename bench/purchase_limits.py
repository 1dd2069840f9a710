"""What the purchase endpoint's limits cost: its chain with the three default limits against the
one it had before (``rate_limit: ticket_purchase`` alone), in process, alternated round by round.

    .venv/bin/python bench/purchase_limits.py [--requests 20000] [--rounds 7]
    valgrind --tool=callgrind --callgrind-out-file=out .venv/bin/python \
        bench/purchase_limits.py --only after --requests 2000 --rounds 1   # and with 0 requests

Timing on a shared machine moves by more than the difference; ``--only before|after`` runs one
chain alone, so that callgrind can count its instructions (a run of N requests less a run of 0,
divided by N), which is steadier.

Sends ``POST /api/v1/tickets/purchase`` with a valid token and a small JSON body through
``Gateway.handle`` (as bench/chain.py does: no sockets, a pool that answers at once, limits in
memory, raised so that nothing is refused, access log off). The difference of the medians is
the price of the per-address and per-(user, event) limits, the event read from the body.
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
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gwbench.inprocess import HIGH, PURCHASE_BODY, environment, in_process
from gwbench.servers import mint_token

from api_gateway import compiled
from api_gateway.config import loader
from api_gateway.gateway import Gateway
from api_gateway.types import Request

PATH = b"/api/v1/tickets/purchase"
BODY = PURCHASE_BODY
BEFORE = [{"limit": "ticket_purchase", "key": "user_or_ip"}]


def gateway(loop: asyncio.AbstractEventLoop, limits: list[dict[str, Any]] | None) -> Gateway:
    document = copy.deepcopy(loader.default_document())
    document["rate_limit"]["ticket_purchase"] = {"max": HIGH, "window_ms": 60000}
    (purchase,) = [
        e for e in document["routes"]["/tickets"]["endpoints"] if e["path"] == "/purchase"
    ]
    purchase["idempotency"] = "off"  # the limits alone: idempotency has bench/idempotency.py
    if limits is not None:
        purchase["limits"] = limits
    for limit in purchase["limits"]:
        if "max" in limit:
            limit["max"] = HIGH
    return in_process(loop, document, environment("warn"))


async def one_round(target: Gateway, headers: list[tuple[bytes, bytes]], requests: int) -> float:
    clock = time.perf_counter
    started = clock()
    for _ in range(requests):
        request = Request(
            "POST", PATH, list(headers), BODY, "127.0.0.1", "1.1", len(BODY), 3000, clock()
        )
        response = await target.handle(request)
        if response.status != 200:
            raise RuntimeError(f"unexpected status {response.status}")
    return (clock() - started) / max(requests, 1) * 1e6


async def run(requests: int, rounds: int, only: str) -> tuple[list[float], list[float]]:
    loop = asyncio.get_running_loop()
    before = gateway(loop, BEFORE) if only != "after" else None
    after = gateway(loop, None) if only != "before" else None
    headers = [
        (b"host", b"127.0.0.1:3000"),
        (b"authorization", b"Bearer " + mint_token().encode()),
        (b"content-type", b"application/json"),
    ]
    figures: tuple[list[float], list[float]] = ([], [])
    for _ in range(rounds):
        for target, figure in ((before, figures[0]), (after, figures[1])):
            if target is not None:
                figure.append(await one_round(target, headers, requests))
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--only", choices=("before", "after", "both"), default="both")
    args = parser.parse_args()
    logging.getLogger().setLevel(logging.WARNING)
    before, after = asyncio.run(run(args.requests, args.rounds, args.only))
    if args.only != "both" or not args.requests:
        return 0
    mode = "compiled" if compiled.ACTIVE else "interpreted"
    low, high = statistics.median(before), statistics.median(after)
    print(
        f"purchase chain ({mode}): before {low:.2f} µs, with the new limits {high:.2f} µs "
        f"per request (+{high - low:.2f} µs, {100 * (high - low) / low:+.0f} %)",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Time the default chain in process for one user, and for many users Zipf and uniform.

    .venv/bin/python bench/misses.py [--users 100000] [--requests 200000] [--warm-up 300000]
    .venv/bin/python bench/misses.py --walk 1000000     # RSS while every request is a new user
    API_GATEWAY_COMPILED=0 .venv/bin/python bench/misses.py    # the interpreted modules

Each request comes from one of ``--users`` users, each with its own token and its own client
address (``X-Forwarded-For`` from 127.0.0.1, a trusted proxy), drawn Zipf (s = 1) or
uniformly, through ``Gateway.handle`` as ``bench/chain.py`` sends one user's: no sockets, so
what is left is routing, policies and the caches they keep. A warm-up first brings the caches to
their steady state; then CPU time per request (process time, so other processes' load counts
less than in wall time), the ratio to the single user, and the caches' sizes. A quick way to see
what the miss path costs; the figures that count come from ``bench/run`` and
``bench/instructions.py --users``.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import itertools
import logging
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import jwt
from gwbench.inprocess import environment, in_process
from gwbench.servers import JWT_SECRET

from api_gateway import compiled
from api_gateway.gateway import Gateway
from api_gateway.types import Request

PATH = b"/api/v1/tickets/1"
SEED = 19


def draw(users: int, count: int, distribution: str, seed: int) -> list[int]:
    """Which user sends each of ``count`` requests (user 0 alone when ``users`` is 1)."""
    rng = random.Random(seed)
    if users <= 1:
        return [0] * count
    if distribution == "uniform":
        return [rng.randrange(users) for _ in range(count)]
    weights = list(itertools.accumulate(1 / (rank + 1) for rank in range(users)))
    return [bisect.bisect(weights, rng.random() * weights[-1]) for _ in range(count)]


class Users:
    """Each user's Authorization value and address, made when first drawn."""

    def __init__(self) -> None:
        self.credentials: dict[int, bytes] = {}
        self.exp = int(time.time()) + 3600

    def headers(self, user: int) -> list[tuple[bytes, bytes]]:
        credentials = self.credentials.get(user)
        if credentials is None:
            claims = {
                "sub": f"user-{user}",
                "tenant_id": "bench-tenant",
                "role": "user",
                "iss": "tickettoken-api",
                "exp": self.exp,
            }
            token = jwt.encode(claims, JWT_SECRET, algorithm="HS256")
            credentials = self.credentials[user] = b"Bearer " + token.encode()
        address = f"100.{64 + (user >> 16) % 64}.{(user >> 8) & 255}.{user & 255}".encode()
        return [
            (b"host", b"127.0.0.1:3000"),
            (b"authorization", credentials),
            (b"accept", b"*/*"),
            (b"x-forwarded-for", address),
        ]


async def send(target: Gateway, users: Users, sequence: list[int]) -> float:
    """CPU seconds per request over ``sequence``; tokens are made beforehand, not timed."""
    prepared = [users.headers(user) for user in sequence]
    clock = time.perf_counter
    started = time.process_time()
    for headers in prepared:
        request = Request("GET", PATH, headers, b"", "127.0.0.1", server_port=3000, start=clock())
        response = await target.handle(request)
        if response.status != 200:
            raise RuntimeError(f"unexpected status {response.status}")
    return (time.process_time() - started) / len(sequence)


async def case(users: int, distribution: str, args: argparse.Namespace) -> tuple[float, Gateway]:
    env = {**environment("warning"), "TRUSTED_PROXIES": "127.0.0.1/32"}
    target = in_process(asyncio.get_running_loop(), env=env)
    people = Users()
    warm = draw(users, args.warm_up if users > 1 else 2000, distribution, SEED)
    for start in range(0, len(warm), 50_000):  # in slices: the prepared headers stay small
        await send(target, people, warm[start : start + 50_000])
    timed = draw(users, args.requests, distribution, SEED + 1)
    return await send(target, people, timed), target


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def walk(total: int) -> None:
    """Every request from a user and an address never seen before: the process's RSS as the
    caches fill and then hold (each user's token is made, sent once and dropped)."""
    env = {**environment("warning"), "TRUSTED_PROXIES": "127.0.0.1/32"}
    target = in_process(asyncio.get_running_loop(), env=env)
    step = max(total // 10, 1)
    print(f"walking {total:,} distinct users: RSS of this process", file=sys.stderr)
    print(f"  {0:>9,} users: {rss_mib():6.1f} MiB (the gateway built)", file=sys.stderr)
    for start in range(0, total, step):
        end = min(start + step, total)
        for chunk in range(start, end, 2000):  # made and dropped in small batches
            await send(target, Users(), list(range(chunk, min(chunk + 2000, end))))
        print(
            f"  {start + step:>9,} users: {rss_mib():6.1f} MiB, verified tokens kept "
            f"{len(target.verifier.cache):,}",
            file=sys.stderr,
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--warm-up", type=int, default=300_000)
    parser.add_argument("--walk", type=int, default=0, help="distinct users, one request each")
    args = parser.parse_args()
    logging.getLogger().setLevel(logging.WARNING)
    if args.walk:
        asyncio.run(walk(args.walk))
        return 0
    mode = "compiled" if compiled.ACTIVE else "interpreted"
    single, _ = asyncio.run(case(1, "zipf", args))
    print(f"default chain ({mode}), CPU per request:", file=sys.stderr)
    print(f"  1 user: {single * 1e6:.2f} µs", file=sys.stderr)
    for distribution in ("zipf", "uniform"):
        per_request, target = asyncio.run(case(args.users, distribution, args))
        verifier = target.verifier
        print(
            f"  {args.users:,} users {distribution}: {per_request * 1e6:.2f} µs "
            f"({per_request / single:.2f}x), verified tokens kept {len(verifier.cache):,} "
            f"({verifier.cached_bytes / 2**20:.1f} MiB by their bound)",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

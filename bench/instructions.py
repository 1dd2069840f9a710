"""Instructions per proxied request, counted by valgrind: far steadier than time.

Not noise-free: with ten client connections, how requests batch into loop turns varies, and
runs of the same code differ by up to 3-5 k on a loaded machine; compare means of runs
alternated back to back.

    .venv/bin/python bench/instructions.py [--requests 2000] [--path /api/v1/tickets/1]
        [--log-level info] [--header 'Connection: keep-alive'] [--redis-url redis://127.0.0.1:6379]
        [--algorithm HS256|RS256|PS256|ES256|EdDSA] [--misses] [--signed]
        [--users 100000 [--distribution zipf|uniform]]

``--algorithm`` signs the tokens so (the gateway gets the public key as ``JWT_PUBLIC_KEY``);
``--misses`` sends a token never seen before with every request, so each one is verified
(the verified-token cache misses): the difference to a run without it is the cost of a miss.
``--signed`` sets ``INTERNAL_HMAC_SECRET``, so every call to the service is signed.
``--users N`` sends each request as one of N distinct users (its own token and subject), each
behind its own client address (``X-Forwarded-For`` from 127.0.0.1, made a trusted proxy), drawn
Zipf (s = 1, the default) or uniformly: the production mix's caches and limiter keys, where
most requests of the uniform draw are misses and the Zipf draw has a hot set.

Runs the gateway under ``valgrind --tool=callgrind`` twice, once with a warm-up only and once
with ``--requests`` more, and divides the difference by ``--requests``: start-up and warm-up
cancel out. Work the event loop's timers run is left out (``--toggle-collect`` on libuv's
``uv__run_timers``; ``--timers`` counts it): it runs per second, not per request (the worker's
metrics snapshot, the overload sampler, the sweeps), so under valgrind's slowdown it came to
14-20 k a request, more the longer a run took, and it made most of the count's spread between
runs of the same code. A request's own timers (its deadline) fire only when it runs late.
The same count for the same code and inputs, however busy the machine is, so it
is the figure to compare before and after a change to the request path (req/s is for the
benchmark proper, ``bench/run``).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import itertools
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import jwt  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa  # noqa: E402
from gwbench.servers import JWT_SECRET, free_ports  # noqa: E402

REPO = BENCH.parent
GATEWAY = REPO / ".venv" / "bin" / "api-gateway"
PYTHON = REPO / ".venv" / "bin" / "python"
CONCURRENCY = 10
WARM_UP = 200
READY_TIMEOUT_S = 120.0
PRIVATE_KEYS: dict[str, object] = {"HS256": None}
PRIVATE_KEYS["RS256"] = PRIVATE_KEYS["PS256"] = rsa.generate_private_key(65537, 2048)
PRIVATE_KEYS["ES256"] = ec.generate_private_key(ec.SECP256R1())
PRIVATE_KEYS["EdDSA"] = ed25519.Ed25519PrivateKey.generate()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--path", default="/api/v1/tickets/1")
    parser.add_argument("--log-level", default="info", help="LOG_LEVEL (info: access log on)")
    parser.add_argument("--redis-url", help="REDIS_URL: Redis-backed rate limits (default: memory)")
    parser.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="one more request header, e.g. 'Connection: keep-alive' as browsers send (repeatable)",
    )
    parser.add_argument("--algorithm", default="HS256", choices=sorted(PRIVATE_KEYS))
    parser.add_argument("--misses", action="store_true", help="a new token for every request")
    parser.add_argument(
        "--post",
        metavar="JSON",
        help="POST this JSON body instead of a GET (the purchase limit is raised out of the way)",
    )
    parser.add_argument(
        "--idempotency-key",
        choices=("new", "same"),
        help="with --post: a new Idempotency-Key per request, or the same one (replays)",
    )
    parser.add_argument(
        "--signed", action="store_true", help="INTERNAL_HMAC_SECRET set: calls to services signed"
    )
    parser.add_argument("--users", type=int, default=1, help="distinct users and addresses")
    parser.add_argument("--distribution", choices=("zipf", "uniform"), default="zipf")
    parser.add_argument(
        "--timers", action="store_true", help="count the loop's timers too (per-second work)"
    )
    parser.add_argument(
        "--keep", metavar="DIR", help="keep callgrind's files here (callgrind_annotate reads them)"
    )
    return parser.parse_args()


def users(args: argparse.Namespace, count: int, first: int) -> list[int]:
    """Which user sends each of ``count`` requests: the same seeded draw for the same run."""
    if args.users <= 1:
        return [0] * count
    draw = random.Random(first)
    if args.distribution == "uniform":
        return [draw.randrange(args.users) for _ in range(count)]
    weights = list(itertools.accumulate(1 / (rank + 1) for rank in range(args.users)))
    return [bisect.bisect(weights, draw.random() * weights[-1]) for _ in range(count)]


def address(user: int) -> str:
    """A distinct public-looking IPv4 address per user (10.x.y.z would do as well)."""
    return f"100.{64 + (user >> 16) % 64}.{(user >> 8) & 255}.{user & 255}"


def tokens(args: argparse.Namespace, count: int, first: int) -> list[str]:
    """``count`` tokens: one token repeated, or, with --misses, each one new (its own jti), or
    with --users, each user's own token."""
    key = JWT_SECRET if args.algorithm.startswith("HS") else PRIVATE_KEYS[args.algorithm]
    claims = {
        "sub": "bench-user",
        "tenant_id": "bench-tenant",
        "role": "user",
        "iss": "tickettoken-api",
        "exp": int(time.time()) + 3600,
    }
    if args.users > 1:
        minted: dict[int, str] = {}
        for user in set(users(args, count, first)):
            minted[user] = jwt.encode(
                {**claims, "sub": f"user-{user}"}, key, algorithm=args.algorithm
            )
        return [minted[user] for user in users(args, count, first)]
    if not args.misses:
        return [jwt.encode(claims, key, algorithm=args.algorithm)] * count
    return [
        jwt.encode({**claims, "jti": str(first + n)}, key, algorithm=args.algorithm)
        for n in range(count)
    ]


def public_pem(algorithm: str) -> str:
    key = PRIVATE_KEYS[algorithm].public_key()
    pem: bytes = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem.decode()


def keyed(args: argparse.Namespace, count: int, first: int) -> list[str]:
    """The extra header lines of each request: an Idempotency-Key when asked for, the user's
    X-Forwarded-For with --users."""
    if args.users > 1:
        return [f"X-Forwarded-For: {address(user)}\r\n" for user in users(args, count, first)]
    if args.idempotency_key is None:
        return [""] * count
    if args.idempotency_key == "same":
        return ["Idempotency-Key: bench-key\r\n"] * count
    return [f"Idempotency-Key: bench-{first + n}\r\n" for n in range(count)]


async def drive(
    port: int,
    path: str,
    tokens: list[str],
    extra: list[str],
    body: str | None = None,
    keys: list[str] | None = None,
) -> None:
    """One request per token, over CONCURRENCY keep-alive connections."""
    method = "GET" if body is None else "POST"
    framing = (
        "" if body is None else f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    )
    template = (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Authorization: Bearer {token}\r\nAccept: */*\r\n{key}"
        + framing
        + "".join(f"{header}\r\n" for header in extra)
        + "\r\n"
        + (body or "")
    )
    lines = keys if keys and keys[0] else [""] * len(tokens)
    keys = lines if keys and keys[0] else None
    requests = iter(
        [
            template.replace("{token}", token).replace("{key}", key).encode()
            for token, key in zip(tokens, lines, strict=True)
        ]
    )

    async def one_connection(n: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(n):
            writer.write(next(requests))
            head = await reader.readuntil(b"\r\n\r\n")
            # With one key for all, concurrent first requests of the warm-up meet it in flight.
            if not head.startswith(b"HTTP/1.1 200") and not (keys and b" 409 " in head[:13]):
                raise RuntimeError(f"unexpected answer: {head[:120]!r}")
            length = re.search(rb"content-length: *(\d+)", head, re.IGNORECASE)
            await reader.readexactly(int(length.group(1)) if length else 0)
        writer.close()

    count = len(tokens)
    await asyncio.gather(*(one_connection(count // CONCURRENCY) for _ in range(CONCURRENCY)))


def wait_ready(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("the gateway exited during start-up")
        try:
            asyncio.run(asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 1))
            return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError("the gateway did not start under valgrind in time")


def counted_run(args: argparse.Namespace, upstream: int, requests: int, work: Path) -> int:
    port = free_ports(1)[0]
    env = {
        **os.environ,
        "JWT_SECRET": JWT_SECRET,
        "TICKET_SERVICE_URL": f"http://127.0.0.1:{upstream}",
        "RATE_LIMIT_MAX": "100000000",
        "RATE_LIMIT_USER_MAX": "100000000",
        "LOG_LEVEL": args.log_level,
        "PYTHONHASHSEED": "0",
        "JWT_ALGORITHMS": args.algorithm,
    }
    if args.users > 1:
        env["TRUSTED_PROXIES"] = "127.0.0.1/32"
    if not args.algorithm.startswith("HS"):
        env["JWT_PUBLIC_KEY"] = public_pem(args.algorithm)
    for variable in ("INTERNAL_HMAC_SECRET", "INTERNAL_SERVICE_SECRET", "USE_NEW_HMAC"):
        env.pop(variable, None)  # a shell's own setting must not sway the figure
    if args.signed:
        env["INTERNAL_HMAC_SECRET"] = "instructions-benchmark-internal-secret-32+"
    env.pop("REDIS_URL", None)
    env["ADMIN_PORT"] = "0"  # an ephemeral admin port: never 9901 of another gateway
    if args.redis_url:
        env["REDIS_URL"] = args.redis_url
    out = work / f"callgrind.{requests}"
    # One file per process (%p): the supervisor's and its worker's (forked, so traced too).
    command = [
        *callgrind(out, args.timers),
        str(PYTHON), str(GATEWAY), "serve", "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip
    if args.post is not None:
        config = work / "post.yaml"
        config.write_text(json.dumps(unlimited_purchase()))  # JSON is YAML
        command += ["--config", str(config)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_ready(port, process)
        warm = tokens(args, WARM_UP, 0)
        asyncio.run(drive(port, args.path, warm, args.header, args.post, keyed(args, WARM_UP, 0)))
        if requests:
            more, keys = tokens(args, requests, WARM_UP), keyed(args, requests, WARM_UP)
            asyncio.run(drive(port, args.path, more, args.header, args.post, keys))
    finally:
        process.terminate()
        process.wait(60)
    # The worker's count: every request is its work (the supervisor only waits).
    counts = []
    for path in work.glob(f"{out.name}.*"):
        summary = re.search(r"^summary: (\d+)", path.read_text(), re.MULTILINE)
        if summary is not None:
            counts.append(int(summary.group(1)))
    if not counts:
        raise RuntimeError(f"no callgrind summary in {out}.*")
    return max(counts)


def callgrind(out: Path, timers: bool = False) -> list[str]:
    """valgrind's command line: one file per process; without ``timers``, what the loop's timers
    run is not counted (collection toggled off on entering ``uv__run_timers``, on on leaving)."""
    command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}.%p"]
    if timers:
        return command
    # --toggle-collect also turns collection off at the start: turned on again after it.
    return [*command, "--toggle-collect=uv__run_timers", "--collect-atstart=yes"]


def unlimited_purchase() -> dict[str, object]:
    """The default purchase endpoints with every limit raised out of the way (a list given in
    a configuration file replaces the default one, so the whole list is given)."""
    from api_gateway.config import loader

    endpoints = loader.default_document()["routes"]["/tickets"]["endpoints"]
    for endpoint in endpoints:
        for limit in endpoint.get("limits", []):
            if "max" in limit:
                limit["max"] = 100_000_000
    return {
        "rate_limit": {"ticket_purchase": {"max": 100_000_000, "window_ms": 60_000}},
        "routes": {"/tickets": {"endpoints": endpoints}},
    }


def main() -> int:
    args = parse_args()
    if shutil.which("valgrind") is None:
        print("valgrind is needed: apt-get install -y valgrind", file=sys.stderr)
        return 1
    upstream = free_ports(1)[0]
    origin = subprocess.Popen(
        [str(PYTHON), str(BENCH / "gwbench" / "origin.py"), "--port", str(upstream)]
    )
    try:
        time.sleep(0.5)
        with tempfile.TemporaryDirectory() as temporary:
            work = Path(args.keep or temporary)
            work.mkdir(parents=True, exist_ok=True)
            base = counted_run(args, upstream, 0, work)
            loaded = counted_run(args, upstream, args.requests, work)
    finally:
        origin.terminate()
        origin.wait(10)
    per_request = (loaded - base) / args.requests
    extra = "".join(f", {header}" for header in args.header)
    extra += f", {args.algorithm}" + (", a new token per request" if args.misses else "")
    if args.post is not None:
        extra += ", POST" + (
            f", {args.idempotency_key} Idempotency-Key" if args.idempotency_key else ""
        )
    extra += ", signed" if args.signed else ""
    extra += f", {args.users:,} users {args.distribution}" if args.users > 1 else ""
    print(
        f"{per_request:,.0f} instructions per request "
        f"({args.path}, LOG_LEVEL={args.log_level}{extra})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

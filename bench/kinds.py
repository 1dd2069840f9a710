"""Instructions per request of each kind of the production mix, counted by valgrind.

    .venv/bin/python bench/kinds.py [--requests 2000] [--kinds get,cached,search,post]
        [--jobs 2] [--src DIR] [--profile-dir DIR]

The kinds (one user, one token, as ``bench/instructions.py``):

- ``get``: protected ``GET /api/v1/tickets/1``, proxied;
- ``cached``: ``GET /api/v1/events/1`` with the token; the upstream answers
  ``Cache-Control: public, max-age=300``, so after the warm-up every request is a cache HIT;
- ``search``: anonymous ``GET /api/v1/search?q=concert+1&page=1&limit=20``: public, the route's
  cache is on but the upstream does not allow storing, so every request is a MISS;
- ``post``: ``POST /api/v1/tickets/validate-qr`` with a small schema-valid JSON body.

Each kind runs in a gateway of its own under ``valgrind --tool=callgrind`` (``--jobs`` at a
time), after a warm-up of every kind, against a base run with the warm-up only: the difference
over ``--requests`` is the kind's cost per request (start-up and warm-up cancel out), printed
twice: on the request path (the inclusive count under ``REQUEST_ROOTS``, the figure to compare:
timers that run per second of wall time are left out) and in all. ``--src`` runs another
checkout's sources and build (before/after). ``--profile-dir`` keeps the worker's callgrind
files (``base.callgrind``, ``<kind>.callgrind``) for ``callgrind_annotate``. Reuses
``bench/instructions.py``'s token minting and readiness check; needs a fresh compiled build.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import instructions  # noqa: E402
from gwbench.servers import JWT_SECRET, SERVICES, SMALL_BODY, free_ports  # noqa: E402

CONCURRENCY = instructions.CONCURRENCY
WARM_UP = instructions.WARM_UP
QR_BODY = '{"qrCode":"TT-QR-00000001-7c1e9b","eventId":"6f1c2a3e-4b5d-4e6f-8a7b-000000000001","entrance":"gate 1"}'  # noqa: E501
# kind -> (method, target, sends the token, body, the X-Cache it must answer with once warm)
KINDS: dict[str, tuple[str, str, bool, str | None, bytes | None]] = {
    "get": ("GET", "/api/v1/tickets/1", True, None, None),
    "cached": ("GET", "/api/v1/events/1", True, None, b"HIT"),
    "search": ("GET", "/api/v1/search?q=concert+1&page=1&limit=20", False, None, b"MISS"),
    "post": ("POST", "/api/v1/tickets/validate-qr", True, QR_BODY, None),
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument(
        "--kinds", default=",".join(KINDS), help="comma-separated, of " + ", ".join(KINDS)
    )
    parser.add_argument(
        "--src",
        type=Path,
        default=instructions.REPO / "src",
        help="the sources (and compiled build) to run: another checkout's, to compare",
    )
    parser.add_argument("--jobs", type=int, default=2, help="gateways under valgrind at once")
    parser.add_argument("--profile-dir", type=Path, help="keep each run's callgrind file here")
    parser.add_argument("--origin", type=int, help=argparse.SUPPRESS)  # run as the upstream
    return parser.parse_args()


def request_bytes(kind: str, port: int, token: str) -> bytes:
    method, target, authenticated, body, _ = KINDS[kind]
    lines = [f"{method} {target} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Accept: */*"]
    if authenticated:
        lines.append(f"Authorization: Bearer {token}")
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n" + (body or "")).encode()


async def drive(port: int, request: bytes, count: int, x_cache: bytes | None) -> None:
    """``count`` identical requests over CONCURRENCY keep-alive connections; each must answer
    200 (and with ``x_cache``, that X-Cache)."""

    async def one_connection(n: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(n):
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"unexpected answer: {head[:200]!r}")
            marker = b"\r\nx-cache: " + (x_cache or b"").lower() + b"\r\n"
            if x_cache is not None and marker not in head.lower():
                raise RuntimeError(f"expected X-Cache {x_cache!r}: {head[:400]!r}")
            length = re.search(rb"content-length: *(\d+)", head, re.IGNORECASE)
            await reader.readexactly(int(length.group(1)) if length else 0)
        writer.close()

    await asyncio.gather(*(one_connection(count // CONCURRENCY) for _ in range(CONCURRENCY)))


def gateway_env(upstream: int, src: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.endswith("_SERVICE_URL")}
    for variable in (
        "INTERNAL_HMAC_SECRET",
        "INTERNAL_SERVICE_SECRET",
        "USE_NEW_HMAC",
        "REDIS_URL",
    ):
        env.pop(variable, None)  # a shell's own setting must not sway the figure
    env.update(
        {
            "JWT_SECRET": JWT_SECRET,
            "RATE_LIMIT_MAX": "100000000",
            "RATE_LIMIT_USER_MAX": "100000000",
            "LOG_LEVEL": "info",
            "PYTHONHASHSEED": "0",
            "JWT_ALGORITHMS": "HS256",
            "ADMIN_PORT": "0",
            # The gateway measured (the venv's console script imports it from here).
            "PYTHONPATH": str(src),
        }
    )
    for service in SERVICES:
        env[f"{service.upper()}_SERVICE_URL"] = f"http://127.0.0.1:{upstream}"
    return env


# Where the work of a request starts: the client's bytes arriving, the exchange's task running
# the chain, the upstream's bytes arriving. Timers (the metrics snapshot, the overload sampler)
# run per second of wall time, not per request: under valgrind on a busy machine they add up to
# 80 k "per request" in one run and 15 k in the next, so the figure to compare is this sum.
REQUEST_ROOTS = (
    "CPyDef_server___HttpConnection___data_received",
    "CPyDunder_am_sendexchange___run_gen",
    "CPyDef_upstream_connection___UpstreamConnection___data_received",
)
ANNOTATED = re.compile(r"^\s*([\d,]+)\s+(?:\([^)]*\)\s+)?[^:\s]*:(\S+)")


def request_path(path: Path) -> int:
    """Instructions under REQUEST_ROOTS (inclusive; compiled build only, where they are named)."""
    annotated = subprocess.run(
        ["callgrind_annotate", "--inclusive=yes", "--threshold=100", str(path)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    total = 0
    for line in annotated.splitlines():
        found = ANNOTATED.match(line)
        if found and found.group(2) in REQUEST_ROOTS:
            total += int(found.group(1).replace(",", ""))
    return total


def summary(path: Path) -> int:
    found = re.search(r"^(?:summary|totals): (\d+)", path.read_text(), re.MULTILINE)
    return int(found.group(1)) if found else 0


def counted_run(
    args: argparse.Namespace, kinds: list[str], loaded: str | None, upstream: int, work: Path
) -> Path:
    """A gateway under callgrind: a warm-up of every kind, then ``--requests`` of ``loaded``
    (none: the base run). The worker's callgrind file (the supervisor only waits)."""
    port = free_ports(1)[0]
    token = instructions.tokens(argparse.Namespace(algorithm="HS256", misses=False, users=1), 1, 0)[
        0
    ]
    out = work / f"callgrind.{loaded or 'base'}"
    command = [
        "valgrind", "--tool=callgrind", f"--callgrind-out-file={out}.%p",
        str(instructions.PYTHON), str(instructions.GATEWAY),
        "serve", "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip
    env = gateway_env(upstream, args.src)
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        instructions.wait_ready(port, process)
        for kind in kinds:
            asyncio.run(drive(port, request_bytes(kind, port, token), WARM_UP, None))
        if loaded is not None:
            request = request_bytes(loaded, port, token)
            asyncio.run(drive(port, request, args.requests, KINDS[loaded][4]))
    finally:
        process.terminate()
        process.wait(60)
    files = list(work.glob(f"{out.name}.*"))
    if not files:
        raise RuntimeError(f"no callgrind file {out}.*")
    return max(files, key=summary)


def measure(
    args: argparse.Namespace, kinds: list[str], upstream: int, work: Path
) -> dict[str, tuple[float, float]]:
    """Instructions per request of each kind, in all and on the request path alone: its run
    less the base run, over ``--requests``.
    The runs are independent: ``--jobs`` of them at a time."""
    runs: list[str | None] = [None, *kinds]
    with ThreadPoolExecutor(args.jobs) as pool:
        done = pool.map(lambda loaded: counted_run(args, kinds, loaded, upstream, work), runs)
        files = dict(zip(runs, done, strict=True))
    if args.profile_dir is not None:
        args.profile_dir.mkdir(parents=True, exist_ok=True)
        for loaded, path in files.items():
            shutil.copy(path, args.profile_dir / f"{loaded or 'base'}.callgrind")
    base, roots = summary(files[None]), request_path(files[None])
    return {
        kind: (
            (summary(files[kind]) - base) / args.requests,
            (request_path(files[kind]) - roots) / args.requests,
        )
        for kind in kinds
    }


async def serve_origin(port: int) -> None:
    """The upstream: ``/api/v1/events/...`` shareable for 300 s, anything else not cacheable."""
    body = SMALL_BODY.encode()
    answers = {
        True: b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
        b"cache-control: public, max-age=300\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body),
        False: b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\n\r\n%s" % (len(body), body),
    }

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = re.search(rb"content-length: *(\d+)", head, re.IGNORECASE)
                if length:
                    await reader.readexactly(int(length.group(1)))
                writer.write(answers[b" /api/v1/events/" in head.split(b"\r\n", 1)[0]])
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(connection, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


def main() -> int:
    args = parse_args()
    if args.origin is not None:
        asyncio.run(serve_origin(args.origin))
        return 0
    if shutil.which("valgrind") is None:
        print("valgrind is needed: apt-get install -y valgrind", file=sys.stderr)
        return 1
    kinds = [kind for kind in args.kinds.split(",") if kind]
    unknown = set(kinds) - set(KINDS)
    if unknown:
        print(f"unknown kinds: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    upstream = free_ports(1)[0]
    origin = subprocess.Popen([sys.executable, __file__, "--origin", str(upstream)])
    try:
        time.sleep(0.5)
        with tempfile.TemporaryDirectory() as work:
            figures = measure(args, kinds, upstream, Path(work))
    finally:
        origin.terminate()
        origin.wait(10)
    print("kind     request path   in all (timers too)   instructions per request")
    for kind in kinds:
        method, target, authenticated, _, _ = KINDS[kind]
        who = "with the token" if authenticated else "anonymous"
        in_all, on_path = figures[kind]
        print(f"{kind:7} {on_path:>13,.0f} {in_all:>13,.0f}          {method} {target}, {who}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

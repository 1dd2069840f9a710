"""What tracing costs per request: CPU µs in process, tracing off and at several sample ratios.

    .venv/bin/python bench/tracing.py [--requests 20000] [--rounds 5] [--ratios 0,0.01,1]
    .venv/bin/python bench/tracing.py --instructions [--requests 2000] [--users 100000]   # valgrind
        [--keep DIR]
    .venv/bin/python bench/tracing.py --paired [--pairs 60] [--round 3000] [--ratios 0,0.01]

In process (the default): the gateway of the default configuration, as ``bench/chain.py``
builds it (a pool that answers at once, no sockets), with tracing's server span outermost and
its client span around the attempt, exporting to a real OTLP/HTTP receiver in another process
(``gwbench/origin.py``: it reads each POST and answers 200). Each request starts a new trace
(no ``traceparent``), so the ratio decides. The figure is the process's CPU time (every thread:
the exporter's batching, encoding and POSTs count) divided by the requests, including the flush
at the end; tracing off is the same gateway without an endpoint. Compare the ratios to "off" of
the same run: the machine's noise applies to both.

``--instructions``: ``bench/instructions.py``'s count under valgrind (a real gateway and
upstream over sockets), once per mode, with the gateway's environment pointing at the receiver
(the batching variables as the shell has them: the SDK's defaults, a batch every 5 s at most;
the first export's one-time costs fall in both runs, at the latest in the flush at shutdown, and
cancel out), and tracing off counted again at the end: how much two runs of the same code differ
here (several thousand on a busy machine).

``--paired``: for a busy machine, whose speed changes from one second to the next (runs of
seconds differ by ±25 % there, far more than tracing at a low ratio costs). Every mode's gateway
is built in one process, with a second "off" as a control, and they take turns: short rounds
(``--round`` requests, tens of milliseconds), in a rotating order, ``--pairs`` times. Each round
of a mode is divided by the "off" round of the same turn, so both saw nearly the same machine;
the report gives each mode's median of those ratios and their quartiles, and the control's
(about 1.00: the method's own error). CPU is the process's, every thread's; an export that runs
during another mode's round is counted there, so keep the ratios low (the default 0,0.01: one
request in a hundred recorded, its export a small part of its cost).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from gwbench.inprocess import AnsweringPool, environment, in_process  # noqa: E402
from gwbench.servers import free_ports, mint_token  # noqa: E402

from api_gateway import compiled  # noqa: E402
from api_gateway.gateway import Gateway  # noqa: E402
from api_gateway.pipeline import RouteBuilder  # noqa: E402
from api_gateway.routing import RouteTable  # noqa: E402
from api_gateway.types import Request  # noqa: E402

PATH = b"/api/v1/tickets/1"
PYTHON = BENCH.parent / ".venv" / "bin" / "python"
READY_S = 0.5
# In process nothing waits on I/O, so without a pause now and then the export thread would
# hardly get the GIL, the queue would fill and spans be dropped: cheaper, and not the real cost.
YIELD_EVERY = 20


def traced_gateway(loop: asyncio.AbstractEventLoop, env: dict[str, str]) -> Gateway:
    """The in-process gateway, its routes rebuilt with tracing's attempt hook (``in_process``
    leaves it out)."""
    built = in_process(loop, env=env)
    if built.tracing is None:
        return built
    old, config = built.builder, built.config
    builder = RouteBuilder(
        config,
        AnsweringPool(),
        old.verifier,
        old.store,
        old.services,
        old.clock_ms,
        3000,
        around_attempt=built.tracing.client_span,
    )
    built.routes = RouteTable()
    for route in config.routes:
        built.routes.add(config.API_PREFIX + route.prefix, builder.build(route))
    return built


def request_headers() -> list[tuple[bytes, bytes]]:
    return [
        (b"host", b"127.0.0.1:3000"),
        (b"authorization", b"Bearer " + mint_token().encode()),
        (b"accept", b"*/*"),
    ]


async def send(target: Gateway, headers: list[tuple[bytes, bytes]], requests: int) -> float:
    """``requests`` GETs through ``target``; the CPU µs they took each (every thread's)."""
    clock, cpu = time.perf_counter, time.process_time
    started = cpu()
    for n in range(requests):
        request = Request(
            "GET", PATH, list(headers), b"", "127.0.0.1", server_port=3000, start=clock()
        )
        response = await target.handle(request)
        if response.status != 200:
            raise RuntimeError(f"unexpected status {response.status}")
        if n % YIELD_EVERY == 0:
            os.sched_yield()  # the export thread may take the GIL, as at a server's I/O waits
    return (cpu() - started) / requests * 1e6


async def measure(env: dict[str, str], requests: int, rounds: int) -> tuple[float, list[float]]:
    """(CPU µs per request over every round and the closing flush, each round's CPU µs)."""
    loop = asyncio.get_running_loop()
    target = traced_gateway(loop, env)
    headers = request_headers()
    await send(target, headers, min(requests, 2000))  # warm-up: caches, the first batch
    started_all = time.process_time()
    figures = [await send(target, headers, requests) for _ in range(rounds)]
    if target.tracing is not None:
        await target.tracing.close()
    total = (time.process_time() - started_all) / (requests * rounds) * 1e6
    export = getattr(target.tracing, "export", None)  # the lean exporter's; the SDK counts none
    if export is not None and export.dropped:
        print(f"spans dropped (queue full): {export.dropped}", file=sys.stderr)
    return total, figures


def modes(ratios: list[str], collector: str) -> list[tuple[str, dict[str, str]]]:
    chosen: list[tuple[str, dict[str, str]]] = [("off", {})]
    for ratio in ratios:
        chosen.append(
            (
                f"ratio {ratio}",
                {"OTEL_EXPORTER_OTLP_ENDPOINT": collector, "OTEL_TRACES_SAMPLER_ARG": ratio},
            )
        )
    return chosen


def paired_summary(
    rounds: dict[str, list[float]], base: str
) -> dict[str, tuple[float, float, float]]:
    """Each mode's (median, first quartile, third quartile) of its rounds divided by ``base``'s
    round of the same turn (``rounds``: each mode's CPU µs per request, one figure per turn)."""
    summary = {}
    for name, figures in rounds.items():
        if name == base:
            continue
        ratios = [own / other for own, other in zip(figures, rounds[base], strict=True)]
        q1, median, q3 = statistics.quantiles(ratios, n=4, method="inclusive")
        summary[name] = (median, q1, q3)
    return summary


async def paired(
    chosen: list[tuple[str, dict[str, str]]], per_round: int, pairs: int
) -> dict[str, list[float]]:
    """Each mode's CPU µs per request, one round per turn, the modes taking turns."""
    loop = asyncio.get_running_loop()
    gateways = {name: traced_gateway(loop, env) for name, env in chosen}
    headers = request_headers()
    for target in gateways.values():  # warm-up: caches, the first batch
        await send(target, headers, min(per_round * 2, 5000))
    rounds: dict[str, list[float]] = {name: [] for name in gateways}
    names = list(gateways)
    for turn in range(pairs):
        shift = turn % len(names)
        for name in names[shift:] + names[:shift]:  # nobody always first
            rounds[name].append(await send(gateways[name], headers, per_round))
    for target in gateways.values():
        if target.tracing is not None:
            await target.tracing.close()
    return rounds


def paired_figures(args: argparse.Namespace, collector: str) -> None:
    logging.getLogger().setLevel(logging.ERROR)
    chosen = modes(args.ratios.split(","), collector)
    chosen.insert(1, ("off (control)", {}))
    chosen = [(name, {**environment(), **extra}) for name, extra in chosen]
    rounds = asyncio.run(paired(chosen, args.round, args.pairs))
    mode = "compiled" if compiled.ACTIVE else "interpreted"
    print(
        f"{args.pairs} turns of {args.round} requests per mode ({mode}); CPU µs per request, "
        "median of the rounds; and each round over the 'off' round of its turn:",
        file=sys.stderr,
    )
    summary = paired_summary(rounds, "off")
    for name, figures in rounds.items():
        shown = f"{name:>13}: {statistics.median(figures):6.2f} µs"
        if name in summary:
            median, q1, q3 = summary[name]
            shown += f"  x off {median:.3f} (quartiles {q1:.3f} to {q3:.3f})"
        print(shown, file=sys.stderr)


def in_process_figures(args: argparse.Namespace, collector: str) -> None:
    logging.getLogger().setLevel(logging.ERROR)  # start-up's warnings about the configuration
    mode = "compiled" if compiled.ACTIVE else "interpreted"
    results = {}
    for name, extra in modes(args.ratios.split(","), collector):
        total, rounds = asyncio.run(measure({**environment(), **extra}, args.requests, args.rounds))
        results[name] = total
        print(
            f"{name:>11} ({mode}): {total:6.2f} CPU µs per request with the flush, rounds "
            f"median {statistics.median(rounds):.2f} ({', '.join(f'{f:.1f}' for f in rounds)})",
            file=sys.stderr,
        )
    base = results["off"]
    print(
        "ratios to off: "
        + ", ".join(f"{name} {value / base:.2f}x" for name, value in results.items()),
        file=sys.stderr,
    )


def instruction_figures(args: argparse.Namespace, collector: str) -> None:
    import instructions

    options = argparse.Namespace(
        requests=args.requests,
        path=PATH.decode(),
        log_level="info",
        redis_url=None,
        header=[],
        algorithm="HS256",
        misses=False,
        post=None,
        idempotency_key=None,
        signed=False,
        users=args.users,
        distribution=args.distribution,
        timers=False,
    )
    upstream = free_ports(1)[0]
    origin = subprocess.Popen(
        [str(PYTHON), str(BENCH / "gwbench" / "origin.py"), "--port", str(upstream)]
    )
    saved = dict(os.environ)
    chosen = modes(args.ratios.split(","), collector)
    chosen.append(("off again", {}))  # the run-to-run noise, next to the differences
    try:
        time.sleep(READY_S)
        for name, extra in chosen:
            os.environ.clear()
            os.environ.update(saved)
            for variable in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_TRACES_SAMPLER_ARG"):
                os.environ.pop(variable, None)
            os.environ.update(extra)
            with tempfile.TemporaryDirectory() as temporary:
                work = Path(temporary)
                if args.keep:  # callgrind's files, a folder per mode
                    work = Path(args.keep) / name.replace(" ", "-")
                    work.mkdir(parents=True, exist_ok=True)
                base = instructions.counted_run(options, upstream, 0, work)
                loaded = instructions.counted_run(options, upstream, args.requests, work)
            print(f"{name:>11}: {(loaded - base) / args.requests:,.0f} instructions per request")
    finally:
        os.environ.clear()
        os.environ.update(saved)
        origin.terminate()
        origin.wait(10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--ratios", help="sample ratios, comma-separated (0,0.01,1; --paired: 0,0.01)"
    )
    parser.add_argument("--instructions", action="store_true", help="valgrind counts instead")
    parser.add_argument("--users", type=int, default=1, help="--instructions: distinct users")
    parser.add_argument(
        "--keep", metavar="DIR", help="--instructions: keep callgrind's files, a folder per mode"
    )
    parser.add_argument("--distribution", choices=("zipf", "uniform"), default="zipf")
    parser.add_argument("--paired", action="store_true", help="short rounds, modes in turn")
    parser.add_argument("--pairs", type=int, default=60, help="--paired: turns")
    parser.add_argument("--round", type=int, default=3000, help="--paired: requests per round")
    args = parser.parse_args()
    args.ratios = args.ratios or ("0,0.01" if args.paired else "0,0.01,1")
    port = free_ports(1)[0]
    receiver = subprocess.Popen(
        [str(PYTHON), str(BENCH / "gwbench" / "origin.py"), "--port", str(port)]
    )
    try:
        time.sleep(READY_S)
        collector = f"http://127.0.0.1:{port}"
        if args.instructions:
            instruction_figures(args, collector)
        elif args.paired:
            paired_figures(args, collector)
        else:
            in_process_figures(args, collector)
    finally:
        receiver.terminate()
        receiver.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())

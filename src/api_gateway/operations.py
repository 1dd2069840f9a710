"""What one worker tells and takes from the operator: its state document, merged with the other
workers' for the admin API's /health, and the operator's commands (``journal``) applied here.

Every ``WRITE_EVERY_S`` (and at once after applying a command) each worker writes
``<dir>/<pid>.state`` next to its metrics snapshot (JSON, temporary name then rename): pid,
uptime, memory, requests in flight, breakers, instances, rate-limit store, each route's last
minute (``observability.route_window``) and how far it has applied the journal. The worker
answering /health merges its live state with the others' files; a dead worker's file is
dropped. Without the directory (in-process tests) the worker's own state is the whole gateway's.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import orjson

from api_gateway.errors import LastInstance, RouteNotFound
from api_gateway.journal import POLL_S, Command, Journal, command
from api_gateway.observability.exposition import BUCKETS_MS
from api_gateway.observability.logging import LEVELS
from api_gateway.observability.metrics import Metrics
from api_gateway.observability.route_window import Delta, RouteWindow, Totals
from api_gateway.observability.snapshots import alive
from api_gateway.upstream.instances import UpstreamInstance
from api_gateway.upstream.service import UpstreamService

if TYPE_CHECKING:
    from api_gateway.http.connections import Connections

log = logging.getLogger("api_gateway.admin")
SUFFIX: Final = ".state"
WRITE_EVERY_S: Final = 1.0
PAGE_SIZE: Final = os.sysconf("SC_PAGE_SIZE")
OPERATOR_EJECTED: Final = float("inf")  # ejected_until of an instance an operator ejected


def rss_bytes() -> int:
    with open("/proc/self/statm", "rb") as statm:
        return int(statm.read().split()[1]) * PAGE_SIZE


def route_totals(metrics: Metrics) -> dict[str, Totals]:
    """Each route's cumulative requests, 5xx answers and latency buckets, summed over methods
    and statuses, from the per-request counters (each entry once: ``folded``, whose key's third
    member is the status, or its class 1-5: either way its first digit tells a 5xx)."""
    totals: dict[str, list[Any]] = {}
    for key, entry_of_key in metrics.folded.items():
        route, status, histogram = key[0], key[2], entry_of_key.latency
        entry = totals.get(route)
        if entry is None:
            entry = totals[route] = [0, 0, [0] * len(histogram.counts)]
        count = sum(histogram.counts)
        entry[0] += count
        if str(status)[:1] == "5":
            entry[1] += count
        for index, value in enumerate(histogram.counts):
            entry[2][index] += value
    return {route: Totals(r, e, tuple(b)) for route, (r, e, b) in totals.items()}


class Operations:
    def __init__(
        self,
        services: Mapping[str, UpstreamService],
        metrics: Metrics,
        store_state: Callable[[], dict[str, object]],
        loop: asyncio.AbstractEventLoop,
        directory: str | None,
        slot: str,
    ) -> None:
        self.services, self.metrics, self.store_state = services, metrics, store_state
        self.loop, self.slot = loop, slot
        self.directory = Path(directory) if directory else None
        self.pid = os.getpid()
        self.started_unix = time.time()
        self.started = time.monotonic()
        self.window = RouteWindow(time.monotonic)
        self.journal = Journal(directory, self.apply)
        self.connections: Connections | None = None  # the traffic port's, once serving
        self.timers: list[asyncio.TimerHandle] = []
        self.log_level = logging.getLevelName(logging.getLogger().level).lower()

    # commands

    def validate(self, entry: Command) -> None:
        """Refuse a command this gateway cannot apply (the answering worker checks)."""
        if entry.name == "log-level":
            return
        service = self.services.get(entry.get("service"))
        if service is None:
            raise RouteNotFound(f"no service {entry.get('service')!r}")
        if entry.name in ("eject", "restore"):
            endpoint = find(service, entry.get("instance"))
            if endpoint is None:
                raise RouteNotFound(f"no instance {entry.get('instance')!r} in {service.name}")
            if entry.name == "eject" and endpoint.ejected_until != OPERATOR_EJECTED:
                others = [
                    e
                    for e in service.endpoints.endpoints
                    if e is not endpoint and e.ejected_until != OPERATOR_EJECTED
                ]
                if not others:
                    raise LastInstance(
                        f"{endpoint.authority} is the last instance of {service.name} not "
                        "ejected by an operator: restore another first"
                    )

    def apply(self, entry: Command) -> None:
        """Apply one command here (from the journal, or at once without a directory)."""
        if entry.name == "log-level":
            level = entry.get("level")
            if level in LEVELS:
                logging.getLogger().setLevel(LEVELS[level])
                self.log_level = level
            return
        service = self.services.get(entry.get("service"))
        if service is None:
            return  # removed since (a reload): nothing to do
        if entry.name == "breaker-reset":
            service.reset_breaker(self.loop.time() * 1000)
            log.warning("circuit reset by an operator", extra={"service": service.label})
            return
        endpoint = find(service, entry.get("instance"))
        if endpoint is None:
            return
        if entry.name == "eject":
            endpoint.ejected_until = OPERATOR_EJECTED
            log.warning(
                "instance ejected by an operator",
                extra={"service": service.label, "instance": endpoint.authority},
            )
        else:
            endpoint.ejected_until = 0.0
            endpoint.consecutive_failures = 0
            log.warning(
                "instance restored by an operator",
                extra={"service": service.label, "instance": endpoint.authority},
            )

    async def run(self, entry: Command, timeout_s: float) -> dict[str, object]:
        """Apply ``entry`` in every worker: here at once, then wait (up to ``timeout_s``) for
        each live worker's state to say it got that far. Answers who applied it."""
        self.validate(entry)
        end = self.journal.append(entry)
        self.write()
        if self.directory is None:
            return {"applied": [self.pid], "pending": []}
        deadline = self.loop.time() + timeout_s
        while True:
            pending = [pid for pid, state in self.others() if _offset(state) < end]
            if not pending or self.loop.time() >= deadline:
                break
            await asyncio.sleep(0.05)
        applied = [self.pid, *(pid for pid, state in self.others() if _offset(state) >= end)]
        return {"applied": sorted(applied), "pending": sorted(pending)}

    # state

    def start(self) -> None:
        self.journal.poll()  # replay: operator overrides outlive the workers that got them
        self._sample()
        self._poll()
        if self.directory is not None:
            self._write_tick()

    def stop(self) -> None:
        for timer in self.timers:
            timer.cancel()
        self.timers.clear()
        if self.directory is not None:
            (self.directory / f"{self.pid}{SUFFIX}").unlink(missing_ok=True)

    def _later(self, delay: float, callback: Callable[[], None]) -> None:
        self.timers = [t for t in self.timers if not t.cancelled() and t.when() > self.loop.time()]
        self.timers.append(self.loop.call_later(delay, callback))

    def _sample(self) -> None:
        if self.window.due():
            self.window.sample(route_totals(self.metrics))
        self._later(self.window.every_s, self._sample)

    def _poll(self) -> None:
        if self.journal.poll():
            self.write()
        self._later(POLL_S, self._poll)

    def _write_tick(self) -> None:
        self.write()
        self._later(WRITE_EVERY_S, self._write_tick)

    def state(self) -> dict[str, object]:
        now_ms = self.loop.time() * 1000
        connections = self.connections
        in_flight = 0
        if connections is not None:
            in_flight = sum(1 for c in connections.open if c.task is not None)
        deltas = self.window.deltas(route_totals(self.metrics))
        return {
            "pid": self.pid,
            "slot": self.slot,
            "uptime": round(time.monotonic() - self.started, 3),
            "rss": rss_bytes(),
            "in_flight": in_flight,
            "offset": self.journal.offset,
            "log_level": self.log_level,
            "breakers": {s.label: s.snapshot(now_ms) for s in self.services.values()},
            "instances": {
                name: [instance_state(e, now_ms) for e in s.endpoints.endpoints]
                for name, s in self.services.items()
            },
            "store": self.store_state(),
            "routes": {route: delta.document() for route, delta in deltas.items()},
            "bounds_ms": list(BUCKETS_MS),
        }

    def write(self) -> None:
        if self.directory is None:
            return
        temporary = self.directory / f".{self.pid}.state.tmp"
        try:
            temporary.write_bytes(orjson.dumps(self.state()))
            os.replace(temporary, self.directory / f"{self.pid}{SUFFIX}")
        except OSError as exc:
            log.warning("cannot write the worker state: %s", exc)

    def others(self) -> list[tuple[int, dict[str, Any]]]:
        """The other live workers' latest state documents."""
        if self.directory is None:
            return []
        found: list[tuple[int, dict[str, Any]]] = []
        for path in self.directory.glob(f"*{SUFFIX}"):
            stem = path.name.removesuffix(SUFFIX)
            if not stem.isdigit() or int(stem) == self.pid or not alive(int(stem)):
                continue
            try:
                document = orjson.loads(path.read_bytes())
            except (OSError, orjson.JSONDecodeError):
                continue
            if isinstance(document, dict):
                found.append((int(stem), document))
        return found

    def every_state(self) -> list[dict[str, Any]]:
        return [self.state(), *(state for _, state in self.others())]


def find(service: UpstreamService, authority: str) -> UpstreamInstance | None:
    for endpoint in service.endpoints.endpoints:
        if endpoint.authority == authority:
            return endpoint
    return None


def instance_state(endpoint: UpstreamInstance, now_ms: float) -> dict[str, object]:
    return {
        **endpoint.snapshot(now_ms),
        "operator_ejected": endpoint.ejected_until == OPERATOR_EJECTED,
    }


def _offset(state: Mapping[str, Any]) -> int:
    offset = state.get("offset")
    return offset if isinstance(offset, int) else 0


def parse_deltas(routes: object) -> dict[str, Delta]:
    if not isinstance(routes, dict):
        return {}
    parsed = {route: Delta.parse(value) for route, value in routes.items()}
    return {route: delta for route, delta in parsed.items() if delta is not None}


__all__ = ["Operations", "command", "parse_deltas"]

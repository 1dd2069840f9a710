"""Metrics across worker processes: every scrape shows every worker.

With several workers (``--workers N``) the supervisor creates a private directory and names it
in ``API_GATEWAY_METRICS_DIR``; each worker writes its families there once a second and when it
stops (marshal, written to a temporary name then renamed, so a reader never sees half a file).
Whichever worker answers ``GET /metrics`` merges its own live families with every other
worker's latest file: counters and histograms are at most ``WRITE_EVERY_S`` behind. A worker
that died keeps its last file, so totals never go back when it is replaced; its gauges are
dropped. Without the variable (one worker) nothing is written and a scrape is the worker's own.
"""

from __future__ import annotations

import asyncio
import logging
import marshal
import os
from collections.abc import Callable
from pathlib import Path
from typing import Final

from api_gateway.observability.exposition import Family, WorkerPart, merge

DIRECTORY_VARIABLE: Final = "API_GATEWAY_METRICS_DIR"
WORKER_VARIABLE: Final = "API_GATEWAY_WORKER"
WRITE_EVERY_S: Final = 1.0
SUFFIX: Final = ".metrics"

log = logging.getLogger("api_gateway.metrics")


class WorkerMetrics:
    """This worker's families, alone or merged with the other workers' snapshots."""

    def __init__(
        self,
        collect: Callable[[], list[Family]],
        loop: asyncio.AbstractEventLoop,
        directory: str | None = None,
        worker: str = "0",
    ) -> None:
        self.collect, self.loop, self.worker = collect, loop, worker
        self.directory = Path(directory) if directory else None
        self.pid = os.getpid()
        self.timer: asyncio.TimerHandle | None = None

    @classmethod
    def from_environment(
        cls, collect: Callable[[], list[Family]], loop: asyncio.AbstractEventLoop
    ) -> WorkerMetrics:
        env = os.environ
        return cls(collect, loop, env.get(DIRECTORY_VARIABLE), env.get(WORKER_VARIABLE, "0"))

    def families(self) -> list[Family]:
        own: WorkerPart = (self.worker, True, self.collect())
        if self.directory is None:
            return merge([own], label_workers=False)
        return merge([own, *self.others()], label_workers=True)

    def start(self) -> None:
        if self.directory is not None:
            self.timer = self.loop.call_later(WRITE_EVERY_S, self._tick)

    def stop(self) -> None:
        """The last snapshot, so that a stopped worker's counts stay in the totals."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
            self.write()

    def _tick(self) -> None:
        self.write()
        self.timer = self.loop.call_later(WRITE_EVERY_S, self._tick)

    def write(self) -> None:
        if self.directory is None:
            return
        data = marshal.dumps((self.worker, self.collect()))
        temporary = self.directory / f".{self.pid}.tmp"
        try:
            temporary.write_bytes(data)
            os.replace(temporary, self.directory / f"{self.pid}{SUFFIX}")
        except OSError as exc:
            log.warning("cannot write the metrics snapshot: %s", exc)

    def others(self) -> list[WorkerPart]:
        assert self.directory is not None
        parts: list[WorkerPart] = []
        for path in self.directory.glob(f"*{SUFFIX}"):
            stem = path.name.removesuffix(SUFFIX)
            if not stem.isdigit() or int(stem) == self.pid:
                continue
            try:
                worker, families = marshal.loads(path.read_bytes())
            except (OSError, EOFError, ValueError, TypeError):
                continue  # removed meanwhile, or not ours: a scrape must not fail over it
            parts.append((worker, alive(int(stem)), families))
        return parts


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

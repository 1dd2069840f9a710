"""What a Prometheus client library exports about its process, under the standard names
(``process_cpu_seconds_total``, ``process_resident_memory_bytes``, ``process_open_fds``,
``process_start_time_seconds``), and the gateway's build: read at scrape time from ``/proc``
(Linux), with ``resource`` where ``/proc`` is missing. Each worker reports its own; the snapshot
merge labels them by ``worker``.
"""

from __future__ import annotations

import os
import platform
import resource
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Final

from api_gateway.observability.exposition import COUNTER, GAUGE, Family

PROC: Final = Path("/proc")
PAGE_BYTES: Final = resource.getpagesize()
# When this module was imported: the start time where /proc cannot tell it.
IMPORTED_AT: Final = time.time()


def gateway_version() -> str:
    try:
        return metadata.version("api-gateway")
    except metadata.PackageNotFoundError:
        from api_gateway import __version__

        return __version__


def python_version() -> str:
    return f"{platform.python_implementation()} {platform.python_version()}"


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def resident_bytes() -> int:
    try:
        return int((PROC / "self" / "statm").read_text().split()[1]) * PAGE_BYTES
    except (OSError, IndexError, ValueError):
        # The peak, not the current size (kilobytes on Linux): the best the platform offers.
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def open_fds() -> int:
    try:
        return len(os.listdir(PROC / "self" / "fd"))
    except OSError:
        return 0


def start_time() -> float:
    """The process's start (Unix seconds): its start in clock ticks since boot, plus boot."""
    try:
        stat = (PROC / "self" / "stat").read_text()
        # Field 22, counted after the command name's closing parenthesis (it may hold spaces).
        ticks = int(stat.rsplit(")", 1)[1].split()[19])
        for line in (PROC / "stat").read_text().splitlines():
            if line.startswith("btime "):
                return int(line.split()[1]) + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        pass
    return IMPORTED_AT


class ProcessInfo:
    """The families; what never changes (the build, the start time) is read once."""

    def __init__(self, compiled: bool) -> None:
        self.build = (
            ("version", gateway_version()),
            ("python", python_version()),
            ("compiled", "true" if compiled else "false"),
        )
        self.started = start_time()

    def families(self) -> list[Family]:
        return [
            ("gateway_build_info", GAUGE,
             "Always 1: the gateway's version, the Python running it, and whether its request"
             " path is compiled.", {self.build: 1}),
            ("process_cpu_seconds_total", COUNTER, "User and system CPU time spent, in seconds.",
             {(): round(cpu_seconds(), 6)}),
            ("process_resident_memory_bytes", GAUGE, "Resident memory size in bytes.",
             {(): resident_bytes()}),
            ("process_open_fds", GAUGE, "Open file descriptors.", {(): open_fds()}),
            ("process_start_time_seconds", GAUGE,
             "Start time of the process since the Unix epoch, in seconds.", {(): self.started}),
        ]  # fmt: skip


def describe_runtime(compiled: bool, reason: str | None) -> str:
    """What ``api-gateway --version`` prints."""
    if compiled:
        path = "compiled (mypyc)"
    else:
        path = f"interpreted ({reason})" if reason else "interpreted"
    return (
        f"api-gateway {gateway_version()}\n"
        f"request path: {path}\n"
        f"python: {python_version()} ({sys.executable})"
    )

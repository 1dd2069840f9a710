"""Child processes: start them pinned to cores, stop them by PID, measure their CPU time and RSS."""

from __future__ import annotations

import collections
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

_handed_out: collections.deque[int] = collections.deque(maxlen=1024)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0, read it, release),
    never one of the last handed out: the process it is for binds it later, and until then
    the kernel may give the same port to the next bind to port 0."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port not in _handed_out:
            _handed_out.append(port)
            return port


def pinned(argv: Sequence[str], cpus: str | None) -> list[str]:
    """``argv`` prefixed with ``taskset -c cpus`` when pinning is asked for and possible."""
    if cpus is None or shutil.which("taskset") is None:
        return list(argv)
    return ["taskset", "-c", cpus, *argv]


@dataclass
class Service:
    """A started server process (and, after ``snapshot_tree``, the children it forked)."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    port: int
    tree: list[psutil.Process] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def snapshot_tree(self) -> list[psutil.Process]:
        """Remember the process and all its descendants (nginx workers, gateway workers)."""
        try:
            root = psutil.Process(self.pid)
            self.tree = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            self.tree = []
        return self.tree

    def log_tail(self, limit: int = 2000) -> str:
        try:
            data = self.log_path.read_bytes()
        except OSError:
            return ""
        return data[-limit:].decode("utf-8", "replace")


class Processes:
    """Owns every process the benchmark starts; ``stop_all`` ends them by PID, newest first."""

    def __init__(self) -> None:
        self._services: list[Service] = []

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_path: Path,
        port: int,
        cpus: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Service:
        with open(log_path, "ab") as log:
            popen = subprocess.Popen(
                pinned(argv, cpus),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                start_new_session=True,  # Ctrl-C reaches us only; we stop the children ourselves
            )
        service = Service(name, popen, log_path, port)
        self._services.append(service)
        return service

    def stop(self, service: Service, timeout: float = 10.0) -> None:
        tree = service.snapshot_tree() or service.tree
        if service.alive():
            service.popen.send_signal(signal.SIGTERM)
            try:
                service.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                service.popen.kill()
                service.popen.wait(5)
        for proc in tree[1:]:  # children that outlived their parent
            kill_if_running(proc)
        if service in self._services:
            self._services.remove(service)

    def stop_all(self) -> None:
        for service in reversed(list(self._services)):
            try:
                self.stop(service)
            except Exception as exc:  # keep stopping the others
                print(f"warning: could not stop {service.name} (pid {service.pid}): {exc}")


def kill_if_running(proc: psutil.Process) -> None:
    try:
        if proc.is_running():  # psutil compares the start time, so a reused PID is left alone
            proc.kill()
            proc.wait(5)
    except (psutil.NoSuchProcess, psutil.TimeoutExpired):
        pass


def tree_cpu_seconds(tree: Sequence[psutil.Process]) -> float:
    """User + system CPU seconds consumed so far by the given processes."""
    user, system = tree_cpu_split(tree)
    return user + system


def tree_cpu_split(tree: Sequence[psutil.Process]) -> tuple[float, float]:
    """(user, system) CPU seconds consumed so far by the given processes: the system part is
    the kernel's work for them (sockets, epoll), which a proxy's own code does not set."""
    user = system = 0.0
    for proc in tree:
        try:
            times = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        user += times.user
        system += times.system
    return user, system


def tree_sum(tree: Sequence[psutil.Process], read: Callable[[psutil.Process], int]) -> int:
    """Sum of ``read`` over the given processes that still run."""
    total = 0
    for proc in tree:
        try:
            total += read(proc)
        except psutil.NoSuchProcess:
            continue
    return total


def tree_rss(tree: Sequence[psutil.Process]) -> int:
    """Sum of the resident set sizes of the given processes, in bytes."""
    return tree_sum(tree, lambda proc: int(proc.memory_info().rss))


def tree_pss(tree: Sequence[psutil.Process]) -> int:
    """Sum of the proportional set sizes of the given processes, in bytes: a page the processes
    share (a forked worker's, its supervisor's) counts once in all, as in the container's
    memory, where summed RSS counts it once per process."""
    return tree_sum(tree, lambda proc: int(proc.memory_full_info().pss))


class RssSampler:
    """Samples the memory of a process tree every ``interval`` seconds in a thread; keeps the
    peak. ``measure``: ``tree_rss`` (the default) or ``tree_pss``."""

    def __init__(
        self,
        tree: Sequence[psutil.Process],
        interval: float = 0.05,
        measure: Callable[[Sequence[psutil.Process]], int] = tree_rss,
    ) -> None:
        self._tree = list(tree)
        self._interval = interval
        self._measure = measure
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.peak = measure(self._tree) if self._tree else 0

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.peak = max(self.peak, self._measure(self._tree))

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        if self._tree:
            self.peak = max(self.peak, self._measure(self._tree))


class CoreMeter:
    """Busy fraction of each CPU core between ``__enter__`` and ``__exit__`` (from /proc/stat)."""

    def __init__(self) -> None:
        self.busy: list[float] = []
        self.busy_seconds = 0.0  # summed over cores
        self.elapsed_s = 0.0
        self._before: list[tuple[float, float]] = []

    @staticmethod
    def _read() -> list[tuple[float, float]]:
        rows = psutil.cpu_times(percpu=True)
        return [(sum(row), row.idle + getattr(row, "iowait", 0.0)) for row in rows]

    def __enter__(self) -> CoreMeter:
        self._before = self._read()
        return self

    def __exit__(self, *exc: object) -> None:
        after = self._read()
        self.busy = []
        for (total0, idle0), (total1, idle1) in zip(self._before, after, strict=True):
            elapsed = total1 - total0
            self.busy.append(0.0 if elapsed <= 0 else 1.0 - (idle1 - idle0) / elapsed)
            self.busy_seconds += elapsed - (idle1 - idle0)
            self.elapsed_s = max(self.elapsed_s, elapsed)


def raise_fd_limit(wanted: int) -> int:
    """Raise RLIMIT_NOFILE (children inherit it); returns the soft limit now in force."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < wanted and os.geteuid() == 0:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
            return wanted
        except (ValueError, OSError):
            pass
    target = wanted if hard == resource.RLIM_INFINITY else min(max(soft, wanted), hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Poll ``predicate()`` until it is true or ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


def trim_log(service: Service, limit: int = 64 * 1024 * 1024) -> None:
    """Access logs grow fast under load: keep the first 64 KiB, then start the file again."""
    path = service.log_path
    try:
        if path.stat().st_size <= limit:
            return
        head = path.with_suffix(".head.log")
        if not head.exists():
            with open(path, "rb") as handle:
                head.write_bytes(handle.read(64 * 1024))
        os.truncate(path, 0)  # the server appends (O_APPEND), so it writes from 0 again
    except OSError:
        pass

"""Several workers on one port (SO_REUSEPORT), restarted when they die, stopped together, and
replaced one at a time on SIGHUP (a rolling restart).

Each worker slot has its own listening socket, kept open by the supervisor: in a rolling
restart the new worker inherits the old one's socket, so connections the kernel already queued
on it are accepted by the new worker instead of being reset when the old one closes its copy.
A worker that dies gets a fresh socket (its old one is closed at once, so that meanwhile the
other workers take the new connections). The supervisor lets go of the sockets when it stops,
so that new connections are then refused.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import select
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Callable
from types import FrameType

from api_gateway.config.settings import GatewayConfig
from api_gateway.keeper import KEEPER_VARIABLE
from api_gateway.observability.snapshots import DIRECTORY_VARIABLE, WORKER_VARIABLE
from api_gateway.serve import HANDOVER_SIGNAL, admin_socket, listening_socket, run_worker

log = logging.getLogger("api_gateway.supervisor")

RESTART_BACKOFF_S = 1.0
STOP_EXTRA_S = 5.0
WATCH_POLL_S = 0.1
READY_TIMEOUT_S = 30.0


PR_SET_PDEATHSIG = 1
PR_SET_NAME = 15
# The keeper's process name (as ps and top show it), so that it is told apart from the workers.
KEEPER_NAME = b"gateway-keeper"


def name_process(name: bytes) -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_NAME, ctypes.c_char_p(name))


def die_with_parent() -> None:
    """A worker must not outlive its supervisor, even one killed with SIGKILL (Linux only)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        log.warning("workers cannot be tied to the supervisor's life on this platform")


class Supervisor:
    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.workers: dict[int, int] = {}  # pid -> slot
        self.sockets: dict[int, socket.socket] = {}  # slot -> its listening socket
        self.retiring: set[int] = set()  # replaced workers still draining
        self.stopping = False
        self.roll_requested = False
        # Non-zero once a worker failed to stop cleanly (an error, or killed after the grace).
        self.exit_code = 0
        # The keeper (keeper.server), when the workers share no Redis: its pid and socket path.
        self.keeper: int | None = None
        self.keeper_path = ""
        self.admin_sock: socket.socket | None = None

    def run(self) -> int:
        host, port = self.config.server.host, self.config.server.port
        if port == 0:
            probe = listening_socket(host, 0, reuse_port=True)
            port = probe.getsockname()[1]
            probe.close()
        self.port = port
        # The admin listener: one socket, opened here once, on which every worker accepts.
        self.admin_sock = admin_socket(self.config)
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        signal.signal(signal.SIGHUP, self._request_roll)
        # Where workers leave their metrics for each other (see observability.snapshots).
        metrics_dir = os.environ[DIRECTORY_VARIABLE] = tempfile.mkdtemp(prefix="api-gateway-")
        try:
            if self.config.redis_url is None:
                self.keeper_path = os.environ[KEEPER_VARIABLE] = os.path.join(
                    metrics_dir, "keeper.sock"
                )
                self._spawn_keeper()
            for slot in range(self.config.server.workers):
                self.sockets[slot] = listening_socket(host, port, reuse_port=True)
                self._spawn(slot)
            log.info("supervising %d workers on port %d", len(self.workers), port)
            return self._watch()
        finally:
            self._stop_keeper()
            shutil.rmtree(metrics_dir, ignore_errors=True)

    def _spawn_keeper(self) -> None:
        """Fork the keeper and wait until it listens: a worker's first decision must find it,
        or it would decide alone (in memory) until its store's probe finds the keeper."""
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read_fd)
            die_with_parent()
            name_process(KEEPER_NAME)
            for sock in self.sockets.values():
                sock.close()
            if self.admin_sock is not None:
                self.admin_sock.close()
            for signum in (signal.SIGTERM, signal.SIGHUP):
                signal.signal(signum, signal.SIG_DFL)
            code = 0
            try:
                from api_gateway.keeper.server import run_keeper  # Lua is loaded here alone

                run_keeper(self.keeper_path, _notifier(write_fd))
            except BaseException:
                log.exception("the keeper failed")
                code = 1
            os._exit(code)
        os.close(write_fd)
        try:
            if not self._wait_ready(read_fd):
                log.error("the keeper (pid %d) did not start; workers limit in memory", pid)
        finally:
            os.close(read_fd)
        self.keeper = pid

    def _stop_keeper(self) -> None:
        """Last, once every worker is gone: draining workers still decide through it."""
        pid, self.keeper = self.keeper, None
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)

    def _spawn(self, slot: int, ready_fd: int | None = None) -> int:
        """Fork a worker for ``slot``; it writes a byte to ``ready_fd`` once it listens."""
        pid = os.fork()
        if pid == 0:
            die_with_parent()
            for other, sock in self.sockets.items():
                if other != slot:
                    sock.close()  # else a draining worker would keep other slots' ports open
            os.environ[WORKER_VARIABLE] = str(slot)
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(signum, signal.SIG_DFL)
            code = 0
            try:
                run_worker(self.config, self.sockets[slot], _notifier(ready_fd), self.admin_sock)
            except BaseException:
                log.exception("worker %d failed", slot)
                code = 1
            os._exit(code)
        self.workers[pid] = slot
        return pid

    def _watch(self) -> int:
        last_restart: dict[int, float] = {}
        while self.workers or self.retiring:
            if self.roll_requested and not self.stopping:
                self.roll_requested = False
                self._roll()
            try:
                # Polled rather than blocking, so that a SIGHUP is acted on from here.
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                time.sleep(WATCH_POLL_S)
                continue
            self._reaped(pid, status, last_restart)
        return self.exit_code

    def _reaped(self, pid: int, status: int, last_restart: dict[int, float]) -> None:
        code = os.waitstatus_to_exitcode(status)
        if pid == self.keeper:
            self.keeper = None
            if not self.stopping:
                # Its state is lost: limits start afresh (the workers decided in memory while
                # it was away, and find the new one by their store's probe).
                log.error("the keeper (pid %d) exited with status %d; restarting", pid, status)
                time.sleep(RESTART_BACKOFF_S)
                self._spawn_keeper()
            return
        if pid in self.retiring:
            self.retiring.discard(pid)
            if code != 0:
                log.error("replaced worker (pid %d) stopped with status %d", pid, status)
            return
        slot = self.workers.pop(pid, None)
        if slot is None:
            return
        if self.stopping:
            if code != 0:
                log.error("worker %d (pid %d) stopped with status %d", slot, pid, status)
                self.exit_code = 1
            return
        log.error("worker %d (pid %d) exited with status %d; restarting", slot, pid, status)
        # Nobody accepts on a dead worker's socket: close it now, so that new connections go to
        # the other workers meanwhile instead of waiting (or, should the worker keep dying at
        # start, hanging) in its queue; the replacement gets a fresh one.
        self.sockets[slot].close()
        since = time.monotonic() - last_restart.get(slot, 0.0)
        if since < RESTART_BACKOFF_S:
            time.sleep(RESTART_BACKOFF_S - since)
        last_restart[slot] = time.monotonic()
        if not self.stopping:
            self.sockets[slot] = listening_socket(self.config.server.host, self.port, True)
            self._spawn(slot)

    def _request_roll(self, signum: int, frame: FrameType | None) -> None:
        self.roll_requested = True

    def _roll(self) -> None:
        """Replace every worker in turn: start the new one, wait until it listens, then tell
        the old one to hand over, which stops accepting and drains what it has (README:
        Shutdown)."""
        log.info("rolling restart of %d workers", len(self.workers))
        for old, slot in sorted(self.workers.items(), key=lambda item: item[1]):
            if self.stopping:
                return
            read_fd, write_fd = os.pipe()
            try:
                new = self._spawn(slot, write_fd)
                os.close(write_fd)
                ready = self._wait_ready(read_fd)
            finally:
                os.close(read_fd)
            if self.stopping:
                return  # the new worker was told to stop with the others
            if not ready:
                log.error("worker %d (pid %d) did not start; rolling restart abandoned", slot, new)
                self.workers.pop(new, None)
                self.retiring.add(new)  # reaped quietly, not restarted: the old one stays
                with contextlib.suppress(ProcessLookupError):
                    os.kill(new, signal.SIGKILL)
                return
            self.workers.pop(old, None)
            self.retiring.add(old)
            with contextlib.suppress(ProcessLookupError):
                # Not SIGTERM: that one drains the listening socket's queue and shuts the
                # socket to new handshakes, which the successor shares.
                os.kill(old, HANDOVER_SIGNAL)
        log.info("rolling restart done")

    def _wait_ready(self, read_fd: int) -> bool:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not self.stopping and time.monotonic() < deadline:
            readable, _, _ = select.select([read_fd], [], [], WATCH_POLL_S)
            if readable:
                return os.read(read_fd, 1) == b"1"  # b"": the worker died before listening
        return False

    def _stop(self, signum: int, frame: FrameType | None) -> None:
        if self.stopping:
            return
        self.stopping = True
        # Let go of the listening sockets: each worker is then the last holder of its own, so
        # it empties the queue before closing it, and from then on connections are refused.
        for sock in self.sockets.values():
            sock.close()
        if self.admin_sock is not None:
            self.admin_sock.close()
        for pid in [*self.workers, *self.retiring]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = self.config.server.shutdown_grace_ms / 1000 + STOP_EXTRA_S
        signal.signal(signal.SIGALRM, self._kill_remaining)
        signal.alarm(max(int(deadline), 1))

    def _kill_remaining(self, signum: int, frame: FrameType | None) -> None:
        keeper = [] if self.keeper is None else [self.keeper]
        for pid in [*self.workers, *self.retiring, *keeper]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _notifier(ready_fd: int | None) -> Callable[[], None] | None:
    if ready_fd is None:
        return None

    def notify() -> None:
        with contextlib.suppress(OSError):
            os.write(ready_fd, b"1")
            os.close(ready_fd)

    return notify

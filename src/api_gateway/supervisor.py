"""Several workers on one port (SO_REUSEPORT), restarted when they die, stopped together."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import signal
import tempfile
import time
from types import FrameType

from api_gateway.config.settings import GatewayConfig
from api_gateway.observability.snapshots import DIRECTORY_VARIABLE, WORKER_VARIABLE
from api_gateway.serve import listening_socket, run_worker

log = logging.getLogger("api_gateway.supervisor")

RESTART_BACKOFF_S = 1.0
STOP_EXTRA_S = 5.0


PR_SET_PDEATHSIG = 1


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
        self.stopping = False
        # Non-zero once a worker failed to stop cleanly (an error, or killed after the grace).
        self.exit_code = 0

    def run(self) -> int:
        host, port = self.config.server.host, self.config.server.port
        if port == 0:
            probe = listening_socket(host, 0, reuse_port=True)
            port = probe.getsockname()[1]
            probe.close()
        self.port = port
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        # Where workers leave their metrics for each other (see observability.snapshots).
        metrics_dir = os.environ[DIRECTORY_VARIABLE] = tempfile.mkdtemp(prefix="api-gateway-")
        try:
            for slot in range(self.config.server.workers):
                self._spawn(slot)
            log.info("supervising %d workers on port %d", len(self.workers), port)
            return self._watch()
        finally:
            shutil.rmtree(metrics_dir, ignore_errors=True)

    def _spawn(self, slot: int) -> None:
        sock = listening_socket(self.config.server.host, self.port, reuse_port=True)
        pid = os.fork()
        if pid == 0:
            die_with_parent()
            os.environ[WORKER_VARIABLE] = str(slot)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            code = 0
            try:
                run_worker(self.config, sock)
            except BaseException:
                log.exception("worker %d failed", slot)
                code = 1
            os._exit(code)
        sock.close()
        self.workers[pid] = slot

    def _watch(self) -> int:
        last_restart: dict[int, float] = {}
        while self.workers:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            except InterruptedError:
                continue
            slot = self.workers.pop(pid, None)
            if slot is None:
                continue
            if self.stopping:
                if os.waitstatus_to_exitcode(status) != 0:
                    log.error("worker %d (pid %d) stopped with status %d", slot, pid, status)
                    self.exit_code = 1
                continue
            log.error("worker %d (pid %d) exited with status %d; restarting", slot, pid, status)
            since = time.monotonic() - last_restart.get(slot, 0.0)
            if since < RESTART_BACKOFF_S:
                time.sleep(RESTART_BACKOFF_S - since)
            last_restart[slot] = time.monotonic()
            if not self.stopping:
                self._spawn(slot)
        return self.exit_code

    def _stop(self, signum: int, frame: FrameType | None) -> None:
        if self.stopping:
            return
        self.stopping = True
        for pid in list(self.workers):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = self.config.server.shutdown_grace_ms / 1000 + STOP_EXTRA_S
        signal.signal(signal.SIGALRM, self._kill_remaining)
        signal.alarm(max(int(deadline), 1))

    def _kill_remaining(self, signum: int, frame: FrameType | None) -> None:
        for pid in list(self.workers):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

"""The workers on one port (SO_REUSEPORT; one or several), restarted when they die, stopped
together, and on SIGHUP given the configuration read again, replaced one at a time (a reload:
``reloading.py``; its record in ``reload_status.py``).

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
from typing import NoReturn

from api_gateway.cli import CannotListen, CannotStart
from api_gateway.config.settings import ConfigError, GatewayConfig
from api_gateway.keeper import KEEPER_VARIABLE
from api_gateway.observability.logging import configure
from api_gateway.observability.snapshots import DIRECTORY_VARIABLE, WORKER_VARIABLE
from api_gateway.reload_status import ReloadStatus, write_reload_status
from api_gateway.reloading import (
    RELOAD_SIGNAL,
    SOURCE_VARIABLE,
    SUPERVISOR_VARIABLE,
    ConfigSource,
    validated,
)
from api_gateway.serve import HANDOVER_SIGNAL, admin_socket, listening_socket, run_worker

log = logging.getLogger("api_gateway.supervisor")

RESTART_BACKOFF_S = 1.0
STOP_EXTRA_S = 5.0
WATCH_POLL_S = 0.1
READY_TIMEOUT_S = 30.0
STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT})


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
    def __init__(self, config: GatewayConfig, source: ConfigSource | None = None) -> None:
        self.config = config
        # Where the configuration is read again from on SIGHUP.
        self.source = source or ConfigSource()
        self.reloads = ReloadStatus()
        self.directory = ""
        # The longest shutdown grace of any configuration a worker may still run.
        self.grace_ms = config.server.shutdown_grace_ms
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
        for slot in range(self.config.server.workers):
            try:
                self.sockets[slot] = listening_socket(host, port, reuse_port=True)
            except OSError as exc:
                for sock in self.sockets.values():
                    sock.close()
                reason = exc.strerror or exc
                raise CannotListen(f"cannot listen on {host}:{port}: {reason}") from exc
        # The admin listener: one socket, opened here once, on which every worker accepts.
        self.admin_sock = admin_socket(self.config)
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        signal.signal(RELOAD_SIGNAL, self._request_roll)
        # Where workers leave their metrics for each other (see observability.snapshots), and
        # the supervisor its record of reloads (reload_status.py).
        try:
            metrics_dir = os.environ[DIRECTORY_VARIABLE] = tempfile.mkdtemp(prefix="api-gateway-")
        except OSError as exc:  # a read-only root without a writable /tmp (README "Deployment")
            for listener in (*self.sockets.values(), self.admin_sock):
                if listener is not None:
                    listener.close()
            raise ConfigError("TMPDIR", f"no writable temporary directory: {exc}") from None
        self.directory = metrics_dir
        # For a worker asking for a reload (reloading.request_reload).
        os.environ[SOURCE_VARIABLE] = self.source.encoded()
        os.environ[SUPERVISOR_VARIABLE] = str(os.getpid())
        try:
            self._keeper_if_needed()
            failure = self._start_all()
            if self.stopping:
                # Asked to stop while starting (a rollout that changed its mind): a normal stop,
                # whatever the workers had got to; they drain what they accepted.
                return self._watch()
            if failure is not None:
                # A worker that cannot start now (a store it cannot open, say) would fail the
                # same way every second: stop, and say why, as for a bad configuration.
                self._stop(signal.SIGTERM, None)
                self._watch()
                signal.alarm(0)
                raise CannotStart(failure)
            log.info("supervising %d workers on port %d", len(self.workers), port)
            return self._watch()
        finally:
            self._stop_keeper()
            shutil.rmtree(metrics_dir, ignore_errors=True)

    def _start_all(self) -> str | None:
        """Fork every worker at once, then wait until each listens: None, or why one did not."""
        starting: list[tuple[int, int]] = []
        for slot in range(self.config.server.workers):
            if self.stopping:
                break  # stopped while starting: no more workers
            read_fd, write_fd = os.pipe()
            self._spawn(slot, write_fd)
            os.close(write_fd)
            starting.append((slot, read_fd))
        failure = None
        for slot, read_fd in starting:
            try:
                reason = self._wait_ready(read_fd)
            finally:
                os.close(read_fd)
            if reason is not None and failure is None:
                failure = f"worker {slot} did not start: {reason}"
        return failure

    def _keeper_if_needed(self) -> None:
        """The keeper, when several workers share no Redis (one worker decides in memory)."""
        config = self.config
        if config.redis_url is not None or config.server.workers < 2 or self.keeper is not None:
            return
        self.keeper_path = os.environ[KEEPER_VARIABLE] = os.path.join(self.directory, "keeper.sock")
        self._spawn_keeper()

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
            if self._wait_ready(read_fd) is not None:
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
        """Fork a worker for ``slot``; it writes ``1`` to ``ready_fd`` once it listens, or
        ``0`` and the reason if it fails before."""
        # A stop is held back until the new pid is in ``workers``: handled in between, it would
        # not tell this worker, which would then serve on after every other had gone.
        held = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            pid = os.fork()
            if pid == 0:
                self._be_worker(slot, ready_fd, held)
            self.workers[pid] = slot
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)
        return pid

    def _be_worker(
        self, slot: int, ready_fd: int | None, held: set[int | signal.Signals]
    ) -> NoReturn:
        """The forked child: run one worker until it stops, then exit."""
        die_with_parent()
        for other, sock in self.sockets.items():
            if other != slot:
                sock.close()  # else a draining worker would keep other slots' ports open
        os.environ[WORKER_VARIABLE] = str(slot)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, held)  # a stop held back arrives now
        code = 0
        pipe = ReadyPipe(ready_fd)
        try:
            run_worker(self.config, self.sockets[slot], pipe.ready, self.admin_sock)
        except BaseException as exc:
            log.exception("worker %d failed", slot)
            pipe.failed(exc)
            code = 1
        os._exit(code)

    def _watch(self) -> int:
        last_restart: dict[int, float] = {}
        while self.workers or self.retiring:
            if self.roll_requested and not self.stopping:
                # A SIGHUP during the reload sets it again: one more reload after this one.
                self.roll_requested = False
                self._reload()
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
            # A worker stopped by SIGTERM before it had set its handler had nothing to drain.
            if code not in (0, -signal.SIGTERM):
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

    def _reload(self) -> None:
        """Read the configuration again; if valid, replace every worker with it (and apply the
        worker count); else keep all as it is. Either way, record the attempt."""
        began = time.time()
        old = self.config
        try:
            new = validated(self.source, old)
        except ConfigError as exc:
            log.error("configuration not reloaded, the old one is kept: %s", exc)
            self._record(str(exc), began)
            return
        log.info("configuration reloaded: replacing %d workers", len(self.workers))
        self.config = new
        self.grace_ms = max(self.grace_ms, new.server.shutdown_grace_ms)
        if new.log_level != old.log_level:
            configure(new.log_level)  # the supervisor's own lines, and inherited by workers
        self._keeper_if_needed()
        self._retire_beyond(new.server.workers)
        failure = self._roll() or self._add_slots(new.server.workers)
        if failure is not None and self.stopping:
            return
        if failure is not None:
            # A worker that dies from now on restarts with the configuration known to start
            # (those already replaced keep the new one until the next reload).
            log.error("configuration not reloaded: %s", failure)
            self.config = old
            if new.log_level != old.log_level:
                configure(old.log_level)
        self._record(failure, began)

    def _record(self, error: str | None, began: float) -> None:
        self.reloads = self.reloads.attempted(error, began, time.time())
        try:
            write_reload_status(self.directory, self.reloads)
        except OSError as exc:
            log.error("cannot record the reload in %s: %s", self.directory, exc.strerror)

    def _roll(self) -> str | None:
        """Replace every worker in turn: start the new one, wait until it listens, then tell
        the old one to hand over, which stops accepting and drains what it has (README:
        Shutdown). None when done, else why it stopped (the old workers left keep serving)."""
        log.info("rolling restart of %d workers", len(self.workers))
        for old, slot in sorted(self.workers.items(), key=lambda item: item[1]):
            if self.stopping:
                return "the gateway is stopping"
            new, failure = self._start(slot)
            if failure is not None:
                log.error("worker %d (pid %d) did not start; rolling restart abandoned", slot, new)
                return f"a new worker did not start ({failure}); the old workers keep serving"
            self.workers.pop(old, None)
            self.retiring.add(old)
            with contextlib.suppress(ProcessLookupError):
                # Not SIGTERM: that one drains the listening socket's queue and shuts the
                # socket to new handshakes, which the successor shares.
                os.kill(old, HANDOVER_SIGNAL)
        log.info("rolling restart done")
        return None

    def _start(self, slot: int) -> tuple[int, str | None]:
        """Fork a worker for ``slot`` and wait until it listens: its pid, and None or why it
        did not start (then it is reaped quietly, not restarted)."""
        read_fd, write_fd = os.pipe()
        try:
            new = self._spawn(slot, write_fd)
            os.close(write_fd)
            failure = self._wait_ready(read_fd)
        finally:
            os.close(read_fd)
        if failure is not None and not self.stopping:
            self.workers.pop(new, None)
            self.retiring.add(new)
            with contextlib.suppress(ProcessLookupError):
                os.kill(new, signal.SIGKILL)
        return new, failure  # when stopping, the new worker was told to stop with the others

    def _retire_beyond(self, count: int) -> None:
        """Fewer workers: each slot from ``count`` on stops for good, as on SIGTERM (its socket
        is closed here first, so the worker, its last holder, drains the queue before closing)."""
        for pid, slot in sorted(self.workers.items(), key=lambda item: item[1]):
            if slot < count:
                continue
            self.sockets.pop(slot).close()
            self.workers.pop(pid)
            self.retiring.add(pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    def _add_slots(self, count: int) -> str | None:
        """More workers: a new slot, its own socket, up to ``count``."""
        for slot in range(count):
            if slot in self.sockets or self.stopping:
                continue
            self.sockets[slot] = listening_socket(self.config.server.host, self.port, True)
            _, failure = self._start(slot)
            if failure is not None:
                self.sockets.pop(slot).close()
                return f"a new worker did not start ({failure})"
        return None

    def _wait_ready(self, read_fd: int) -> str | None:
        """None once the worker listens, else why not."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not self.stopping and time.monotonic() < deadline:
            readable, _, _ = select.select([read_fd], [], [], WATCH_POLL_S)
            if readable:
                said = os.read(read_fd, 1024)
                if said == b"1":
                    return None
                # b"": the worker died before listening, without a word
                return said[1:].decode(errors="replace") or "it exited"
        return "stopping" if self.stopping else f"not listening after {READY_TIMEOUT_S:g} s"

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
        deadline = self.grace_ms / 1000 + STOP_EXTRA_S
        signal.signal(signal.SIGALRM, self._kill_remaining)
        signal.alarm(max(int(deadline), 1))

    def _kill_remaining(self, signum: int, frame: FrameType | None) -> None:
        keeper = [] if self.keeper is None else [self.keeper]
        for pid in [*self.workers, *self.retiring, *keeper]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


class ReadyPipe:
    """A starting worker's word to the supervisor, said once: ``1`` (listening), or ``0`` and
    why it failed. The descriptor is closed after, so nothing is written to it later."""

    def __init__(self, fd: int | None) -> None:
        self.fd = fd

    def ready(self) -> None:
        self._say(b"1")

    def failed(self, exc: BaseException) -> None:
        self._say(b"0" + (str(exc) or type(exc).__name__).encode()[:1000])

    def _say(self, word: bytes) -> None:
        fd, self.fd = self.fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            os.write(fd, word)
        with contextlib.suppress(OSError):
            os.close(fd)


def _notifier(ready_fd: int | None) -> Callable[[], None] | None:
    if ready_fd is None:
        return None

    def notify() -> None:
        with contextlib.suppress(OSError):
            os.write(ready_fd, b"1")
            os.close(ready_fd)

    return notify

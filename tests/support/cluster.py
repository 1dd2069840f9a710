"""A private three-node Redis Cluster on loopback ports, for tests; stopped by PID at the end."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path

from support.ports import free_port

START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 5.0


def cluster_tools_available() -> bool:
    return shutil.which("redis-server") is not None and shutil.which("redis-cli") is not None


class RedisCluster:
    """Three ``redis-server --cluster-enabled yes``, joined by ``redis-cli --cluster create``."""

    def __init__(self, directory: Path, nodes: int = 3) -> None:
        self.directory = directory
        self.ports = [free_port() for _ in range(nodes)]
        self.processes: dict[int, subprocess.Popen[bytes]] = {}
        try:
            for port in self.ports:
                self._start_node(port)
            self._create()
            self._wait_ok()
        except BaseException:
            self.stop()
            raise

    @property
    def url(self) -> str:
        """The gateway's spelling of a cluster: every node a seed."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def cli(self, port: int, *args: str) -> str:
        result = subprocess.run(
            ["redis-cli", "-h", "127.0.0.1", "-p", str(port), *args],
            capture_output=True,
            timeout=STOP_TIMEOUT_S,
            check=True,
        )
        return result.stdout.decode()

    def stop(self) -> None:
        for process in self.processes.values():
            process.send_signal(signal.SIGCONT)  # a frozen node cannot act on SIGTERM
            process.terminate()
        for process in self.processes.values():
            try:
                process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(STOP_TIMEOUT_S)
        self.processes.clear()

    def _start_node(self, port: int) -> None:
        node_dir = self.directory / f"node-{port}"
        node_dir.mkdir(parents=True, exist_ok=True)
        command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1"]
        command += ["--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf"]
        # The bus port defaults to port + 10000, impossible above 55535: pick a free one too.
        command += ["--cluster-port", str(free_port())]
        command += ["--save", "", "--appendonly", "no", "--daemonize", "no", "--dir", str(node_dir)]
        command += ["--logfile", str(node_dir / "redis.log")]
        self.processes[port] = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                if self.cli(port, "PING").strip() == "PONG":
                    return
            except subprocess.CalledProcessError:
                pass
            log = (node_dir / "redis.log").read_text() if (node_dir / "redis.log").exists() else ""
            alive = self.processes[port].poll() is None
            assert alive and time.monotonic() < deadline, f"node on {port} did not start:\n{log}"
            time.sleep(0.05)

    def _create(self) -> None:
        nodes = [f"127.0.0.1:{port}" for port in self.ports]
        command = ["redis-cli", "--cluster", "create", *nodes]
        subprocess.run(
            [*command, "--cluster-replicas", "0", "--cluster-yes"],
            capture_output=True,
            timeout=START_TIMEOUT_S,
            check=True,
        )

    def _wait_ok(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not all("cluster_state:ok" in self.cli(p, "CLUSTER", "INFO") for p in self.ports):
            assert time.monotonic() < deadline, "the cluster did not reach cluster_state:ok"
            time.sleep(0.05)

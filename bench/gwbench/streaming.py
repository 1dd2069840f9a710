"""Streaming case: one big upload and one big download through a proxy, with its peak memory
(RSS, and PSS: the pages the supervisor and its worker share counted once)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from gwbench.procs import RssSampler, pinned, tree_cpu_seconds, tree_pss, tree_rss
from gwbench.servers import DOWNLOAD_PREFIX, UPLOAD_PATH

MiB = 1024 * 1024


@dataclass(frozen=True)
class Transfer:
    direction: str  # "upload" | "download"
    size: int
    seconds: float
    baseline_rss: int | None
    peak_rss: int | None
    cpu_seconds: float | None
    error: str | None = None
    peak_pss: int | None = None

    @property
    def mib_per_s(self) -> float:
        return self.size / MiB / self.seconds if self.seconds else 0.0


def blob(work: Path, size: int) -> Path:
    """A sparse file of ``size`` zero bytes (reads cost no disk I/O)."""
    path = work / f"blob-{size}.bin"
    if not path.exists() or path.stat().st_size != size:
        with open(path, "wb") as handle:
            os.truncate(handle.fileno(), size)
    return path


def curl(curl_path: str, args: Sequence[str], cpus: str | None, max_s: float) -> tuple[str, str]:
    argv = [curl_path, "-sS", "--max-time", f"{max_s:.0f}", *args]
    done = subprocess.run(
        pinned(argv, cpus), capture_output=True, text=True, timeout=max_s + 10, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"curl exit {done.returncode}: {done.stderr.strip()}")
    body, _, trailer = done.stdout.rpartition("\n")
    return body, trailer


def transfer(
    curl_path: str,
    direction: str,
    port: int,
    size: int,
    work: Path,
    token: str,
    proxy: Sequence[psutil.Process],
    cpus: str | None,
) -> Transfer:
    """Upload or download ``size`` bytes through ``port``, sampling the proxy's RSS and PSS every
    50 ms."""
    auth = ["-H", f"Authorization: Bearer {token}"]
    max_s = max(60.0, size / (10 * MiB))
    if direction == "upload":
        args = [
            *auth,
            "-X",
            "POST",
            "-H",
            "Expect:",
            "-H",
            "Content-Type: application/octet-stream",
            "-T",
            str(blob(work, size)),
            "-w",
            "\n%{http_code} %{size_upload} %{time_total}",
            f"http://127.0.0.1:{port}{UPLOAD_PATH}",
        ]
    else:
        args = [
            *auth,
            "-o",
            "/dev/null",
            "-w",
            "\n%{http_code} %{size_download} %{time_total}",
            f"http://127.0.0.1:{port}{DOWNLOAD_PREFIX}{size}",
        ]
    baseline = tree_rss(proxy) if proxy else None
    cpu0 = tree_cpu_seconds(proxy)
    try:
        with RssSampler(proxy, 0.05) as rss, RssSampler(proxy, 0.05, tree_pss) as pss:
            body, trailer = curl(curl_path, args, cpus, max_s)
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        return Transfer(direction, size, 0.0, baseline, None, None, str(exc))
    code, moved, seconds = trailer.split()
    error = check(direction, size, int(code), int(float(moved)), body)
    return Transfer(
        direction,
        size,
        float(seconds),
        baseline,
        rss.peak if proxy else None,
        tree_cpu_seconds(proxy) - cpu0 if proxy else None,
        error,
        pss.peak if proxy else None,
    )


def check(direction: str, size: int, code: int, moved: int, body: str) -> str | None:
    if code != 200:
        return f"HTTP {code}: {body[:200]}"
    if moved != size:
        return f"moved {moved} of {size} bytes"
    if direction == "upload":
        try:
            received = json.loads(body)["received"]
        except (ValueError, KeyError, TypeError):
            return f"unexpected origin answer: {body[:200]!r}"
        if received != size:
            return f"origin received {received} of {size} bytes"
    return None

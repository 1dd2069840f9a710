"""The benchmark runs end to end on a tiny setting and writes a complete results table.

This checks that ``bench/run --quick`` works (tools found or installed, every server started and
stopped, every row measured); it never checks that anything is fast.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from support.bench_report import bench_processes, number, table_rows

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench"
THROUGHPUT_ROWS = [
    ("direct to upstream", "small"),
    ("nginx proxy_pass (reference)", "small"),
    ("gateway, 1 worker", "small"),
    ("gateway, Redis rate limit", "small"),
    ("gateway, 2 workers", "small"),
    ("direct to upstream", "16 KiB"),
    ("nginx proxy_pass (reference)", "16 KiB"),
    ("gateway, 1 worker", "16 KiB"),
]
STREAM_LABELS = ["direct to origin", "nginx proxy_pass", "gateway, 1 worker"]


@pytest.mark.timeout(300)  # generous only for a first run that must apt-get install the tools
def test_quick_benchmark_writes_a_complete_table(bench_tools: None, tmp_path: Path) -> None:
    results, work = tmp_path / "results", tmp_path / "work"

    done = subprocess.run(
        [
            sys.executable,
            str(BENCH / "run.py"),
            "--quick",
            "--idle-connections",
            "100",
            "--no-mix",  # the production mix has its own smoke test (test_mix_smoke.py)
            "--results-dir",
            str(results),
            "--work-dir",
            str(work),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    [report] = list(results.glob("*.md"))
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}-\d{4}\.md", report.name)
    text = report.read_text()
    for fact in ("python", "uvloop", "httptools", "nginx", "wrk", "api-gateway", "cpu", "cores"):
        assert f"- **{fact}**: " in text
    rows = table_rows(text, "Throughput and latency (medians)")
    assert [(row[0], row[1]) for row in rows] == THROUGHPUT_ROWS
    for row in rows:
        assert number(row[2]) > 0, row  # req/s
        assert row[3] != "-", row  # ratio to nginx of the same run
    streams = table_rows(text, "Streaming")
    assert [(row[0], row[1]) for row in streams] == [
        (label, direction) for label in STREAM_LABELS for direction in ("upload", "download")
    ]
    assert all(row[-1] == "ok" for row in streams), streams
    idle = table_rows(text, "Idle keep-alive connections")
    assert [row[0] for row in idle] == ["nginx proxy_pass", "gateway, 1 worker"]
    assert "## Targets (reported, not asserted)" in text
    assert bench_processes(work) == []  # nginx, origin and gateways were all stopped

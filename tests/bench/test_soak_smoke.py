"""The soak command runs end to end on a tiny setting and writes its report.

It checks that ``bench/soak.py`` works (servers, fault proxy, Redis, sampling, verdict); the
real run is ten minutes (README: Faults).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SMOKE_TIMEOUT_S = 50


def test_a_short_soak_runs_and_reports(tmp_path: Path) -> None:
    out = tmp_path / "soak.md"
    command = [sys.executable, str(REPO / "bench" / "soak.py"), "--minutes", "0.1"]
    command += ["--sample-s", "2", "--clients", "2", "--out", str(out)]

    finished = subprocess.run(command, capture_output=True, timeout=SMOKE_TIMEOUT_S, check=False)

    text = out.read_text()
    assert "| t (s) | RSS (MiB) | open fds | tasks | requests | unexpected |" in text
    assert "unexpected outcomes: none" in text, text
    assert finished.returncode in (0, 1), finished.stderr.decode()[-2000:]

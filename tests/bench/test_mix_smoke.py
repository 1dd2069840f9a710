"""The production-mix benchmark and its soak run end to end on a tiny setting and report.

They check that ``bench/mix.py --quick`` and ``bench/mix.py --soak --quick`` work (traffic
written, every server started, checked and stopped, every row measured); never that anything is
fast. The real runs are minutes long (bench/README.md, "Production mix").
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from support.bench_report import bench_processes, number, table_rows

REPO = Path(__file__).resolve().parents[2]
MIX = REPO / "bench" / "mix.py"
MIX_ROWS = [
    ("direct to upstream", "2k uniform"),
    ("nginx proxy_pass (reference)", "1 user"),
    ("nginx proxy_pass (reference)", "2k Zipf"),
    ("nginx proxy_pass (reference)", "2k uniform"),
    ("gateway, 1 worker", "1 user"),
    ("gateway, 1 worker", "2k Zipf"),
    ("control: gateway, 1 worker again", "2k Zipf"),
    ("gateway, 1 worker", "2k uniform"),
    ("gateway, Redis-backed limits", "1 user"),
    ("gateway, Redis-backed limits", "2k uniform"),
    ("gateway, tracing 1 % sampled", "2k Zipf"),
    ("gateway, tracing 100 % sampled", "2k Zipf"),
]
FACTS = ("python", "uvloop", "httptools", "nginx", "wrk", "api-gateway", "cpu", "cores")


def run_mix(tmp_path: Path, *extra: str) -> tuple[str, str]:
    """Run bench/mix.py; return its report's file name and text."""
    results, work = tmp_path / "results", tmp_path / "work"
    command = [sys.executable, str(MIX), "--quick", *extra]
    command += ["--results-dir", str(results), "--work-dir", str(work)]

    done = subprocess.run(command, capture_output=True, text=True, timeout=240, check=False)

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert bench_processes(work) == []  # nginx, Redis, the sink and every gateway were stopped
    [report] = list(results.glob("*.md"))
    return report.name, report.read_text()


@pytest.mark.timeout(300)  # generous only for a first run that must apt-get install the tools
def test_quick_mix_measures_every_case(bench_tools: None, tmp_path: Path) -> None:
    name, text = run_mix(tmp_path)

    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}-\d{4}-mix\.md", name)
    for fact in FACTS:
        assert f"- **{fact}**: " in text
    assert "70 % protected GET" in text.split("## Request mix\n", 1)[1]
    rows = table_rows(text, "Production mix (medians)")
    assert [(row[0], row[1]) for row in rows] == MIX_ROWS
    for row in rows:
        assert number(row[2]) > 0, row  # req/s
        assert "errors" not in row[-1], row
    for row in rows[1:]:  # every proxy: its CPU per request, the kernel's part, its RSS at the end
        assert number(row[4]) > number(row[5]) > 0 and number(row[9]) > 0, row
    for row in rows[4:]:  # every gateway: nginx's CPU on the same traffic, and the ratio
        assert number(row[6]) > 0 and number(row[7]) > 0, row
    assert "in turns of 40 ms" in text  # the default: every case's wrk at once, in turns
    control = rows[MIX_ROWS.index(("control: gateway, 1 worker again", "2k Zipf"))]
    assert control[8].endswith("(gw-zipf)"), control  # compared with the row it repeats
    targets = table_rows(text, "Targets (reported, not asserted)")
    assert len(targets) == 6 and all(row[1] != "-" for row in targets), targets
    split = table_rows(text, "One user's CPU: the kernel's and the proxy's own")
    assert [row[0] for row in split] == ["gateway", "nginx proxy_pass"], split
    for name, whole, kernel, own in split:  # the two parts add up to the whole (rounded)
        assert abs(number(kernel) + number(own) - number(whole)) <= 0.11, name
    assert "OTLP sink received" in text
    reps = table_rows(text, "CPU µs per request in each repetition")
    assert [(row[0], row[1]) for row in reps] == MIX_ROWS[1:]  # every proxy row, direct not
    for row, each in zip(rows[1:], reps, strict=True):  # one repetition: it is the median
        assert each[2] == row[4], (row, each)


@pytest.mark.timeout(120)
def test_runs_one_after_another_measure_latency(bench_tools: None, tmp_path: Path) -> None:
    # --turns 0: each case's runs one after another, so wrk's latencies are the proxy's
    _, text = run_mix(tmp_path, "--turns", "0", "--cases", "gw-zipf")

    assert "1 s per run" in text and "in turns" not in text
    rows = table_rows(text, "Production mix (medians)")
    assert [row[1] for row in rows] == ["1 user", "2k Zipf", "1 user", "2k Zipf"]
    for row in rows:
        assert number(row[3]) > 0 and number(row[4]) > 0, row  # p99 ms, CPU µs/req


@pytest.mark.timeout(120)
def test_quick_soak_walks_fresh_users_and_samples_rss(bench_tools: None, tmp_path: Path) -> None:
    name, text = run_mix(tmp_path, "--soak")

    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}-\d{4}-mix-soak\.md", name)
    chunks = table_rows(text, "Chunks")
    assert [row[0] for row in chunks] == ["0 to 1,999", "2,000 to 3,999"]
    for row in chunks:
        assert number(row[1]) > 0 and number(row[4]) > 0, row  # reached, CPU µs/req
        assert number(row[5]) == 0 and number(row[6]) > 0, row  # errors, RSS
    targets = table_rows(text, "Targets (reported, not asserted)")
    assert len(targets) == 2 and all(row[1] != "-" for row in targets), targets
    assert len(table_rows(text, "RSS over time")) >= 3

"""Reading the benchmark's markdown reports, and finding processes a bench run left behind."""

from __future__ import annotations

from pathlib import Path

import psutil  # type: ignore[import-untyped]


def table_rows(text: str, heading: str) -> list[list[str]]:
    """The body rows of the markdown table under ``## heading``, as lists of cells."""
    section = text.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows[2:]]


def number(cell: str) -> float:
    return float(cell.replace(",", "").rstrip(" %"))


def bench_processes(work: Path) -> list[psutil.Process]:
    """Processes still running whose command line mentions this run's work directory."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if any(str(work) in part for part in proc.info["cmdline"] or []):
            found.append(proc)
    return found

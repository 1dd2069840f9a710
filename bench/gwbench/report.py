"""The results: medians per case, ratios to nginx from the same run, targets, and the markdown."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from gwbench.idle import IdleResult
from gwbench.load import Sample
from gwbench.streaming import MiB, Transfer

BUSY = 0.90  # a core this busy is saturated


@dataclass(frozen=True)
class Case:
    key: str
    label: str
    body: str  # "small" | "16 KiB"
    target: str  # server key: "upstream", "nginx", "gateway", ...
    path: str
    reference: bool = False  # the nginx proxy_pass row this body size is compared with
    direct: bool = False  # no proxy in between: shows what the load side can do
    optional: bool = False  # an extra comparison (Fastify): its failure does not fail the run


@dataclass
class CaseResult:
    case: Case
    samples: list[Sample] = field(default_factory=list)
    error: str | None = None
    warm: list[Sample] = field(default_factory=list)  # runs not measured (warm-up), if kept

    def median(self, pick: Callable[[Sample], float | int | None]) -> float | None:
        values = [value for value in map(pick, self.samples) if value is not None]
        return statistics.median(values) if values else None

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.samples)

    @property
    def spread(self) -> float | None:
        """(max - min) / median of requests/s over the repetitions."""
        rates = [sample.rps for sample in self.samples]
        if len(rates) < 2:
            return None
        return (max(rates) - min(rates)) / statistics.median(rates)


@dataclass
class StreamRow:
    label: str
    transfers: list[Transfer]
    error: str | None = None


@dataclass
class IdleRow:
    label: str
    result: IdleResult | None
    error: str | None = None


@dataclass
class Report:
    title: str
    facts: dict[str, str]
    settings: dict[str, str]
    cases: list[CaseResult]
    streams: list[StreamRow] = field(default_factory=list)
    idle: list[IdleRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def reference(self, body: str) -> CaseResult | None:
        for result in self.cases:
            if result.case.reference and result.case.body == body and result.ok:
                return result
        return None

    def find(self, key: str) -> CaseResult | None:
        return next((result for result in self.cases if result.case.key == key), None)


def fmt(value: float | None, digits: int = 0, suffix: str = "") -> str:
    if value is None or value != value:  # None or NaN: not measured
        return "-"
    return f"{value:,.{digits}f}{suffix}"


def ratio(value: float | None, reference: float | None) -> float | None:
    if value is None or not reference:
        return None
    return value / reference


def bottleneck(result: CaseResult) -> str:
    proxy = result.median(lambda s: s.proxy_core)
    load = result.median(lambda s: s.load_core)
    if result.case.direct:
        return "load side (by design)"
    if proxy is not None and proxy >= BUSY:
        return "proxy"
    if load is not None and load >= BUSY:
        return "**load side**"
    return "neither core saturated"


def throughput_table(report: Report) -> list[str]:
    lines = [
        "| case | body | req/s | x nginx | p50 ms | p99 ms | p99.9 ms | p99 x nginx "
        "| CPU µs/req | peak RSS MiB | core 0 busy | core 1 busy | wrk CPU | other CPU "
        "| bottleneck | runs |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for result in report.cases:
        lines.append(throughput_row(report, result))
    return lines


def throughput_row(report: Report, result: CaseResult) -> str:
    case = result.case
    if not result.ok:
        return f"| {case.label} | {case.body} | failed: {one_line(result.error)} |" + " |" * 13
    ref = report.reference(case.body)
    rps, p99 = result.median(lambda s: s.rps), result.median(lambda s: s.p99_ms)
    ref_rps = ref.median(lambda s: s.rps) if ref else None
    ref_p99 = ref.median(lambda s: s.p99_ms) if ref else None
    rss = result.median(lambda s: s.peak_rss)
    errors = sum(sample.errors for sample in result.samples)
    spread = result.spread
    runs = f"{len(result.samples)}" + (f" (±{spread * 50:.0f} %)" if spread is not None else "")
    if errors:
        runs += f", **{errors} errors**"
    cells = [
        case.label,
        case.body,
        fmt(rps),
        fmt(ratio(rps, ref_rps), 2),
        fmt(result.median(lambda s: s.p50_ms), 2),
        fmt(p99, 2),
        fmt(result.median(lambda s: s.p999_ms), 2),
        fmt(ratio(p99, ref_p99), 2),
        fmt(result.median(lambda s: s.cpu_us_per_request), 1),
        fmt(rss / MiB if rss is not None else None, 1),
        fmt(pct(result.median(lambda s: s.proxy_core)), 0, " %"),
        fmt(pct(result.median(lambda s: s.load_core)), 0, " %"),
        fmt(pct(result.median(lambda s: s.wrk_cpu_share)), 0, " %"),
        fmt(pct(result.median(lambda s: s.other_cpu_share)), 0, " %"),
        bottleneck(result),
        runs,
    ]
    return "| " + " | ".join(cells) + " |"


def pct(value: float | None) -> float | None:
    return None if value is None else value * 100


def one_line(text: str | None) -> str:
    first = (text or "").strip().splitlines()
    return (first[0] if first else "unknown error")[:160].replace("|", "/")


def stream_table(report: Report) -> list[str]:
    lines = [
        "| case | direction | size MiB | MiB/s | seconds | RSS before MiB | peak RSS MiB "
        "| peak PSS MiB | proxy CPU s | result |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in report.streams:
        if row.error:
            lines.append(
                f"| {row.label} | - | - | - | - | - | - | - | - | failed: {one_line(row.error)} |"
            )
        for item in row.transfers:
            lines.append(
                "| "
                + " | ".join(
                    [
                        row.label,
                        item.direction,
                        fmt(item.size / MiB),
                        fmt(item.mib_per_s),
                        fmt(item.seconds, 2),
                        mib(item.baseline_rss),
                        mib(item.peak_rss),
                        mib(item.peak_pss),
                        fmt(item.cpu_seconds, 2),
                        "ok" if item.error is None else f"failed: {one_line(item.error)}",
                    ]
                )
                + " |"
            )
    return lines


def mib(value: int | None) -> str:
    return fmt(value / MiB if value is not None else None, 1)


def idle_table(report: Report) -> list[str]:
    lines = [
        "| case | connections wanted | still open | answered 200 | RSS before MiB "
        "| RSS after MiB | KiB per connection | result |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in report.idle:
        item = row.result
        if item is None:
            lines.append(f"| {row.label} | - | - | - | - | - | - | failed: {one_line(row.error)} |")
            continue
        lines.append(
            "| "
            + " | ".join(
                [
                    row.label,
                    str(item.wanted),
                    str(item.opened),
                    str(item.served),
                    mib(item.rss_before),
                    mib(item.rss_after),
                    fmt(item.bytes_per_connection / 1024, 1),
                    "ok" if item.error is None else one_line(item.error),
                ]
            )
            + " |"
        )
    return lines


def targets(report: Report) -> list[tuple[str, str, bool | None]]:
    """(target, measured, met?) — reported, never asserted."""
    rows: list[tuple[str, str, bool | None]] = []
    ref = report.reference("small")
    ref_rps = ref.median(lambda s: s.rps) if ref else None
    ref_p99 = ref.median(lambda s: s.p99_ms) if ref else None
    for key, label, floor in (("gateway", "gateway", 0.5), ("gateway-redis", "Redis-backed", 0.35)):
        found = report.find(key)
        value = ratio(found.median(lambda s: s.rps), ref_rps) if found and found.ok else None
        rows.append(
            (
                f"{label} throughput ≥ {floor}x nginx",
                fmt(value, 2, "x"),
                None if value is None else value >= floor,
            )
        )
    found = report.find("gateway")
    value = ratio(found.median(lambda s: s.p99_ms), ref_p99) if found and found.ok else None
    rows.append(
        ("gateway p99 ≤ 2x nginx p99", fmt(value, 2, "x"), None if value is None else value <= 2)
    )
    rows.append(workers_target(report))
    rows.extend(stream_targets(report))
    for row in report.idle:
        if row.label.startswith("gateway") and row.result is not None:
            per = row.result.bytes_per_connection / 1024
            rows.append(
                (
                    "idle connection < 20 KiB each",
                    fmt(per, 1, " KiB"),
                    per < 20 and row.result.error is None,
                )
            )
    return rows


def workers_target(report: Report) -> tuple[str, str, bool | None]:
    one, two = report.find("gateway"), report.find("gateway-2w")
    label = "2 workers: CPU µs/request within 10 % of 1 worker"
    if not (one and two and one.ok and two.ok):
        return label, "-", None
    a = one.median(lambda s: s.cpu_us_per_request)
    b = two.median(lambda s: s.cpu_us_per_request)
    if not a or b is None:
        return label, "-", None
    return label, f"{b:.1f} vs {a:.1f} µs ({(b / a - 1) * 100:+.0f} %)", abs(b / a - 1) <= 0.10


def stream_targets(report: Report) -> list[tuple[str, str, bool | None]]:
    rows: list[tuple[str, str, bool | None]] = []
    for row in report.streams:
        if not row.label.startswith("gateway"):
            continue
        for item in row.transfers:
            # PSS: the supervisor's and its worker's shared pages once, as the container counts
            # them (summed RSS counts them twice); the table shows both.
            label = f"streaming {item.direction} {item.size / MiB:.0f} MiB: peak PSS < 100 MiB"
            met = None if item.peak_pss is None else item.peak_pss < 100 * MiB
            rows.append((label, mib(item.peak_pss) + " MiB", met if item.error is None else False))
    return rows


def targets_table(report: Report) -> list[str]:
    marks = {True: "met", False: "**missed**", None: "not measured"}
    lines = ["| target | measured | |", "|---|---:|---|"]
    lines += [f"| {name} | {value} | {marks[met]} |" for name, value, met in targets(report)]
    return lines


def markdown(report: Report) -> str:
    parts = [f"# {report.title}", "", "## Machine and versions", ""]
    parts += [f"- **{key}**: {value}" for key, value in report.facts.items()]
    parts += ["", "## Settings", ""]
    parts += [f"- **{key}**: {value}" for key, value in report.settings.items()]
    parts += ["", "## Throughput and latency (medians)", "", *throughput_table(report)]
    if report.streams:
        parts += ["", "## Streaming", "", *stream_table(report)]
    if report.idle:
        parts += ["", "## Idle keep-alive connections", "", *idle_table(report)]
    parts += ["", "## Targets (reported, not asserted)", "", *targets_table(report)]
    if report.notes:
        parts += ["", "## Notes", ""] + [f"- {note}" for note in report.notes]
    return "\n".join(parts) + "\n"


def disturbance_note(cases: Sequence[CaseResult], limit: float = 0.10) -> str | None:
    """A warning when something outside the benchmark used much CPU during the measured runs."""
    others = [sample.other_cpu_share for result in cases for sample in result.samples]
    if not others or statistics.median(others) <= limit:
        return None
    return (
        f"**Disturbed run**: processes outside the benchmark used a median "
        f"{statistics.median(others) * 100:.0f} % of a core during the measured runs (column "
        f"'other CPU'). req/s, latencies and their ratios are unreliable; CPU µs/req, RSS, "
        f"streaming and idle figures much less so. Re-run on a quiet machine."
    )


def load_side_note(cases: Sequence[CaseResult]) -> str | None:
    """Compare direct-to-upstream throughput with the best proxied row of the same body."""
    notes = []
    for body in sorted({result.case.body for result in cases}):
        group = [r for r in cases if r.case.body == body and r.ok]
        direct = next((r for r in group if r.case.direct), None)
        proxied = [r for r in group if not r.case.direct]
        if not direct or not proxied:
            continue
        best = max(proxied, key=lambda r: r.median(lambda s: s.rps) or 0)
        d, b = direct.median(lambda s: s.rps) or 0, best.median(lambda s: s.rps) or 0
        if b:
            notes.append(
                f"{body}: direct-to-upstream does {d:,.0f} req/s = {d / b:.1f}x the "
                f"fastest proxied row ({best.case.label}, {b:,.0f} req/s)"
            )
    if not notes:
        return None
    return (
        "Load-side headroom — " + "; ".join(notes) + ". Above ~1.3x the load side "
        "(wrk + upstream on core 1) is not what limits the proxied rows."
    )


def write_results(text: str, directory: Path, suffix: str = "") -> Path:
    """Write a report to ``directory/<YYYY-MM-DD-HHMM><suffix>.md`` (then -2, -3... if taken)."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = datetime.now().strftime("%Y-%m-%d-%H%M") + suffix
    path = directory / f"{stem}.md"
    n = 2
    while path.exists():
        path, n = directory / f"{stem}-{n}.md", n + 1
    path.write_text(text)
    return path

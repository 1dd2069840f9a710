"""The production mix's report: per case CPU per request of the gateway and of nginx on the same
traffic, ratios to each case's baseline, the issue's targets; and the soak's RSS over time."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from gwbench.report import (
    CaseResult,
    Report,
    bottleneck,
    fmt,
    one_line,
    pct,
    ratio,
)
from gwbench.streaming import MiB

# case key -> the case it is compared with (CPU µs/request), as the targets pair them
BASELINES = {
    "gw-zipf": "gw-single",
    "gw-zipf-control": "gw-zipf",
    "gw-uniform": "gw-single",
    "gw-redis-uniform": "gw-redis-single",
    "gw-trace-0.01": "gw-zipf",
    "gw-trace-1": "gw-zipf",
    "gw-trace-0": "gw-zipf",
    "gw-idle-thread": "gw-zipf",
}
# (label, case, baseline, highest allowed ratio): CPU µs/request of case ÷ baseline
# "{traffic}" is the case's traffic, e.g. "100k Zipf".
RATIO_TARGETS = (
    ("{traffic} within 1.15x of single-user CPU/request", "gw-zipf", "gw-single", 1.15),
    ("{traffic} within 1.4x of single-user CPU/request", "gw-uniform", "gw-single", 1.4),
    (
        "Redis-backed limits: {traffic} within 1.3x of one user",
        "gw-redis-uniform",
        "gw-redis-single",
        1.3,
    ),
    (
        "tracing 1 % sampled ({traffic}) within 1.05x of tracing off",
        "gw-trace-0.01",
        "gw-zipf",
        1.05,
    ),
    ("tracing 100 % sampled ({traffic}) within 2x of tracing off", "gw-trace-1", "gw-zipf", 2.0),
)


PAIRED_AT_LEAST = 3  # repetitions for the median of per-repetition ratios (else medians' ratio)


@dataclass
class MixReport(Report):
    end_rss: dict[str, int] = field(default_factory=dict)  # case key -> tree RSS after its last run
    shares: list[str] = field(default_factory=list)


def cpu(result: CaseResult | None) -> float | None:
    if result is None or not result.ok:
        return None
    return result.median(lambda s: s.cpu_us_per_request)


def kernel(result: CaseResult | None) -> float | None:
    if result is None or not result.ok:
        return None
    return result.median(lambda s: s.kernel_us_per_request)


def mix_table(report: MixReport) -> list[str]:
    lines = [
        "| case | traffic | req/s | p99 ms | CPU µs/req | of it kernel | nginx CPU µs/req "
        "| nginx ÷ gateway CPU | x baseline CPU | RSS at end MiB | peak RSS MiB | core 0 busy "
        "| core 1 busy | wrk CPU | other CPU | bottleneck | runs |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for result in report.cases:
        lines.append(mix_row(report, result))
    return lines


def mix_row(report: MixReport, result: CaseResult) -> str:
    case = result.case
    if not result.ok:
        return f"| {case.label} | {case.body} | failed: {one_line(result.error)} |" + " |" * 14
    own = cpu(result)
    nginx = cpu(report.reference(case.body))
    baseline = BASELINES.get(case.key)
    gateway = not (case.direct or case.reference)
    errors = sum(sample.errors for sample in result.samples)
    spread = result.spread
    runs = f"{len(result.samples)}" + (f" (±{spread * 50:.0f} %)" if spread is not None else "")
    if errors:
        runs += f", **{errors} errors**"
    end = report.end_rss.get(case.key)
    peak = result.median(lambda s: s.peak_rss)
    cells = [
        case.label,
        case.body,
        fmt(result.median(lambda s: s.rps)),
        fmt(p99(result), 2),
        fmt(own, 1),
        fmt(kernel(result), 1),
        fmt(nginx, 1) if gateway else "-",
        fmt(cpu_ratio(report.reference(case.body), result), 2) if gateway else "-",
        (
            fmt(cpu_ratio(result, report.find(baseline)), 2)
            + f" ({baseline}){paired_range(report, result, baseline)}"
        )
        if baseline
        else "-",
        fmt(end / MiB if end else None, 1),
        fmt(peak / MiB if peak else None, 1),
        fmt(pct(result.median(lambda s: s.proxy_core)), 0, " %"),
        fmt(pct(result.median(lambda s: s.load_core)), 0, " %"),
        fmt(pct(result.median(lambda s: s.wrk_cpu_share)), 0, " %"),
        fmt(pct(result.median(lambda s: s.other_cpu_share)), 0, " %"),
        bottleneck(result),
        runs,
    ]
    return "| " + " | ".join(cells) + " |"


def p99(result: CaseResult) -> float | None:
    """The median p99 of the measured runs; in turns, where wrk's latencies include the time it
    was stopped and are not kept (NaN), the median p99 of the case's warm-up runs instead."""
    measured = [s.p99_ms for s in result.samples if s.p99_ms == s.p99_ms]
    if measured or not result.samples:
        return statistics.median(measured) if measured else None
    warm = [s.p99_ms for s in result.warm]
    return statistics.median(warm) if warm else None


def paired_ratios(result: CaseResult, base: CaseResult | None) -> list[float]:
    """CPU per request of each repetition over its baseline's in the same repetition (when both
    have every repetition: the runs of one repetition ran in the same seconds)."""
    if base is None or not base.ok or len(base.samples) != len(result.samples):
        return []
    pairs = zip(result.samples, base.samples, strict=True)
    return [
        a.cpu_us_per_request / b.cpu_us_per_request
        for a, b in pairs
        if a.cpu_us_per_request and b.cpu_us_per_request
    ]


def cpu_ratio(result: CaseResult | None, base: CaseResult | None) -> float | None:
    """CPU per request of ``result`` over ``base``: the median of the per-repetition ratios when
    both have every repetition (at least 3), else the ratio of their medians. Paired, a
    repetition that ran on a slow host is compared with its own baseline, not with a median
    taken from other seconds."""
    if result is None or base is None or not result.ok or not base.ok:
        return None
    paired = paired_ratios(result, base)
    if len(paired) >= PAIRED_AT_LEAST:
        return statistics.median(paired)
    return ratio(cpu(result), cpu(base))


def paired_range(report: MixReport, result: CaseResult, baseline: str) -> str:
    return quartiles(paired_ratios(result, report.find(baseline)))


def quartiles(ratios: list[float], digits: int = 2) -> str:
    """ " [q1 to q3]" of ``ratios``, or "" when there are too few for quartiles."""
    if len(ratios) < 4:
        return ""
    q1, _, q3 = statistics.quantiles(sorted(ratios), n=4)
    return f" [{q1:.{digits}f} to {q3:.{digits}f}]"


def over_both_off(report: MixReport) -> list[str]:
    """The rows compared with the Zipf row, over the mean of both processes with its settings
    (the Zipf row and its control) repetition by repetition: two processes of the same settings
    differ by 1-2 %, the mean of two by less. Empty without both, every repetition of each."""
    zipf, control = report.find("gw-zipf"), report.find("gw-zipf-control")
    if zipf is None or control is None or len(paired_ratios(control, zipf)) < PAIRED_AT_LEAST:
        return []
    pairs = zip(zipf.samples, control.samples, strict=True)
    mean = [(a.cpu_us_per_request + b.cpu_us_per_request) / 2 for a, b in pairs]
    lines = ["| case | traffic | x the mean of both |", "|---|---|---:|"]
    for result in report.cases:
        if BASELINES.get(result.case.key) != "gw-zipf" or not result.ok:
            continue
        if len(result.samples) != len(mean):
            continue
        pairs_of = zip(result.samples, mean, strict=True)
        ratios = [s.cpu_us_per_request / m for s, m in pairs_of if s.cpu_us_per_request and m]
        if not ratios:
            continue
        cell = f"{statistics.median(ratios):.3f}{quartiles(ratios, 3)}"
        lines.append(f"| {result.case.label} | {result.case.body} | {cell} |")
    return lines


def mix_targets(report: MixReport) -> list[tuple[str, str, bool | None]]:
    rows: list[tuple[str, str, bool | None]] = []
    for label, key, base, limit in RATIO_TARGETS:
        found, baseline = report.find(key), report.find(base)
        a, b = cpu(found), cpu(baseline)
        value = cpu_ratio(found, baseline)
        shown = "-" if value is None else f"{value:.2f}x (medians {fmt(a, 1)} vs {fmt(b, 1)} µs)"
        name = label.format(traffic=found.case.body if found else "many users")
        rows.append((name, shown, None if value is None else value <= limit))
    value = cpu_ratio(report.find("nginx-single"), report.find("gw-single"))
    rows.insert(
        2,
        (
            "single user: nginx ÷ gateway CPU/request ≥ 0.5",
            fmt(value, 2),
            None if value is None else value >= 0.5,
        ),
    )
    return rows


def single_user_split(report: MixReport) -> list[str]:
    """Where one user's CPU goes, the kernel's (system time) apart from the proxy's own code
    (user time), for the gateway and nginx: what bounds the single-user ratio."""
    gateway, nginx = report.find("gw-single"), report.find("nginx-single")
    g_all, n_all, g_kernel, n_kernel = cpu(gateway), cpu(nginx), kernel(gateway), kernel(nginx)
    if g_all is None or n_all is None or g_kernel is None or n_kernel is None:
        return []
    g_user, n_user = g_all - g_kernel, n_all - n_kernel
    if g_user <= 0:
        return []
    # For nginx ÷ gateway ≥ 0.5 the gateway may spend twice nginx's CPU, kernel included.
    allowed = 2 * n_all - g_kernel
    return [
        "| single user, CPU µs/request | all | kernel (system) | own code (user) |",
        "|---|---:|---:|---:|",
        f"| gateway | {g_all:.1f} | {g_kernel:.1f} | {g_user:.1f} |",
        f"| nginx proxy_pass | {n_all:.1f} | {n_kernel:.1f} | {n_user:.1f} |",
        "",
        f"For nginx ÷ gateway ≥ 0.5 the gateway's own code may take at most 2 x {n_all:.1f} - "
        f"{g_kernel:.1f} = {allowed:.1f} µs a request (its kernel part as in this run), "
        f"{allowed / g_user:.2f}x the {g_user:.1f} µs it takes here.",
    ]


def targets_lines(rows: list[tuple[str, str, bool | None]]) -> list[str]:
    marks = {True: "met", False: "**missed**", None: "not measured"}
    lines = ["| target | measured | |", "|---|---:|---|"]
    return lines + [f"| {name} | {value} | {marks[met]} |" for name, value, met in rows]


def header(report: Report) -> list[str]:
    parts = [f"# {report.title}", "", "## Machine and versions", ""]
    parts += [f"- **{key}**: {value}" for key, value in report.facts.items()]
    parts += ["", "## Settings", ""]
    return parts + [f"- **{key}**: {value}" for key, value in report.settings.items()]


def mix_markdown(report: MixReport) -> str:
    parts = header(report)
    parts += ["", "## Request mix", ""] + [f"- {share}" for share in report.shares]
    parts += ["", "## Production mix (medians)", "", *mix_table(report)]
    parts += ["", "## Targets (reported, not asserted)", "", *targets_lines(mix_targets(report))]
    split = single_user_split(report)
    if split:
        parts += ["", "## One user's CPU: the kernel's and the proxy's own", "", *split]
    both = over_both_off(report)
    if both:
        title = "## Over both gateways of the Zipf row's settings (the Zipf row and its control)"
        parts += ["", title, "", *both]
    parts += ["", "## CPU µs per request in each repetition", "", *repetitions_table(report)]
    if report.notes:
        parts += ["", "## Notes", ""] + [f"- {note}" for note in report.notes]
    return "\n".join(parts) + "\n"


def repetitions_table(report: MixReport) -> list[str]:
    """Every proxy row's CPU per request, repetition by repetition: what the medians and the
    per-repetition ratios are taken from."""
    rows = [r for r in report.cases if r.ok and not r.case.direct]
    reps = max((len(r.samples) for r in rows), default=0)
    lines = [
        "| case | traffic | " + " | ".join(str(n + 1) for n in range(reps)) + " |",
        "|---|---|" + "---:|" * reps,
    ]
    for result in rows:
        cells = [fmt(sample.cpu_us_per_request, 1) for sample in result.samples]
        cells += ["-"] * (reps - len(cells))
        lines.append(f"| {result.case.label} | {result.case.body} | " + " | ".join(cells) + " |")
    return lines


@dataclass(frozen=True)
class Chunk:
    """One wrk run of the soak over fresh users."""

    first_user: int
    users: int
    reached: int  # distinct users that sent at least one request
    requests: int
    rps: float
    cpu_us_per_request: float  # the gateway's process tree, as in the mix
    errors: int
    rss_end: int
    elapsed_s: float  # since the soak began, at the chunk's end


@dataclass
class SoakReport(Report):
    chunks: list[Chunk] = field(default_factory=list)
    rss_series: list[tuple[float, int]] = field(default_factory=list)  # (seconds, bytes)
    error: str | None = None


def soak_facts(report: SoakReport) -> list[str]:
    series = report.rss_series
    if not series or not report.chunks:
        return []
    end, half = report.chunks[-1].rss_end, series[-1][0] / 2
    at_half = next(rss for t, rss in series if t >= half)
    reached = sum(chunk.reached for chunk in report.chunks)
    return [
        f"distinct users and addresses that sent requests: {reached:,}",
        f"RSS at the end: {end / MiB:.1f} MiB; highest sample: "
        f"{max(rss for _, rss in series) / MiB:.1f} MiB; first: {series[0][1] / MiB:.1f} MiB",
        f"RSS change from mid-run to the end: {(end - at_half) / at_half * 100:+.1f} % "
        f"({at_half / MiB:.1f} MiB at {half:.0f} s, {end / MiB:.1f} MiB at the end)",
    ]


def soak_targets(report: SoakReport) -> list[tuple[str, str, bool | None]]:
    series = report.rss_series
    if not series or not report.chunks:
        return [("RSS after the walk ≤ 150 MiB per worker", "-", None)]
    end = report.chunks[-1].rss_end
    last_half = [rss for t, rss in series if t >= series[-1][0] / 2]
    low, high = min(last_half), max(last_half)
    return [
        ("RSS at the end ≤ 150 MiB per worker", f"{end / MiB:.1f} MiB", end <= 150 * MiB),
        (
            "RSS flat over the last half: (max - min) ÷ min ≤ 10 %",
            f"{(high - low) / low * 100:.1f} % ({low / MiB:.1f} to {high / MiB:.1f} MiB)",
            (high - low) / low <= 0.10,
        ),
    ]


def soak_markdown(report: SoakReport) -> str:
    parts = header(report)
    if report.error:
        parts += ["", f"**Failed**: {one_line(report.error)}"]
    parts += ["", "## Chunks", ""]
    parts += [
        "| users | distinct users reached | requests | req/s | CPU µs/req | errors "
        "| RSS at end MiB | t (s) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in report.chunks:
        span = f"{c.first_user:,} to {c.first_user + c.users - 1:,}"
        parts.append(
            f"| {span} | {c.reached:,} | {c.requests:,} | {c.rps:,.0f} "
            f"| {c.cpu_us_per_request:.1f} | {c.errors} "
            f"| {c.rss_end / MiB:.1f} | {c.elapsed_s:.0f} |"
        )
    parts += ["", "## Result", ""] + [f"- {fact}" for fact in soak_facts(report)]
    parts += ["", "## Targets (reported, not asserted)", "", *targets_lines(soak_targets(report))]
    parts += ["", "## RSS over time", "", "| t (s) | RSS MiB |", "|---:|---:|"]
    parts += [f"| {t:.1f} | {rss / MiB:.1f} |" for t, rss in report.rss_series]
    if report.notes:
        parts += ["", "## Notes", ""] + [f"- {note}" for note in report.notes]
    return "\n".join(parts) + "\n"

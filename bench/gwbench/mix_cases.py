"""The production mix's cases: which gateway processes run, with which settings, under which
traffic, and how the report explains them."""

from __future__ import annotations

from pathlib import Path

from gwbench.mix_report import BASELINES
from gwbench.report import Case

IDLE_THREAD = Path(__file__).resolve().parent / "idle_thread"

GATEWAYS: dict[str, dict[str, str]] = {
    "gw-single": {},
    "gw-zipf": {},
    "gw-zipf-control": {},
    "gw-uniform": {},
    "gw-redis-single": {},
    "gw-redis-uniform": {},
    "gw-trace-0.01": {"OTEL_TRACES_SAMPLER_ARG": "0.01"},
    "gw-trace-1": {"OTEL_TRACES_SAMPLER_ARG": "1.0"},
    "gw-trace-0": {"OTEL_TRACES_SAMPLER_ARG": "0"},
    "gw-idle-thread": {"PYTHONPATH": str(IDLE_THREAD)},
}
# Run only when named (--cases): what tracing at 1 % is made of. Ratio 0 is tracing without a
# sampled request (and an export thread that never has work); the idle thread is a worker with
# tracing off and one thread that waits forever (idle_thread/sitecustomize.py).
ON_REQUEST: frozenset[str] = frozenset({"gw-trace-0", "gw-idle-thread"})


def cases(users: int) -> list[Case]:
    many = f"{users:,}" if users % 1000 else f"{users // 1000}k"
    traffic_label = {"single": "1 user", "zipf": f"{many} Zipf", "uniform": f"{many} uniform"}

    def case(key: str, label: str, kind: str, target: str, **flags: bool) -> Case:
        return Case(key, label, traffic_label[kind], target, kind, **flags)

    return [
        case("direct", "direct to upstream", "uniform", "upstream", direct=True),
        case("nginx-single", "nginx proxy_pass (reference)", "single", "nginx", reference=True),
        case("nginx-zipf", "nginx proxy_pass (reference)", "zipf", "nginx", reference=True),
        case("nginx-uniform", "nginx proxy_pass (reference)", "uniform", "nginx", reference=True),
        case("gw-single", "gateway, 1 worker", "single", "gw-single"),
        case("gw-zipf", "gateway, 1 worker", "zipf", "gw-zipf"),
        case("gw-zipf-control", "control: gateway, 1 worker again", "zipf", "gw-zipf-control"),
        case("gw-uniform", "gateway, 1 worker", "uniform", "gw-uniform"),
        case("gw-redis-single", "gateway, Redis-backed limits", "single", "gw-redis-single"),
        case("gw-redis-uniform", "gateway, Redis-backed limits", "uniform", "gw-redis-uniform"),
        case("gw-trace-0.01", "gateway, tracing 1 % sampled", "zipf", "gw-trace-0.01"),
        case("gw-trace-1", "gateway, tracing 100 % sampled", "zipf", "gw-trace-1"),
        case("gw-trace-0", "gateway, tracing 0 % sampled", "zipf", "gw-trace-0"),
        case("gw-idle-thread", "gateway, an idle thread", "zipf", "gw-idle-thread"),
    ]


def chosen(every: list[Case], keys: list[str]) -> list[Case]:
    """The cases ``keys`` name, with what each is compared with: its baseline (BASELINES, and
    that one's in turn) and the nginx row of its traffic; in the usual order. A key that names
    no case is refused, naming it."""
    known = {case.key: case for case in every}
    unknown = [key for key in keys if key not in known]
    if unknown:
        raise ValueError(f"no such case: {', '.join(unknown)} (cases: {', '.join(known)})")
    wanted: set[str] = set()
    for key in keys:
        while key and key not in wanted:
            wanted.add(key)
            case = known[key]
            if not (case.reference or case.direct):
                wanted.add(f"nginx-{case.path}")
            key = BASELINES.get(key, "")
    return [case for case in every if case.key in wanted]


def method_notes() -> list[str]:
    return [
        "CPU µs/req = CPU time (user+system, /proc) of the proxy's process tree during the run "
        "÷ requests; nginx CPU µs/req is the nginx proxy_pass row of the same traffic. "
        "x baseline CPU compares with the case named in brackets, measured in this same run.",
        "Each gateway row is its own gateway process (same settings, caches never shared), all "
        "started at once and idle while another case runs; RSS at end = that process tree's "
        "RSS after its last run. Every run continues its case's request sequence where the "
        "last one stopped (262,144 requests, then it wraps); the warm-up sends it once, so "
        "each case is measured after every user's first request (what a first request costs: "
        "bench/instructions.py --users). wrk CPU includes loading the "
        "users and the sequence at its start (about 0.5 CPU-seconds for 100,000 users).",
        "Tracing rows run the Zipf traffic with OTEL_EXPORTER_OTLP_ENDPOINT at the bench's "
        "OTLP/HTTP sink (core 1, counted with the load side); 'tracing off' is the gateway "
        "Zipf row.",
        "The control row is a second gateway process with the Zipf row's settings and traffic: "
        "its ratio to the Zipf row is what the method reads where there is no difference. "
        "x baseline CPU gives, in square brackets, the quartiles of the per-repetition ratios "
        "(each repetition over its own baseline run).",
        "Redis-backed rows: REDIS_URL at the private redis-server on core 1 (limits, response "
        "cache, revocation checks in Redis); its CPU counts with the load side.",
    ]

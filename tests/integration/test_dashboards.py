"""The shipped Grafana dashboard and Prometheus alert rules: valid for promtool, and every metric
they name is one a running gateway exports; a real Prometheus scrapes the gateway.

promtool and prometheus come from Debian's ``prometheus`` package (``make test`` installs it
when run as root); without them these tests skip, saying so.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.gateway import Fleet, GatewayProcess, running_gateway
from support.metrics import metrics_address, metrics_text, sample_names, samples
from support.ports import closed_port_url, free_port
from support.tokens import mint

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "deploy" / "grafana" / "api-gateway.json"
ALERTS = REPO / "deploy" / "prometheus" / "alerts.yml"
MISSING = "not installed: Debian's prometheus package (as root, `make test` installs it)"
PROMTOOL = shutil.which("promtool")
PROMETHEUS = shutil.which("prometheus")
TOOL_TIMEOUT_S = 60.0
SCRAPE_WAIT_S = 60.0
POLL_S = 0.5
STOP_TIMEOUT_S = 10.0
WORKERS = 2
TOKEN = mint()

# What PromQL itself names: keywords, and (followed by "(") functions and aggregations.
PROMQL_WORDS = frozenset(
    {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
     "bool", "offset", "inf", "nan"}
)  # fmt: skip
IDENTIFIER = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def metric_names(expression: str) -> set[str]:
    """The metric names a PromQL expression selects: what is left once strings, label
    matchers, ranges, grouping clauses, functions, keywords and numbers are taken out."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expression)
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\$\{?\w+\}?", " ", text)  # Grafana variables
    names = set()
    for match in IDENTIFIER.finditer(text):
        word, rest = match.group(), text[match.end() :].lstrip()
        if rest.startswith("(") or word.lower() in PROMQL_WORDS:
            continue
        if text[max(match.start() - 1, 0)].isdigit():
            continue  # the exponent of a number such as 1e3
        names.add(word)
    return names


def dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "expr" and isinstance(value, str):
                    found.append(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(dashboard["panels"])
    for variable in dashboard["templating"]["list"]:
        query = variable.get("query")
        if isinstance(query, dict):
            query = query.get("query")
        if variable["type"] == "query" and isinstance(query, str):
            # label_values(<metric>, <label>): the metric is what must exist.
            found.append(query.removeprefix("label_values(").split(",")[0])
    return found


def rule_expressions() -> list[str]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


def named_metrics() -> set[str]:
    names: set[str] = set()
    for expression in dashboard_expressions() + rule_expressions():
        names |= metric_names(expression)
    return names


def test_the_expression_parser_finds_metrics_not_functions_labels_or_variables() -> None:
    expression = (
        "histogram_quantile(0.99, sum by (le, route) (rate(gateway_request_duration_seconds_"
        'bucket{job=~"$job",code!="5xx"}[$__rate_interval]))) > 1e3 and on (job) '
        "max(gateway_circuit_open offset 5m) > bool 0"
    )
    assert metric_names(expression) == {
        "gateway_request_duration_seconds_bucket",
        "gateway_circuit_open",
    }


@pytest.fixture(scope="module")
def promtool() -> str:
    if PROMTOOL is None:
        pytest.skip(f"promtool {MISSING}")
    return PROMTOOL


def test_the_alert_rules_pass_promtool(promtool: str) -> None:
    result = subprocess.run(
        [promtool, "check", "rules", str(ALERTS)],
        capture_output=True,
        text=True,
        timeout=TOOL_TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    alerts = {rule["alert"] for group in yaml.safe_load(ALERTS.read_text())["groups"]
              for rule in group["rules"]}  # fmt: skip
    assert {
        "GatewayHighErrorRatio",
        "GatewayHighLatencyP99",
        "GatewayCircuitOpen",
        "GatewayRateLimiterDegraded",
        "GatewayUpstreamInstanceEjected",
        "GatewayConfigReloadFailed",
    } <= alerts
    for group in yaml.safe_load(ALERTS.read_text())["groups"]:
        for rule in group["rules"]:
            assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
            assert rule["annotations"]["summary"] and rule["annotations"]["description"]


@pytest.fixture(scope="module")
def fleet_gateway(service_fleet: Fleet, module_dir: Path) -> Iterator[GatewayProcess]:
    """Two workers; the search service refuses connections (a 502)."""
    urls = service_fleet.urls() | {"search": closed_port_url()}
    args = ["--workers", str(WORKERS)]
    with running_gateway(module_dir, urls, extra_args=args) as gateway:
        yield gateway


def send_traffic(gateway: GatewayProcess) -> None:
    for _ in range(10):  # a fresh connection each: the kernel spreads them over the workers
        assert gateway.get("/api/v1/tickets/1", token=TOKEN).status == 200
    assert gateway.get("/api/v1/search/q?q=x", token=TOKEN).status == 502
    assert gateway.get("/no/such/route").status == 404


def test_every_metric_the_dashboard_and_the_rules_name_is_exported(
    fleet_gateway: GatewayProcess, promtool: str
) -> None:
    send_traffic(fleet_gateway)
    wanted = named_metrics()
    assert len(wanted) >= 15, wanted  # the parse found the expressions
    deadline = time.monotonic() + SCRAPE_WAIT_S
    while True:  # the other worker's counts arrive with its next snapshot (once a second)
        text = metrics_text(fleet_gateway)
        missing = wanted - sample_names(text)
        codes = " ".join(samples(text, "gateway_requests_total"))
        seen = 'code="502",status_class="5xx"' in codes and 'code="404"' in codes
        workers = set(samples(text, "process_cpu_seconds_total"))
        if (not missing and seen and len(workers) == WORKERS) or time.monotonic() > deadline:
            break
        time.sleep(POLL_S)
    assert not missing, f"named by the dashboard or the alert rules, not exported: {missing}"
    assert seen, codes
    assert workers == {'{worker="0"}', '{worker="1"}'}
    assert len(samples(text, "process_resident_memory_bytes")) == WORKERS
    build = samples(text, "gateway_build_info")
    assert build and set(build.values()) == {1.0}
    assert 'le="0.00025"' in text

    result = subprocess.run(
        [promtool, "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=TOOL_TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def prometheus_api(port: int, path: str, **query: str) -> Any:
    url = f"http://127.0.0.1:{port}/api/v1/{path}"
    if query:
        url += "?" + urllib.parse.urlencode(query)
    with urllib.request.urlopen(url, timeout=5) as answer:
        return json.load(answer)


def test_a_real_prometheus_scrapes_the_gateway(
    fleet_gateway: GatewayProcess, tmp_path: Path
) -> None:
    if PROMETHEUS is None:
        pytest.skip(f"prometheus {MISSING}")
    host, port, path = metrics_address(fleet_gateway)
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(ALERTS)],
        "scrape_configs": [
            {
                "job_name": "api-gateway",
                "metrics_path": path,
                "static_configs": [{"targets": [f"{host}:{port}"]}],
            }
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    web_port = free_port()
    log = (tmp_path / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{web_port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        send_traffic(fleet_gateway)
        target: dict[str, Any] = {}
        series: list[Any] = []
        rules: list[Any] = []
        deadline = time.monotonic() + SCRAPE_WAIT_S
        while time.monotonic() < deadline and process.poll() is None:
            try:
                targets = prometheus_api(web_port, "targets")["data"]["activeTargets"]
                target = targets[0] if targets else {}
                if target.get("health") == "up":
                    query = 'gateway_requests_total{job="api-gateway"}'
                    series = prometheus_api(web_port, "query", query=query)["data"]["result"]
                    rules = prometheus_api(web_port, "rules")["data"]["groups"]
                    evaluated = [rule["health"] for g in rules for rule in g["rules"]]
                    if series and evaluated and "unknown" not in evaluated:
                        break
            except OSError:
                pass  # not listening yet
            time.sleep(POLL_S)
    finally:
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_TIMEOUT_S)
        log.close()
    output = (tmp_path / "prometheus.log").read_text(errors="replace")[-3000:]
    assert target.get("health") == "up", (target, output)
    assert series, output
    assert {s["metric"]["route"] for s in series} >= {"/api/v1/tickets", "unmatched"}
    assert [group["name"] for group in rules] == ["api-gateway"]
    # Every rule evaluated against the gateway's series without an error.
    assert {rule["health"] for rule in rules[0]["rules"]} == {"ok"}, rules

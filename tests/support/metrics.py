"""Scraping a running gateway's Prometheus metrics: the one place that knows where they are
served (the admin listener's ``/metrics``), and what a scrape's lines say."""

from __future__ import annotations

import re

from support.gateway import GatewayProcess

METRICS_PATH = "/metrics"
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$")


def metrics_address(gateway: GatewayProcess) -> tuple[str, int, str]:
    """Where a scraper finds the gateway's metrics: host, port and path."""
    return "127.0.0.1", gateway.admin_port, METRICS_PATH


def metrics_text(gateway: GatewayProcess) -> str:
    """One scrape, in the Prometheus text format."""
    response = gateway.admin_get(METRICS_PATH)
    assert response.status == 200, response.body[:500]
    assert (response.header("content-type") or "").startswith("text/plain; version=0.0.4")
    return response.body.decode()


def value(text: str, series: str) -> float:
    """The sample of one series (name and labels exactly as rendered); 0 when absent."""
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def sample_names(text: str) -> set[str]:
    """Every sample name a scrape holds (a histogram's ``_bucket``, ``_sum``, ``_count``)."""
    names = set()
    for line in text.splitlines():
        match = SAMPLE.match(line)
        if match:
            names.add(match.group(1))
    return names


def samples(text: str, name: str) -> dict[str, float]:
    """Every series of one sample name: its labels as rendered (``{...}`` or "") -> value."""
    found = {}
    for line in text.splitlines():
        match = SAMPLE.match(line)
        if match and match.group(1) == name:
            found[match.group(2) or ""] = float(match.group(3))
    return found

"""Observability settings: access-log sampling and OpenTelemetry tracing.

Tracing is on only when an OTLP endpoint is configured (``OTEL_EXPORTER_OTLP_ENDPOINT`` or
``observability.otlp_endpoint``); otherwise no span is ever created.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from api_gateway.config.sections import Section
from api_gateway.config.settings import ConfigError

# The standard OpenTelemetry variables this gateway reads, and the keys they set.
ENVIRONMENT = {
    "OTEL_EXPORTER_OTLP_ENDPOINT": "otlp_endpoint",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "otlp_traces_endpoint",
    "OTEL_TRACES_SAMPLER_ARG": "traces_sample_ratio",
    "OTEL_SERVICE_NAME": "service_name",
    "ACCESS_LOG_SAMPLE_RATE": "access_log_sample_rate",
}


@dataclass(frozen=True, slots=True)
class ObservabilityConfig:
    access_log_sample_rate: float  # share of requests logged; 5xx answers are always logged
    traces_sample_ratio: float  # root spans kept; a client's sampled flag decides otherwise
    service_name: str
    traces_endpoint: str | None  # where spans are posted (OTLP/HTTP); None: tracing off

    @property
    def tracing(self) -> bool:
        return self.traces_endpoint is not None


def apply_observability_environment(document: dict[str, Any], env: Mapping[str, str]) -> None:
    section = document.setdefault("observability", {})
    if not isinstance(section, dict):
        raise ConfigError("observability", "must be a mapping")
    for variable, key in ENVIRONMENT.items():
        if env.get(variable):
            section[key] = env[variable]


def build_observability(s: Section) -> ObservabilityConfig:
    endpoint = s.raw("otlp_endpoint", None)
    traces = s.raw("otlp_traces_endpoint", None)
    if traces is None and endpoint is not None:
        traces = s.text("otlp_endpoint").rstrip("/") + "/v1/traces"
    for key, url in (("otlp_endpoint", endpoint), ("otlp_traces_endpoint", traces)):
        if url is not None and not str(url).startswith(("http://", "https://")):
            raise ConfigError(s.key(key), f"must be an http:// or https:// URL, got {url!r}")
    config = ObservabilityConfig(
        access_log_sample_rate=_ratio(s, "access_log_sample_rate"),
        traces_sample_ratio=_ratio(s, "traces_sample_ratio"),
        service_name=s.text("service_name"),
        traces_endpoint=None if traces is None else str(traces),
    )
    s.done()
    return config


def _ratio(s: Section, name: str) -> float:
    value = s.raw(name)
    try:
        ratio = float(value) if isinstance(value, str | int | float) else None
    except ValueError:
        ratio = None
    if isinstance(value, bool) or ratio is None or not 0.0 <= ratio <= 1.0:
        raise ConfigError(s.key(name), f"must be a number from 0 to 1, got {value!r}")
    return ratio

"""The service map: instances, deadline and resilience settings of every backend service.

The top-level ``circuit_breaker``, ``retry``, ``load_balancer``, ``outlier_detection`` and
``health_check`` sections are defaults; a service's own section of the same name overrides
single keys of them, and a bad override is named by its own dotted key.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import urlsplit

from api_gateway.config.sections import Section, split_list
from api_gateway.config.settings import (
    BalancerConfig,
    BreakerConfig,
    ConfigError,
    DiscoveryConfig,
    HealthCheckConfig,
    Instance,
    OutlierConfig,
    RetryConfig,
    ServiceConfig,
)

STRATEGIES = ("round_robin", "least_connections", "random", "consistent_hash")
HASH_SOURCES = ("header", "cookie")
T = TypeVar("T")


def build_breaker(s: Section) -> BreakerConfig:
    return BreakerConfig(
        error_threshold_pct=s.percent("error_threshold_pct", 1),
        reset_timeout_ms=s.integer("reset_timeout_ms", 1),
        volume_threshold=s.integer("volume_threshold", 1),
        window_ms=s.integer("window_ms", 10),
        half_open_probes=s.integer("half_open_probes", 1),
        failure_statuses=failure_statuses(s),
    )


def failure_statuses(s: Section) -> frozenset[int]:
    listed = s.raw("failure_statuses", [502, 503, 504])
    if not isinstance(listed, list) or not all(
        isinstance(code, int) and not isinstance(code, bool) and 500 <= code <= 599
        for code in listed
    ):
        raise ConfigError(s.key("failure_statuses"), "must list 5xx status codes")
    return frozenset(listed)


def build_retry(s: Section) -> RetryConfig:
    per_try = s.raw("per_try_timeout_ms", None)
    return RetryConfig(
        attempts=s.integer("attempts", 1),
        base_ms=s.integer("base_ms", 1),
        max_backoff_ms=s.integer("max_backoff_ms", 1),
        per_try_timeout_ms=None if per_try is None else s.integer("per_try_timeout_ms", 1),
        budget_pct=s.percent("budget_pct"),
        budget_min_concurrent=s.integer("budget_min_concurrent", 0),
    )


def build_balancer(s: Section) -> BalancerConfig:
    strategy = s.text("strategy")
    if strategy not in STRATEGIES:
        raise ConfigError(s.key("strategy"), f"must be one of {', '.join(STRATEGIES)}")
    hash_key = s.text("hash_key")
    source, _, name = hash_key.partition(":")
    if hash_key != "user" and (source not in HASH_SOURCES or not name):
        raise ConfigError(s.key("hash_key"), "must be user, header:<name> or cookie:<name>")
    return BalancerConfig(strategy, hash_key)


def build_outlier(s: Section) -> OutlierConfig:
    return OutlierConfig(
        consecutive_failures=s.integer("consecutive_failures", 1),
        base_ejection_ms=s.integer("base_ejection_ms", 1),
        max_ejection_pct=s.percent("max_ejection_pct"),
    )


def build_health_check(s: Section) -> HealthCheckConfig:
    path = s.text("path")
    if not path.startswith("/"):
        raise ConfigError(s.key("path"), f"must start with '/', got {path!r}")
    return HealthCheckConfig(
        enabled=s.flag("enabled"),
        path=path,
        interval_ms=s.integer("interval_ms", 100),
        timeout_ms=s.integer("timeout_ms", 1),
        healthy_threshold=s.integer("healthy_threshold", 1),
        unhealthy_threshold=s.integer("unhealthy_threshold", 1),
    )


def build_discovery(s: Section) -> DiscoveryConfig:
    config = DiscoveryConfig(
        registry=s.flag("registry"),
        cache_ttl_ms=s.integer("cache_ttl_ms", 100),
        key_prefix=s.text("key_prefix"),
    )
    s.done()
    return config


def build_services(
    s: Section, defaults: Mapping[str, Mapping[str, Any]], default_timeout_ms: int
) -> dict[str, ServiceConfig]:
    return {
        str(name): build_service(s.section(str(name)), defaults, default_timeout_ms)
        for name in s.data
    }


def build_service(
    entry: Section, defaults: Mapping[str, Mapping[str, Any]], default_timeout_ms: int
) -> ServiceConfig:
    name = entry.path.rpartition(".")[2]
    variable = f"{name.upper()}_SERVICE_URL"
    urls = split_list(entry.text("url"))
    instances = tuple(parse_instance(url, f"{entry.key('url')} ({variable})") for url in urls)
    if not instances:
        raise ConfigError(entry.key("url"), "needs at least one URL")

    def section(key: str, builder: Callable[[Section], T]) -> T:
        return _overridden(entry, key, defaults[key], builder)

    config = ServiceConfig(
        name=name,
        instances=instances,
        timeout_ms=entry.integer("timeout_ms", 1, default_timeout_ms),
        circuit_breaker=section("circuit_breaker", build_breaker),
        retry=section("retry", build_retry),
        load_balancer=section("load_balancer", build_balancer),
        outlier=section("outlier_detection", build_outlier),
        health_check=section("health_check", build_health_check),
    )
    entry.done()
    return config


def _overridden(
    entry: Section, key: str, default: Mapping[str, Any], builder: Callable[[Section], T]
) -> T:
    """Build one resilience section from the defaults with the service's own keys on top."""
    override = entry.raw(key, {})
    if not isinstance(override, Mapping):
        raise ConfigError(entry.key(key), "must be a mapping")
    unknown = sorted(set(override) - set(default))
    if unknown:
        raise ConfigError(f"{entry.key(key)}.{unknown[0]}", "unknown setting")
    # The defaults were checked on their own: whatever is wrong here is the service's override.
    return builder(Section({**default, **override}, entry.key(key)))


def resilience_defaults(root: Section) -> dict[str, Mapping[str, Any]]:
    """The top-level resilience sections, each checked on its own so a bad key is named there."""
    defaults: dict[str, Mapping[str, Any]] = {}
    for key, builder in BUILDERS.items():
        section = root.section(key)
        builder(section)
        section.done()
        defaults[key] = section.data
    return defaults


def parse_instance(url: str, key: str) -> Instance:
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ConfigError(key, f"must be an http://host:port URL, got {url!r}")
    if parts.path not in ("", "/") or parts.query or parts.username:
        raise ConfigError(key, f"must not carry a path, query or credentials: {url!r}")
    try:
        port = 80 if parts.port is None else parts.port
    except ValueError as exc:
        raise ConfigError(key, f"has an invalid port: {url!r}") from exc
    if port == 0:
        raise ConfigError(key, f"has an invalid port: {url!r}")
    return Instance(parts.hostname, port)


BUILDERS: dict[str, Callable[[Section], object]] = {
    "circuit_breaker": build_breaker,
    "retry": build_retry,
    "load_balancer": build_balancer,
    "outlier_detection": build_outlier,
    "health_check": build_health_check,
}

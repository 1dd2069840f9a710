"""Defaults, then a YAML file, then environment variables; then strict validation.

Every rejection names the key (dotted path or environment variable) so a bad config never starts
and its author knows where to look.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

import yaml

from api_gateway.config.admin import apply_admin_environment, build_admin, build_readiness
from api_gateway.config.aggregates import build_aggregates
from api_gateway.config.aliases import build_alias, is_alias
from api_gateway.config.auth import (
    apply_auth_environment,
    build_api_keys,
    build_jwt,
    route_auth,
)
from api_gateway.config.cache import build_cache, build_route_cache
from api_gateway.config.cors import cors_origin
from api_gateway.config.endpoint_validation import build_endpoint_validation
from api_gateway.config.idempotency import build_idempotency, idempotency_mode
from api_gateway.config.internal_auth import (
    apply_internal_auth_environment,
    build_internal_auth,
)
from api_gateway.config.limits import build_limits, exempt_paths, template_of
from api_gateway.config.observability import apply_observability_environment, build_observability
from api_gateway.config.sections import Section, split_list
from api_gateway.config.security import HEADER_NAME, build_security_headers
from api_gateway.config.services import build_discovery, build_services, resilience_defaults
from api_gateway.config.settings import (
    ConfigError,
    EndpointConfig,
    GatewayConfig,
    LimitConfig,
    Network,
    OverloadConfig,
    ResponseHeadersConfig,
    RouteConfig,
    RouteLimitConfig,
    ServerConfig,
    ServiceConfig,
    UpstreamConfig,
)
from api_gateway.config.tenancy import build_tenancy
from api_gateway.config.validation import build_validation
from api_gateway.config.webhooks import apply_webhooks_environment, build_webhooks
from api_gateway.path_templates import is_template, template_error

LOG_LEVELS = ("trace", "debug", "info", "warn", "warning", "error", "fatal", "silent")
SECRET_VARIABLES = (
    "JWT_SECRET",
    "JWT_ACCESS_SECRET",
    "JWT_REFRESH_SECRET",
    "JWT_PUBLIC_KEY",
    "API_KEY_PEPPER",
    "REDIS_URL",
    "STRIPE_WEBHOOK_SECRET",
    "INTERNAL_HMAC_SECRET",
    "INTERNAL_SERVICE_SECRET",
    "ADMIN_TOKEN",
)
HTTP_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"},
)


def default_document() -> dict[str, Any]:
    text = resources.files("api_gateway.config").joinpath("defaults.yaml").read_text()
    document: dict[str, Any] = yaml.safe_load(text)
    return document


def load(path: str | None = None, env: Mapping[str, str] | None = None) -> GatewayConfig:
    document = default_document()
    if path:
        merge(document, read_yaml(path), "")
    apply_environment(document, with_secret_files(os.environ if env is None else env))
    return build(document)


def read_yaml(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except OSError as exc:
        raise ConfigError("--config", f"cannot read {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError("--config", f"{path} is not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError("--config", f"{path} must hold a mapping at the top level")
    return data


def merge(base: dict[str, Any], override: Mapping[str, Any], prefix: str) -> None:
    """Deep-merge mappings; lists and scalars replace. Unknown keys are caught by ``build``."""
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            merge(base[key], value, f"{prefix}{key}.")
        else:
            base[key] = value


def with_secret_files(env: Mapping[str, str]) -> Mapping[str, str]:
    """``<NAME>_FILE`` holds a secret's value in a file (the container-secrets convention)."""
    expanded = dict(env)
    for variable in SECRET_VARIABLES:
        path = env.get(variable + "_FILE")
        if not path:
            continue
        key = variable + "_FILE"
        if env.get(variable):
            raise ConfigError(key, f"set {variable} or {key}, not both")
        try:
            with open(path, encoding="utf-8") as handle:
                expanded[variable] = handle.read().rstrip("\r\n")
        except OSError as exc:
            raise ConfigError(key, f"cannot read {path}: {exc.strerror}") from exc
    return expanded


def apply_environment(document: dict[str, Any], env: Mapping[str, str]) -> None:
    for section in ("server", "jwt", "redis", "rate_limit", "services"):
        if not isinstance(document.get(section), dict):
            raise ConfigError(section, "must be a mapping")
    if not isinstance(document["rate_limit"].get("global"), dict):
        raise ConfigError("rate_limit.global", "must be a mapping")
    server = document["server"]
    simple = {
        "HOST": (server, "host"),
        "PORT": (server, "port"),
        "GATEWAY_WORKERS": (server, "workers"),
        "LOG_LEVEL": (document, "log_level"),
    }
    for variable, (section, key) in simple.items():
        if env.get(variable):
            section[key] = env[variable]
    if env.get("REDIS_URL"):
        document["redis"]["url"] = env["REDIS_URL"]
    if env.get("REDIS_CLUSTER"):
        document["redis"]["cluster"] = env["REDIS_CLUSTER"]
    apply_auth_environment(document, env)
    if "TRUSTED_PROXIES" in env:
        server["trusted_proxies"] = split_list(env["TRUSTED_PROXIES"])
    if "ADMIN_ALLOW" in env:
        document.setdefault("admin", {})["allow"] = split_list(env["ADMIN_ALLOW"])
    if "CORS_ORIGINS" in env:
        document["cors_origins"] = split_list(env["CORS_ORIGINS"])
    elif "ALLOWED_ORIGINS" in env:  # the original gateway's name for the same list
        document["cors_origins"] = split_list(env["ALLOWED_ORIGINS"])
    if env.get("CORS_CREDENTIALS"):
        document["cors_credentials"] = env["CORS_CREDENTIALS"]
    for name, prefix in (("global", "RATE_LIMIT_"), ("user", "RATE_LIMIT_USER_")):
        limit = document["rate_limit"].get(name)
        for key in ("max", "window_ms"):
            variable = prefix + key.upper()
            if env.get(variable):
                if not isinstance(limit, dict):
                    raise ConfigError(f"rate_limit.{name}", "must be a mapping")
                limit[key] = env[variable]
    if env.get("RATE_LIMIT_IPV6_PREFIX"):
        document["rate_limit"]["ipv6_prefix"] = env["RATE_LIMIT_IPV6_PREFIX"]
    for name, service in document["services"].items():
        variable = f"{name.upper()}_SERVICE_URL"
        if env.get(variable):
            if not isinstance(service, dict):
                raise ConfigError(f"services.{name}", "must be a mapping")
            service["url"] = env[variable]
    apply_observability_environment(document, env)
    apply_webhooks_environment(document, env)
    apply_internal_auth_environment(document, env)
    apply_admin_environment(document, env)


def build(document: Mapping[str, Any]) -> GatewayConfig:
    root = Section(document, "")
    server = build_server(root.section("server"))
    log_level = root.text("log_level").lower()
    if log_level not in LOG_LEVELS:
        raise ConfigError("log_level", f"must be one of {', '.join(LOG_LEVELS)}")
    cors = tuple(cors_origin(o, "cors_origins") for o in root.texts("cors_origins"))
    cors_credentials = root.flag("cors_credentials")
    if "*" in cors and cors_credentials:
        raise ConfigError(
            "cors_origins",
            "'*' cannot allow credentials: list the origins or set cors_credentials: false",
        )
    redis = root.section("redis")
    redis_url = redis.raw("url")
    if redis_url is not None:
        redis_url = redis.text("url")
        scheme = urlsplit(redis_url).scheme
        if scheme not in ("redis", "rediss", "unix", "redis+cluster", "rediss+cluster"):
            raise ConfigError("redis.url", f"must be a redis:// URL, got {redis_url!r}")
    redis_cluster = redis.flag("cluster")
    redis_timeout_ms = redis.integer("timeout_ms", 1)
    if redis_url is not None and (redis_cluster or "+cluster:" in redis_url):
        from api_gateway.stores.slots import ClusterTarget  # stores import config: not at the top

        try:
            ClusterTarget.parse(redis_url)
        except ValueError as exc:
            raise ConfigError("redis.url", str(exc)) from None
    redis.done()
    limits = root.section("rate_limit")
    ipv6_prefix = limits.integer("ipv6_prefix", 1, 64)
    if ipv6_prefix > 128:
        raise ConfigError("rate_limit.ipv6_prefix", f"must be at most 128, got {ipv6_prefix}")
    rate_limits = {
        name: build_limit(limits.section(name)) for name in limits.data if name != "ipv6_prefix"
    }
    limits.seen.update(limits.data)
    admin = root.section("admin")
    admin_allow = tuple(parse_cidr(c, "admin.allow") for c in admin.texts("allow"))
    admin_config = build_admin(admin, admin_allow)
    admin.done()
    timeouts = root.section("timeouts")
    default_timeout_ms = timeouts.integer("default_ms", 1)
    timeouts.done()
    defaults = resilience_defaults(root)
    services = build_services(root.section("services"), defaults, default_timeout_ms)
    routes = build_routes(root.section("routes"), services, server.max_body_bytes, rate_limits)
    config = GatewayConfig(
        server=server,
        log_level=log_level,
        cors_origins=cors,
        cors_credentials=cors_credentials,
        cors_max_age_s=root.integer("cors_max_age_s", 0),
        security_headers=build_security_headers(root.section("security_headers")),
        redis_url=redis_url,
        jwt=build_jwt(root.section("jwt")),
        rate_limits=rate_limits,
        default_timeout_ms=default_timeout_ms,
        upstream=build_upstream(root.section("upstream")),
        discovery=build_discovery(root.section("discovery")),
        overload=build_overload(root.section("overload")),
        services=services,
        routes=routes,
        redis_cluster=redis_cluster,
        redis_timeout_ms=redis_timeout_ms,
        tenancy=build_tenancy(root.section("tenancy")),
        cache=build_cache(root.section("cache")),
        observability=build_observability(root.section("observability")),
        aggregates=build_aggregates(root.section("aggregates"), services, default_timeout_ms),
        rate_limit_ipv6_prefix=ipv6_prefix,
        response_headers=build_response_headers(root.section("response_headers")),
        admin_allow=admin_allow,
        admin=admin_config,
        readiness_require=build_readiness(root.section("readiness"))
        if "readiness" in root.data
        else (),
        api_keys=build_api_keys(root.section("api_keys")),
        stripe_webhooks=build_webhooks(
            root.section("webhooks") if "webhooks" in root.data else None,
            [route.prefix for route in routes],
        ),
        idempotency=build_idempotency(root.section("idempotency")),
        internal_auth=build_internal_auth(
            root.section("internal_auth") if "internal_auth" in root.data else None
        ),
    )
    root.done()
    return config


def build_server(s: Section) -> ServerConfig:
    host = s.text("host")
    config = ServerConfig(
        host=host,
        port=s.integer("port", 0),
        workers=s.integer("workers", 1),
        keep_alive_timeout_ms=s.integer("keep_alive_timeout_ms", 1),
        header_timeout_ms=s.integer("header_timeout_ms", 1),
        body_timeout_ms=s.integer("body_timeout_ms", 1),
        max_header_bytes=s.integer("max_header_bytes", 1024),
        max_header_count=s.integer("max_header_count", 8),
        max_uri_bytes=s.integer("max_uri_bytes", 64),
        max_body_bytes=s.integer("max_body_bytes", 0),
        trusted_proxies=tuple(parse_cidr(c) for c in s.texts("trusted_proxies")),
        shutdown_grace_ms=s.integer("shutdown_grace_ms", 0),
        access_log=s.flag("access_log"),
        min_body_rate_bytes_per_s=s.integer("min_body_rate_bytes_per_s", 0),
        body_rate_window_ms=s.integer("body_rate_window_ms", 100),
        max_bodies_per_client=s.integer("max_bodies_per_client", 1),
        max_websockets=s.integer("max_websockets", 0, 10_000),
        public_metrics=s.flag("public_metrics", False),
    )
    if config.port > 65535:
        raise ConfigError("server.port", f"must be at most 65535, got {config.port}")
    s.done()
    return config


def parse_cidr(text: str, key: str = "server.trusted_proxies") -> Network:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError as exc:
        raise ConfigError(key, f"{text!r} is not a CIDR") from exc


def build_limit(s: Section) -> LimitConfig:
    config = LimitConfig(
        s.integer("max", 1), s.integer("window_ms", 1), s.integer("block_ms", 0, 0)
    )
    s.done()
    return config


def build_upstream(s: Section) -> UpstreamConfig:
    config = UpstreamConfig(
        connect_timeout_ms=s.integer("connect_timeout_ms", 1),
        max_idle_per_instance=s.integer("max_idle_per_instance", 0),
        idle_timeout_ms=s.integer("idle_timeout_ms", 1),
        max_response_header_bytes=s.integer("max_response_header_bytes", 1024),
        max_response_header_count=s.integer("max_response_header_count", 1),
    )
    s.done()
    return config


def build_response_headers(s: Section) -> ResponseHeadersConfig:
    """``drop``: exact names, and ``prefix*`` for every name that starts with ``prefix``."""
    names, prefixes = set[bytes](), list[bytes]()
    for entry in s.texts("drop"):
        name = entry.strip().lower()
        stem = name.removesuffix("*")
        if "*" in stem or not HEADER_NAME.fullmatch(stem):
            raise ConfigError(s.key("drop"), f"{entry!r} is not a header name or 'prefix*'")
        if stem == name:
            names.add(name.encode())
        else:
            prefixes.append(stem.encode())
    s.done()
    return ResponseHeadersConfig(frozenset(names), tuple(prefixes))


def build_routes(
    s: Section,
    services: Mapping[str, ServiceConfig],
    default_max_body: int,
    rate_limits: Mapping[str, LimitConfig],
) -> tuple[RouteConfig, ...]:
    routes: list[RouteConfig | tuple[str, Section]] = []
    for prefix in s.data:
        key = s.key(str(prefix))
        if not isinstance(prefix, str) or not is_clean_path(prefix) or prefix == "/":
            raise ConfigError(key, "a route prefix must look like /name")
        entry = s.section(prefix)
        if is_alias(entry):
            routes.append((prefix, entry))  # built below, once the route it names is
            continue
        service = entry.text("service")
        if service not in services:
            raise ConfigError(entry.key("service"), f"unknown service {service!r}")
        public = entry.texts("public", [])
        for path in public:
            if not (path == "/*" or is_clean_path(path.removesuffix("/*"))):
                raise ConfigError(entry.key("public"), f"{path!r} is not a clean path")
        methods = entry.raw("methods", None)
        validation = (
            None
            if entry.raw("validation", None) is None
            else build_validation(entry.section("validation"))
        )
        json_body = validation is not None and validation.json_body
        routes.append(
            RouteConfig(
                prefix=prefix,
                service=service,
                public=public,
                methods=None if methods is None else parse_methods(entry, "methods"),
                max_body_bytes=entry.integer("max_body_bytes", 0, default_max_body),
                timeout_ms=None
                if entry.raw("timeout_ms", None) is None
                else entry.integer("timeout_ms", 1),
                endpoints=tuple(
                    build_endpoint(
                        Section(e, f"{entry.key('endpoints')}[{i}]"), prefix, rate_limits, json_body
                    )
                    for i, e in enumerate(entry.raw("endpoints", []))
                ),
                idempotency_key_retries=entry.flag("idempotency_key_retries", False),
                fail_closed=entry.flag("fail_closed", False),
                validation=validation,
                cache=build_route_cache(entry),
                auth=route_auth(entry),
                websocket=entry.flag("websocket", True),
                websocket_idle_timeout_ms=entry.integer("websocket_idle_timeout_ms", 1000, 600_000),
                websocket_max_per_user=entry.integer("websocket_max_per_user", 1, 20),
                stream_idle_timeout_ms=None
                if entry.raw("stream_idle_timeout_ms", None) is None
                else entry.integer("stream_idle_timeout_ms", 100),
                idempotency=idempotency_mode(entry, "off") or "off",
                limits=build_limits(entry, prefix, rate_limits, json_body),
                global_limit=entry.flag("global", True),
                exempt=exempt_paths(entry, public),
            )
        )
        entry.done()
    named = {route.prefix: route for route in routes if isinstance(route, RouteConfig)}
    return tuple(r if isinstance(r, RouteConfig) else build_alias(*r, named) for r in routes)


def build_endpoint(
    s: Section, prefix: str, rate_limits: Mapping[str, LimitConfig], json_body: bool = False
) -> EndpointConfig:
    path = s.text("path")
    if path != "/" and not is_clean_path(path):  # "/": the route's prefix itself
        raise ConfigError(s.key("path"), f"{path!r} is not a clean path")
    if is_template(path) and (complaint := template_error(path)) is not None:
        raise ConfigError(s.key("path"), complaint)
    template = template_of(path, s.key("path"))
    rate_limit = s.raw("rate_limit", None)
    # A body schema reads the JSON body as well, so ``body:`` keys may use it.
    checks = s.raw("validation", None)
    json_body = json_body or (isinstance(checks, Mapping) and checks.get("body") is not None)
    limits = build_limits(s, prefix + path, rate_limits, json_body, template)
    if rate_limit is not None:
        if rate_limit not in rate_limits:
            raise ConfigError(s.key("rate_limit"), f"unknown rate limit {rate_limit!r}")
        # What it has always meant: that limit, per user (per address when anonymous).
        legacy = RouteLimitConfig(rate_limit, rate_limits[rate_limit], ("user_or_ip",))
        limits = (legacy, *limits)
    timeout = s.raw("timeout_ms", None)
    config = EndpointConfig(
        path=path,
        methods=parse_methods(s, "methods"),
        timeout_ms=None if timeout is None else s.integer("timeout_ms", 1),
        rate_limit=rate_limit,
        idempotency_key_retries=None
        if s.raw("idempotency_key_retries", None) is None
        else s.flag("idempotency_key_retries"),
        validation=None
        if s.raw("validation", None) is None
        else build_endpoint_validation(s.section("validation"), path),
        idempotency=idempotency_mode(s, None),
        limits=limits,
        global_limit=None if s.raw("global", None) is None else s.flag("global"),
    )
    s.done()
    return config


def parse_methods(s: Section, name: str) -> frozenset[str]:
    methods = frozenset(m.upper() for m in s.texts(name))
    unknown = methods - HTTP_METHODS
    if unknown:
        raise ConfigError(s.key(name), f"unknown method {sorted(unknown)[0]!r}")
    return methods


def is_clean_path(path: str) -> bool:
    segments = path.split("/")
    return (
        path.startswith("/")
        and not path.endswith("/")
        and all(seg and seg not in (".", "..") for seg in segments[1:])
    )


def build_overload(s: Section) -> OverloadConfig:
    factor = s.raw("tighten_factor")
    if isinstance(factor, bool) or not isinstance(factor, int | float) or not 0 < factor <= 1:
        raise ConfigError(s.key("tighten_factor"), f"must be a number in (0, 1], got {factor!r}")
    config = OverloadConfig(
        enabled=s.flag("enabled"),
        lag_threshold_ms=s.integer("lag_threshold_ms", 1),
        in_flight_threshold=s.integer("in_flight_threshold", 1),
        tighten_factor=float(factor),
        recover_after_ms=s.integer("recover_after_ms", 0),
        sample_interval_ms=s.integer("sample_interval_ms", 10),
    )
    s.done()
    return config

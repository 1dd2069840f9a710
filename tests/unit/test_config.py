"""Unit tests for configuration loading: seed defaults, YAML and environment layering, and every
rejection naming its key."""

from __future__ import annotations

import copy
import ipaddress
from pathlib import Path
from typing import Any

import pytest
import yaml

from api_gateway.config import loader
from api_gateway.config.loader import build, default_document, load
from api_gateway.config.settings import ConfigError, GatewayConfig, Instance, LimitConfig

SECRET = "a" * 32
ENV = {"JWT_SECRET": SECRET}

SEED_SERVICES = {
    "auth": 3001,
    "venue": 3002,
    "event": 3003,
    "ticket": 3004,
    "payment": 3005,
    "marketplace": 3006,
    "analytics": 3007,
    "notification": 3008,
    "integration": 3009,
    "compliance": 3010,
    "queue": 3011,
    "search": 3012,
    "file": 3013,
    "monitoring": 3014,
    "blockchain": 3015,
    "order": 3016,
    "minting": 3018,
    "transfer": 3019,
    "scanning": 3020,
}
SEED_ROUTES = {
    "/auth": "auth",
    "/venues": "venue",
    "/events": "event",
    "/tickets": "ticket",
    "/payments": "payment",
    "/webhooks": "payment",
    "/marketplace": "marketplace",
    "/analytics": "analytics",
    "/notifications": "notification",
    "/compliance": "compliance",
    "/queue": "queue",
    "/search": "search",
    "/files": "file",
    "/monitoring": "monitoring",
    "/integrations": "integration",
    "/orders": "order",
    "/event": "event",
    "/ticket": "ticket",
    "/venue": "venue",
}


_DEFAULTS = default_document()


@pytest.fixture(autouse=True)
def parsed_defaults_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Parse defaults.yaml once per module; the seed tests below still read the real file."""
    monkeypatch.setattr(loader, "default_document", lambda: copy.deepcopy(_DEFAULTS))


def config_with(env: dict[str, str] | None = None, path: Path | None = None) -> GatewayConfig:
    return load(str(path) if path else None, {**ENV, **(env or {})})


def write_yaml(tmp_path: Path, document: Any) -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(document) if not isinstance(document, str) else document)
    return path


def config_error(env: dict[str, str] | None = None, path: Path | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        config_with(env, path)
    return info.value


def yaml_error(tmp_path: Path, document: Any, env: dict[str, str] | None = None) -> ConfigError:
    return config_error(env, write_yaml(tmp_path, document))


def route(config: GatewayConfig, prefix: str) -> Any:
    return next(r for r in config.routes if r.prefix == prefix)


# --- seed defaults ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def seed() -> GatewayConfig:
    return load(None, ENV)


def test_seed_has_its_nineteen_services_and_ports(seed: GatewayConfig) -> None:
    assert {name: s.instances for name, s in seed.services.items()} == {
        name: (Instance(f"{name}-service", port),) for name, port in SEED_SERVICES.items()
    }


def test_seed_service_timeouts(seed: GatewayConfig) -> None:
    timeouts = {name: s.timeout_ms for name, s in seed.services.items()}
    assert timeouts.pop("payment") == 30000
    assert timeouts.pop("minting") == 120000
    assert set(timeouts.values()) == {10000}


def test_seed_route_prefixes_and_services(seed: GatewayConfig) -> None:
    assert len(seed.routes) == 19
    assert {r.prefix: r.service for r in seed.routes} == SEED_ROUTES


def test_seed_public_paths(seed: GatewayConfig) -> None:
    assert route(seed, "/auth").public == (
        "/login",
        "/register",
        "/refresh",
        "/forgot-password",
        "/reset-password",
        "/verify-email",
    )
    assert route(seed, "/payments").public == ("/health", "/metrics", "/webhooks/*")
    assert route(seed, "/webhooks").public == ("/*",)
    assert route(seed, "/search").public == ("/*",)
    assert route(seed, "/venue").public == ()
    assert route(seed, "/tickets").public == ("/health", "/metrics")


def test_seed_route_details(seed: GatewayConfig) -> None:
    assert route(seed, "/webhooks").methods == frozenset({"POST"})
    assert route(seed, "/tickets").methods is None
    assert route(seed, "/files").max_body_bytes == 4294967296
    assert route(seed, "/tickets").max_body_bytes == 1048576
    endpoints = {e.path: e for e in route(seed, "/tickets").endpoints}
    purchase, transfer = endpoints["/purchase"], endpoints["/transfer"]
    assert purchase.path == "/purchase"
    assert purchase.methods == frozenset({"POST"})
    assert purchase.timeout_ms == 30000
    assert purchase.idempotency == transfer.idempotency == "optional"
    assert transfer.path == "/transfer"
    assert route(seed, "/tickets").idempotency == "off"
    assert route(seed, "/payments").idempotency == "optional"
    assert route(seed, "/orders").idempotency == "optional"
    assert [(limit.name, limit.key) for limit in purchase.limits] == [
        ("ticket_purchase", ("user",)),
        ("purchase_address", ("ip",)),
        ("purchase_event", ("user", "body:eventId")),
    ]


def test_seed_jwt(seed: GatewayConfig) -> None:
    assert seed.jwt.issuer == "tickettoken-api"
    assert seed.jwt.access_secret == SECRET
    assert seed.jwt.refresh_secret == SECRET
    assert seed.jwt.leeway_s == 60
    assert seed.jwt.access_ttl_s == 86400
    assert seed.jwt.refresh_ttl_s == 604800


def test_seed_rate_limits(seed: GatewayConfig) -> None:
    assert seed.rate_limits == {
        "global": LimitConfig(100, 60000, 0),
        "user": LimitConfig(300, 60000, 0),
        "ticket_purchase": LimitConfig(5, 60000, 300000),
    }


def test_seed_breaker_and_timeouts(seed: GatewayConfig) -> None:
    for service in seed.services.values():
        breaker = service.circuit_breaker
        assert (
            breaker.error_threshold_pct,
            breaker.reset_timeout_ms,
            breaker.volume_threshold,
        ) == (50, 30000, 10)
    assert seed.default_timeout_ms == 10000
    services = seed.services
    assert (services["payment"].timeout_ms, services["minting"].timeout_ms) == (30000, 120000)
    assert services["ticket"].timeout_ms == 10000


def test_seed_retries_follow_the_platform(seed: GatewayConfig) -> None:
    attempts = {name: s.retry.attempts for name, s in seed.services.items()}
    # The original design's "3 retries" and "5 retries" come after the first attempt.
    assert attempts.pop("minting") == 6
    assert attempts.pop("payment") == 4
    assert set(attempts.values()) == {2}
    retry = seed.services["ticket"].retry
    assert (retry.budget_pct, retry.budget_min_concurrent) == (20, 3)


def test_seed_endpoint_deadlines(seed: GatewayConfig) -> None:
    deadlines = {
        (route.prefix, endpoint.path): endpoint.timeout_ms
        for route in seed.routes
        for endpoint in route.endpoints
    }
    assert deadlines[("/tickets", "/purchase")] == 30000
    assert deadlines[("/payments", "/process")] == 45000


def test_a_service_override_changes_only_its_own_keys(tmp_path: Path) -> None:
    document = {
        "retry": {"base_ms": 50},
        "services": {"ticket": {"retry": {"attempts": 4}, "load_balancer": {"strategy": "random"}}},
    }
    config = config_with(path=write_yaml(tmp_path, document))
    ticket, venue = config.services["ticket"], config.services["venue"]
    assert (ticket.retry.attempts, ticket.retry.base_ms) == (4, 50)
    assert (venue.retry.attempts, venue.retry.base_ms) == (2, 50)
    assert (ticket.load_balancer.strategy, venue.load_balancer.strategy) == (
        "random",
        "round_robin",
    )


def test_seed_server_and_misc(seed: GatewayConfig) -> None:
    assert seed.server.host == "0.0.0.0"
    assert seed.server.port == 3000
    assert seed.server.trusted_proxies == ()
    assert seed.server.access_log is True
    assert seed.log_level == "info"
    assert seed.cors_origins == ()
    assert seed.redis_url is None


def test_build_of_default_document_with_secrets_equals_load() -> None:
    document = default_document()
    document["jwt"]["access_secret"] = document["jwt"]["refresh_secret"] = SECRET
    assert build(document) == load(None, ENV)


def test_load_does_not_leak_changes_between_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loader, "default_document", default_document)
    config_with({"TICKET_SERVICE_URL": "http://elsewhere:1"})
    assert config_with().services["ticket"].instances == (Instance("ticket-service", 3004),)


# --- environment overrides ----------------------------------------------------------------------


def test_env_port_and_host() -> None:
    config = config_with({"PORT": "8080", "HOST": "127.0.0.1"})
    assert (config.server.host, config.server.port) == ("127.0.0.1", 8080)


def test_env_redis_url() -> None:
    assert config_with({"REDIS_URL": "redis://cache:6379/0"}).redis_url == "redis://cache:6379/0"


def test_env_jwt_secret_sets_both_secrets() -> None:
    config = config_with({"JWT_SECRET": "s" * 40})
    assert config.jwt.access_secret == config.jwt.refresh_secret == "s" * 40


def test_env_access_secret_wins_over_shared_secret() -> None:
    config = config_with({"JWT_SECRET": "s" * 40, "JWT_ACCESS_SECRET": "t" * 40})
    assert config.jwt.access_secret == "t" * 40
    assert config.jwt.refresh_secret == "s" * 40


def test_env_refresh_secret_wins_over_shared_secret() -> None:
    config = config_with({"JWT_SECRET": "s" * 40, "JWT_REFRESH_SECRET": "r" * 40})
    assert config.jwt.access_secret == "s" * 40
    assert config.jwt.refresh_secret == "r" * 40


def test_env_separate_secrets_without_shared_one() -> None:
    config = load(None, {"JWT_ACCESS_SECRET": "t" * 40, "JWT_REFRESH_SECRET": "r" * 40})
    assert (config.jwt.access_secret, config.jwt.refresh_secret) == ("t" * 40, "r" * 40)


def test_env_issuer() -> None:
    assert config_with({"JWT_ISSUER": "other-issuer"}).jwt.issuer == "other-issuer"


def test_env_service_url_list_gives_several_instances() -> None:
    config = config_with({"TICKET_SERVICE_URL": "http://t1:4001, http://t2:4002,http://t3"})
    assert config.services["ticket"].instances == (
        Instance("t1", 4001),
        Instance("t2", 4002),
        Instance("t3", 80),
    )
    assert config.services["event"].instances == (Instance("event-service", 3003),)


def test_env_service_url_for_multi_word_default() -> None:
    config = config_with({"MINTING_SERVICE_URL": "http://10.0.0.5:9000/"})
    assert config.services["minting"].instances == (Instance("10.0.0.5", 9000),)
    assert config.services["minting"].timeout_ms == 120000


def test_env_trusted_proxies() -> None:
    config = config_with({"TRUSTED_PROXIES": "10.0.0.0/8, 192.168.1.7,::1/128,10.1.2.3/16"})
    assert config.server.trusted_proxies == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("192.168.1.7/32"),
        ipaddress.ip_network("::1/128"),
        ipaddress.ip_network("10.1.0.0/16"),
    )


def test_any_origin_is_allowed_only_without_credentials() -> None:
    config = config_with({"CORS_ORIGINS": "*", "CORS_CREDENTIALS": "false"})
    assert (config.cors_origins, config.cors_credentials) == (("*",), False)
    assert config_error({"CORS_ORIGINS": "*"}).key == "cors_origins"


def test_env_cors_origins() -> None:
    config = config_with({"CORS_ORIGINS": "https://a.example, https://b.example,"})
    assert config.cors_origins == ("https://a.example", "https://b.example")


def test_the_original_gateways_origin_list_is_read_with_its_patterns() -> None:
    config = config_with({"ALLOWED_ORIGINS": "https://TicketToken.com,*.tickettoken.com"})
    assert config.cors_origins == ("https://tickettoken.com", "*.tickettoken.com")
    both = {"ALLOWED_ORIGINS": "https://old.example", "CORS_ORIGINS": "https://new.example"}
    assert config_with(both).cors_origins == ("https://new.example",)
    assert config_error({"ALLOWED_ORIGINS": "*.com"}).key == "cors_origins"


def test_preflights_are_cached_a_day_by_default() -> None:
    assert config_with().cors_max_age_s == 86400


@pytest.mark.parametrize(("value", "expected"), [("DEBUG", "debug"), ("warn", "warn")])
def test_env_log_level(value: str, expected: str) -> None:
    assert config_with({"LOG_LEVEL": value}).log_level == expected


def test_env_global_rate_limit() -> None:
    config = config_with({"RATE_LIMIT_MAX": "250", "RATE_LIMIT_WINDOW_MS": "1000"})
    assert config.rate_limits["global"] == LimitConfig(250, 1000, 0)
    assert config.rate_limits["ticket_purchase"] == LimitConfig(5, 60000, 300000)


def test_empty_env_values_keep_defaults() -> None:
    config = config_with({"PORT": "", "HOST": "", "REDIS_URL": "", "LOG_LEVEL": ""})
    assert (config.server.port, config.server.host, config.redis_url, config.log_level) == (
        3000,
        "0.0.0.0",
        None,
        "info",
    )


# --- YAML file ----------------------------------------------------------------------------------


def test_yaml_overrides_defaults_and_merges_deeply(tmp_path: Path) -> None:
    path = write_yaml(
        tmp_path,
        {
            "server": {"port": 4000},
            "jwt": {"issuer": "yaml-issuer"},
            "services": {"ticket": {"url": "http://yaml-ticket:5000"}},
            "rate_limit": {"global": {"max": 7}},
        },
    )
    config = config_with(path=path)
    assert config.server.port == 4000
    assert config.server.host == "0.0.0.0"
    assert config.jwt.issuer == "yaml-issuer"
    assert config.services["ticket"].instances == (Instance("yaml-ticket", 5000),)
    assert config.rate_limits["global"] == LimitConfig(7, 60000, 0)
    assert len(config.services) == 19


def test_env_overrides_yaml(tmp_path: Path) -> None:
    path = write_yaml(
        tmp_path,
        {
            "server": {"port": 4000},
            "jwt": {"issuer": "yaml-issuer", "access_secret": "y" * 40},
            "services": {"ticket": {"url": "http://yaml-ticket:5000"}},
        },
    )
    config = config_with(
        {"PORT": "5000", "JWT_ISSUER": "env-issuer", "TICKET_SERVICE_URL": "http://env:1"}, path
    )
    assert config.server.port == 5000
    assert config.jwt.issuer == "env-issuer"
    assert config.jwt.access_secret == SECRET
    assert config.services["ticket"].instances == (Instance("env", 1),)


def test_yaml_secrets_are_used_without_env(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, {"jwt": {"access_secret": "y" * 40, "refresh_secret": "z" * 40}})
    config = load(str(path), {})
    assert (config.jwt.access_secret, config.jwt.refresh_secret) == ("y" * 40, "z" * 40)


def test_yaml_adds_a_service_and_route(tmp_path: Path) -> None:
    path = write_yaml(
        tmp_path,
        {
            "services": {"reports": {"url": "http://reports:7000", "timeout_ms": 2500}},
            "routes": {
                "/reports": {"service": "reports", "methods": ["get", "post"], "public": []}
            },
        },
    )
    config = config_with(path=path)
    assert config.services["reports"].timeout_ms == 2500
    reports = route(config, "/reports")
    assert reports.methods == frozenset({"GET", "POST"})
    assert len(config.routes) == 20


def test_yaml_lists_replace_defaults(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, {"routes": {"/auth": {"public": ["/login"]}}})
    assert route(config_with(path=path), "/auth").public == ("/login",)


def test_empty_yaml_file_keeps_defaults(tmp_path: Path) -> None:
    assert config_with(path=write_yaml(tmp_path, "")) == config_with()


def test_yaml_route_timeout(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, {"routes": {"/tickets": {"timeout_ms": 1234}}})
    assert route(config_with(path=path), "/tickets").timeout_ms == 1234
    assert route(config_with(), "/tickets").timeout_ms is None


# --- rejections ---------------------------------------------------------------------------------


def test_missing_secret_names_access_secret() -> None:
    with pytest.raises(ConfigError) as info:
        load(None, {})
    assert info.value.key == "jwt.access_secret"


def test_missing_refresh_secret_is_named() -> None:
    with pytest.raises(ConfigError) as info:
        load(None, {"JWT_ACCESS_SECRET": SECRET})
    assert info.value.key == "jwt.refresh_secret"


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"JWT_SECRET": "a" * 31}, "jwt.access_secret"),
        ({"JWT_SECRET": "a" * 40, "JWT_ACCESS_SECRET": "short"}, "jwt.access_secret"),
        ({"JWT_SECRET": "a" * 40, "JWT_REFRESH_SECRET": "b" * 31}, "jwt.refresh_secret"),
    ],
)
def test_short_secret_is_rejected(env: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(None, env)
    assert info.value.key == key


def test_secret_of_32_multibyte_bytes_is_accepted() -> None:
    # The limit is in bytes: eleven 3-byte characters are 33 bytes.
    assert load(None, {"JWT_SECRET": "\u20ac" * 11}).jwt.access_secret == "\u20ac" * 11


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"PORT": "abc"}, "server.port"),
        ({"PORT": "70000"}, "server.port"),
        ({"PORT": "-1"}, "server.port"),
        ({"PORT": "80.5"}, "server.port"),
        ({"GATEWAY_WORKERS": "0"}, "server.workers"),
        ({"TRUSTED_PROXIES": "10.0.0.0/33"}, "server.trusted_proxies"),
        ({"TRUSTED_PROXIES": "10.0.0.0/8,not-an-ip"}, "server.trusted_proxies"),
        ({"LOG_LEVEL": "verbose"}, "log_level"),
        ({"REDIS_URL": "http://cache:6379"}, "redis.url"),
        ({"REDIS_URL": "cache:6379"}, "redis.url"),
        ({"RATE_LIMIT_MAX": "0"}, "rate_limit.global.max"),
        ({"RATE_LIMIT_MAX": "lots"}, "rate_limit.global.max"),
        ({"RATE_LIMIT_WINDOW_MS": "1m"}, "rate_limit.global.window_ms"),
    ],
)
def test_bad_env_value_names_its_key(env: dict[str, str], key: str) -> None:
    assert config_error(env).key == key


@pytest.mark.parametrize(
    "url",
    [
        "https://ticket:3004",
        "http://ticket:3004/api",
        "http://ticket:3004?x=1",
        "http://user:pw@ticket:3004",
        "http://:3004",
        "ticket:3004",
        "http://ticket:99999",
        "http://ticket:port",
        ",",
    ],
)
def test_bad_service_url_names_the_service(url: str) -> None:
    key = config_error({"TICKET_SERVICE_URL": url}).key
    assert key.startswith("services.ticket.url")


def test_bad_service_url_in_a_list_is_rejected() -> None:
    key = config_error({"TICKET_SERVICE_URL": "http://t1:1,https://t2:2"}).key
    assert key.startswith("services.ticket.url")


@pytest.mark.parametrize(
    ("document", "key"),
    [
        ({"bogus": 1}, "bogus"),
        ({"server": {"bogus": 1}}, "server.bogus"),
        ({"jwt": {"algorithm": "none"}}, "jwt.algorithm"),
        ({"redis": {"password": "x"}}, "redis.password"),
        ({"services": {"ticket": {"weight": 2}}}, "services.ticket.weight"),
        ({"circuit_breaker": {"threshold": 2}}, "circuit_breaker.threshold"),
        ({"rate_limit": {"global": {"burst": 2}}}, "rate_limit.global.burst"),
        ({"routes": {"/tickets": {"auth": False}}}, "routes./tickets.auth"),
        ({"server": {"port": 70000}}, "server.port"),
        ({"server": {"port": "3000x"}}, "server.port"),
        ({"server": {"port": True}}, "server.port"),
        ({"server": {"access_log": "yes"}}, "server.access_log"),
        ({"server": "localhost"}, "server"),
        ({"log_level": "loud"}, "log_level"),
        ({"cors_origins": [1, 2]}, "cors_origins"),
        ({"cors_origins": ["*"]}, "cors_origins"),
        ({"cors_origins": ["null"]}, "cors_origins"),
        ({"cors_origins": ["*.com"]}, "cors_origins"),
        ({"security_headers": {"bad header": "x"}}, "security_headers.bad header"),
        ({"security_headers": {"x-frame-options": "a\nb"}}, "security_headers.x-frame-options"),
        ({"security_headers": {"x-frame-options": 3}}, "security_headers.x-frame-options"),
        ({"overload": {"tighten_factor": 0}}, "overload.tighten_factor"),
        ({"overload": {"surge": 1}}, "overload.surge"),
        ({"cors_credentials": "sometimes"}, "cors_credentials"),
        ({"cors_max_age_s": -1}, "cors_max_age_s"),
        ({"redis": {"url": "mysql://db"}}, "redis.url"),
        ({"circuit_breaker": {"error_threshold_pct": 101}}, "circuit_breaker.error_threshold_pct"),
        ({"timeouts": {"default_ms": 0}}, "timeouts.default_ms"),
        ({"jwt": {"issuer": ""}}, "jwt.issuer"),
        ({"routes": {"/tickets": {"service": "nope"}}}, "routes./tickets.service"),
        ({"routes": {"/reports": {"public": ["/x"]}}}, "routes./reports.service"),
        ({"routes": {"/tickets": {"methods": ["GET", "FETCH"]}}}, "routes./tickets.methods"),
        ({"routes": {"tickets": {"service": "ticket"}}}, "routes.tickets"),
        ({"routes": {"/tickets/": {"service": "ticket"}}}, "routes./tickets/"),
        ({"routes": {"/": {"service": "ticket"}}}, "routes./"),
        ({"routes": {"/a/../b": {"service": "ticket"}}}, "routes./a/../b"),
        ({"routes": {"/tickets": {"public": ["health"]}}}, "routes./tickets.public"),
        ({"routes": {"/tickets": {"public": ["/a//b"]}}}, "routes./tickets.public"),
        ({"routes": {"/tickets": {"max_body_bytes": -1}}}, "routes./tickets.max_body_bytes"),
        ({"services": {"ticket": {"url": "https://t:1"}}}, "services.ticket.url"),
        ({"services": {"ticket": {"url": ""}}}, "services.ticket.url"),
        ({"services": {"ticket": {"timeout_ms": 0}}}, "services.ticket.timeout_ms"),
        ({"retry": {"attempts": 0}}, "retry.attempts"),
        ({"retry": {"tries": 2}}, "retry.tries"),
        ({"services": {"ticket": {"retry": {"attempts": 0}}}}, "services.ticket.retry.attempts"),
        ({"services": {"ticket": {"retry": {"tries": 2}}}}, "services.ticket.retry.tries"),
        ({"services": {"ticket": {"retry": 3}}}, "services.ticket.retry"),
        ({"load_balancer": {"strategy": "fastest"}}, "load_balancer.strategy"),
        (
            {"services": {"ticket": {"load_balancer": {"hash_key": "body"}}}},
            "services.ticket.load_balancer.hash_key",
        ),
        ({"outlier_detection": {"max_ejection_pct": 101}}, "outlier_detection.max_ejection_pct"),
        ({"health_check": {"path": "health"}}, "health_check.path"),
        (
            {"services": {"auth": {"health_check": {"enabled": "sometimes"}}}},
            "services.auth.health_check.enabled",
        ),
        ({"discovery": {"cache_ttl_ms": 5}}, "discovery.cache_ttl_ms"),
        ({"circuit_breaker": {"half_open_probes": 0}}, "circuit_breaker.half_open_probes"),
        (
            {"routes": {"/tickets": {"idempotency_key_retries": "maybe"}}},
            "routes./tickets.idempotency_key_retries",
        ),
        (
            {"routes": {"/search": {"validation": {"query": {"q": {"type": "text"}}}}}},
            "routes./search.validation.query.q.type",
        ),
        (
            {"routes": {"/search": {"validation": {"query": {"q": {"type": "string", "x": 1}}}}}},
            "routes./search.validation.query.q.x",
        ),
        (
            {"routes": {"/events": {"validation": {"json": True}}}},
            "routes./events.validation.json",
        ),
        (
            {"routes": {"/search": {"validation": {"query": {"page": {"minimum": "one"}}}}}},
            "routes./search.validation.query.page",
        ),
    ],
)
def test_bad_yaml_value_names_its_key(tmp_path: Path, document: Any, key: str) -> None:
    assert yaml_error(tmp_path, document).key.startswith(key)


def endpoint_doc(**endpoint: Any) -> dict[str, Any]:
    base = {"path": "/purchase", "methods": ["POST"]}
    return {"routes": {"/tickets": {"endpoints": [{**base, **endpoint}]}}}


@pytest.mark.parametrize(
    ("endpoint", "key"),
    [
        ({"rate_limit": "nonexistent"}, "routes./tickets.endpoints[0].rate_limit"),
        ({"methods": ["BREW"]}, "routes./tickets.endpoints[0].methods"),
        ({"path": "purchase"}, "routes./tickets.endpoints[0].path"),
        ({"timeout_ms": 0}, "routes./tickets.endpoints[0].timeout_ms"),
        ({"extra": 1}, "routes./tickets.endpoints[0].extra"),
    ],
)
def test_bad_endpoint_names_its_key(tmp_path: Path, endpoint: dict[str, Any], key: str) -> None:
    assert yaml_error(tmp_path, endpoint_doc(**endpoint)).key == key


def test_endpoint_may_name_a_custom_rate_limit(tmp_path: Path) -> None:
    document = endpoint_doc(rate_limit="strict")
    document["rate_limit"] = {"strict": {"max": 1, "window_ms": 1000}}
    config = config_with(path=write_yaml(tmp_path, document))
    assert config.rate_limits["strict"] == LimitConfig(1, 1000, 0)
    assert route(config, "/tickets").endpoints[0].rate_limit == "strict"


def test_invalid_yaml_is_rejected(tmp_path: Path) -> None:
    assert yaml_error(tmp_path, "server: [unclosed\n  port: 1").key == "--config"


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", "42\n"])
def test_non_mapping_yaml_is_rejected(tmp_path: Path, text: str) -> None:
    assert yaml_error(tmp_path, text).key == "--config"


def test_missing_yaml_file_is_rejected(tmp_path: Path) -> None:
    assert config_error(path=tmp_path / "absent.yaml").key == "--config"


def test_error_message_starts_with_key(tmp_path: Path) -> None:
    error = yaml_error(tmp_path, {"server": {"bogus": 1}})
    assert str(error).startswith("server.bogus: ")


# --- regressions ------------------------------------------------------------------------------


@pytest.mark.parametrize("port", ["--5", "\u00b2"])
def test_malformed_numeric_env_is_a_config_error(port: str) -> None:
    assert config_error({"PORT": port}).key == "server.port"


def test_route_without_public_paths_is_accepted(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, {"routes": {"/reports": {"service": "ticket"}}})
    reports = route(config_with(path=path), "/reports")
    assert reports.public == ()
    assert reports.service == "ticket"


def test_route_timeout_of_zero_is_rejected(tmp_path: Path) -> None:
    error = yaml_error(tmp_path, {"routes": {"/tickets": {"timeout_ms": 0}}})
    assert error.key == "routes./tickets.timeout_ms"


@pytest.mark.parametrize(
    ("document", "env", "key"),
    [
        ({"jwt": None}, {}, "jwt"),
        ({"services": []}, {}, "services"),
        ({"server": None}, {"PORT": "1"}, "server"),
        ({"services": {"ticket": "http://t:1"}}, {"TICKET_SERVICE_URL": "http://t:2"}, "services"),
    ],
)
def test_non_mapping_section_is_a_config_error(
    tmp_path: Path, document: Any, env: dict[str, str], key: str
) -> None:
    assert yaml_error(tmp_path, document, env).key.startswith(key)


def test_service_url_port_zero_is_rejected() -> None:
    assert config_error({"TICKET_SERVICE_URL": "http://ticket:0"}).key.startswith(
        "services.ticket.url"
    )


def test_secrets_may_come_from_files(tmp_path: Path) -> None:
    secret = tmp_path / "jwt_secret"
    secret.write_text("s" * 40 + "\n")
    redis = tmp_path / "redis_url"
    redis.write_text("redis://cache:6379/0")
    env = {"JWT_SECRET_FILE": str(secret), "REDIS_URL_FILE": str(redis)}
    config = load(None, env)
    assert config.jwt.access_secret == config.jwt.refresh_secret == "s" * 40
    assert config.redis_url == "redis://cache:6379/0"


def test_a_secret_file_that_cannot_be_read_or_a_doubled_secret_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as missing:
        load(None, {"JWT_SECRET_FILE": str(tmp_path / "nope")})
    assert missing.value.key == "JWT_SECRET_FILE"
    secret = tmp_path / "jwt_secret"
    secret.write_text("s" * 40)
    with pytest.raises(ConfigError) as doubled:
        load(None, {"JWT_SECRET_FILE": str(secret), "JWT_SECRET": "t" * 40})
    assert doubled.value.key == "JWT_SECRET_FILE"


def test_breaker_failure_statuses_default_and_validation(tmp_path: Path) -> None:
    config = config_with({})
    assert config.services["ticket"].circuit_breaker.failure_statuses == {502, 503, 504}
    for bad in ([404], ["500"], 500, [True]):
        error = yaml_error(tmp_path, {"circuit_breaker": {"failure_statuses": bad}})
        assert error.key == "circuit_breaker.failure_statuses"


def test_seed_checks_revoked_tokens_every_five_seconds(seed: GatewayConfig) -> None:
    assert seed.jwt.revocation_check_ms == 5000


@pytest.mark.parametrize("period", [0, 100, 60000])
def test_revocation_check_is_off_at_zero_or_at_least_100_ms(tmp_path: Path, period: int) -> None:
    path = write_yaml(tmp_path, {"jwt": {"revocation_check_ms": period}})
    assert config_with(path=path).jwt.revocation_check_ms == period


@pytest.mark.parametrize("period", [1, 99, -1, "soon"])
def test_a_revocation_check_that_would_ask_on_every_request_is_refused(
    tmp_path: Path, period: object
) -> None:
    error = yaml_error(tmp_path, {"jwt": {"revocation_check_ms": period}})
    assert "jwt.revocation_check_ms" in str(error)

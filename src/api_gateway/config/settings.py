"""Typed, frozen settings: what the rest of the gateway reads. Built once by ``config.load``."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from api_gateway.config.admin import AdminConfig
    from api_gateway.config.aggregates import AggregateConfig
    from api_gateway.config.cache import CacheConfig, RouteCacheConfig
    from api_gateway.config.endpoint_validation import EndpointValidation
    from api_gateway.config.observability import ObservabilityConfig
    from api_gateway.config.tenancy import TenancyConfig
    from api_gateway.config.validation import ValidationConfig

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
LOOPBACK: tuple[Network, ...] = (
    ipaddress.ip_network("127.0.0.0/8"),
    ipaddress.ip_network("::1/128"),
)


class ConfigError(Exception):
    """A configuration value is wrong; ``key`` is its dotted path (or environment variable)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str
    port: int
    workers: int
    keep_alive_timeout_ms: int
    header_timeout_ms: int
    body_timeout_ms: int
    max_header_bytes: int
    max_header_count: int
    max_uri_bytes: int
    max_body_bytes: int
    trusted_proxies: tuple[Network, ...]
    shutdown_grace_ms: int
    access_log: bool
    # A body arriving slower than this over a window is cut off (408); 0 turns the check off.
    min_body_rate_bytes_per_s: int = 500
    body_rate_window_ms: int = 20000
    # Bodies still arriving at once per client address (the rate limits' key); more: 429.
    max_bodies_per_client: int = 32
    max_websockets: int = 10_000  # open WebSocket tunnels per worker; beyond, handshakes get 503
    # /metrics on the traffic port too, to anyone (else on the admin listener only).
    public_metrics: bool = False


@dataclass(frozen=True, slots=True)
class ClaimNames:
    """Per identity field, the claim names tried in order (``jwt.claims``)."""

    user_id: tuple[str, ...] = ("sub", "user_id", "userId")
    tenant_id: tuple[str, ...] = ("tenant_id", "tenantId")
    role: tuple[str, ...] = ("role",)
    email: tuple[str, ...] = ("email",)


@dataclass(frozen=True, slots=True)
class JwtConfig:
    # "" when no HMAC algorithm is allowed and none was given; secrets stay out of any repr.
    access_secret: str = field(repr=False)
    refresh_secret: str = field(repr=False)
    issuer: str
    access_ttl_s: int
    refresh_ttl_s: int
    leeway_s: int
    cache_size: int
    cache_max_bytes: int = 96 * 1024 * 1024  # verified-token cache bound, per worker
    max_token_bytes: int = 8192  # a longer token is refused (401) before any parsing
    algorithms: tuple[str, ...] = ("HS256",)  # the allowlist (JWT_ALGORITHMS)
    public_key: str = ""  # PEM (JWT_PUBLIC_KEY / JWT_PUBLIC_KEY_FILE)
    jwks_url: str = ""  # JWT_JWKS_URL
    jwks_timeout_ms: int = 5000  # one fetch of the JWKS, connect to last byte
    jwks_max_bytes: int = 262144  # a larger JWKS document is refused (the last good set stays)
    audience: tuple[str, ...] = ()  # JWT_AUDIENCE: when set, ``aud`` must hold one of them
    claims: ClaimNames = ClaimNames()
    cookie: str = "access_token"  # the cookie a browser's token may come in ("": none)
    # With REDIS_URL: how long a token's "revoked or not" answer is kept (0: no check).
    revocation_check_ms: int = 5000


@dataclass(frozen=True, slots=True)
class ApiKeysConfig:
    """API keys (``api-gateway apikey``): where they live and how they are checked."""

    # API_KEY_PEPPER: the HMAC key of the stored key hashes ("": API keys are off).
    pepper: str = field(default="", repr=False)
    path: str = "api_keys.sqlite3"  # the embedded store, when redis.url is not set
    key_prefix: str = "gateway:apikeys:"  # the Redis keys, when it is
    default_rate_limit: str = "1000/60s"  # a key's own limit unless it was given one
    recheck_ms: int = 5000  # a revocation is seen by every gateway within this


@dataclass(frozen=True, slots=True)
class InternalAuthConfig:
    """Signed service calls (config/internal_auth.py); off while no secret is set."""

    # INTERNAL_HMAC_SECRET or INTERNAL_SERVICE_SECRET (_FILE), at least 32 bytes.
    secret: str = field(default="", repr=False)
    new_hmac: bool = True  # USE_NEW_HMAC=false: the legacy format (no nonce, no body hash)
    # A body still arriving after its head is read whole up to this, to hash it; larger ones
    # stream, signed as no body (the validator's view of a body it did not parse).
    max_buffered_body_bytes: int = 1_048_576


@dataclass(frozen=True, slots=True)
class StripeWebhooksConfig:
    """Verified Stripe webhooks (config/webhooks.py); off while no secret is set."""

    # STRIPE_WEBHOOK_SECRET(_FILE), comma-separated: every one is tried (rotation).
    secrets: tuple[str, ...] = field(default=(), repr=False)
    tolerance_ms: int = 300_000  # Stripe-Signature's t may be this far off, either way
    dedupe_ttl_ms: int = 86_400_000  # an event answered 2xx is not forwarded again (0: off)
    max_events: int = 100_000  # event ids kept per worker without Redis
    key_prefix: str = "gateway:webhooks:stripe:"  # the event ids in Redis
    # Under /api/v1: the endpoints whose POST is verified.
    paths: tuple[str, ...] = ("/webhooks/stripe", "/payments/webhooks/stripe")

    @property
    def enabled(self) -> bool:
        return bool(self.secrets)


@dataclass(frozen=True, slots=True)
class IdempotencyConfig:
    """The top-level ``idempotency`` section (built by config/idempotency.py)."""

    ttl_ms: int = 86_400_000  # how long a final answer is kept for repeats (the issue's ``ttl``)
    # How long a claim lives while its request is in flight: the request may keep working
    # upstream this long after its client got a 504 (at least the route's deadline is used).
    lock_ms: int = 60_000
    max_body_bytes: int = 1_048_576  # a larger answer is given but not kept
    max_entries: int = 10_000  # the in-memory store's bounds (no REDIS_URL)
    max_bytes: int = 67_108_864


@dataclass(frozen=True, slots=True)
class LimitConfig:
    max: int
    window_ms: int
    block_ms: int = 0


@dataclass(frozen=True, slots=True)
class RouteLimitConfig:
    """One limit a route or endpoint lists (``limits:``): its rate and what it counts by."""

    name: str  # the metrics label; with the key spec, the namespace of its buckets
    limit: LimitConfig
    key: tuple[str, ...]  # parts, e.g. ("user", "body:eventId"); see limit_keys.py


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    error_threshold_pct: int
    reset_timeout_ms: int
    volume_threshold: int
    window_ms: int = 10_000
    half_open_probes: int = 1
    # Answers that speak for the service's health; any other status (a 500 from one path) is
    # the answer to that request, never a breaker failure.
    failure_statuses: frozenset[int] = frozenset({502, 503, 504})


@dataclass(frozen=True, slots=True)
class RetryConfig:
    attempts: int  # in all, the first one included
    base_ms: int
    max_backoff_ms: int
    per_try_timeout_ms: int | None
    budget_pct: int
    budget_min_concurrent: int


@dataclass(frozen=True, slots=True)
class BalancerConfig:
    strategy: str
    # consistent_hash only: "user", "header:<name>" or "cookie:<name>"
    hash_key: str = "user"


@dataclass(frozen=True, slots=True)
class OutlierConfig:
    consecutive_failures: int
    base_ejection_ms: int
    max_ejection_pct: int


@dataclass(frozen=True, slots=True)
class HealthCheckConfig:
    enabled: bool
    path: str
    interval_ms: int
    timeout_ms: int
    healthy_threshold: int
    unhealthy_threshold: int


@dataclass(frozen=True, slots=True)
class DiscoveryConfig:
    registry: bool  # use the Redis registry when redis.url is set
    cache_ttl_ms: int
    key_prefix: str


@dataclass(frozen=True, slots=True)
class OverloadConfig:
    enabled: bool
    lag_threshold_ms: int
    in_flight_threshold: int
    tighten_factor: float  # rate limits become max * factor while overloaded
    recover_after_ms: int
    sample_interval_ms: int


@dataclass(frozen=True, slots=True)
class UpstreamConfig:
    connect_timeout_ms: int
    max_idle_per_instance: int
    idle_timeout_ms: int
    # Caps on an upstream response's fields (every head of it, and its trailers): 502 past them.
    max_response_header_bytes: int = 65536
    max_response_header_count: int = 100


@dataclass(frozen=True, slots=True)
class ResponseHeadersConfig:
    """Upstream response fields never passed on to clients: exact lower-case names, prefixes."""

    drop_names: frozenset[bytes] = frozenset()
    drop_prefixes: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True)
class Instance:
    host: str
    port: int

    @property
    def authority(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    name: str
    instances: tuple[Instance, ...]
    timeout_ms: int
    circuit_breaker: BreakerConfig
    retry: RetryConfig
    load_balancer: BalancerConfig
    outlier: OutlierConfig
    health_check: HealthCheckConfig


@dataclass(frozen=True, slots=True)
class EndpointConfig:
    path: str
    methods: frozenset[str]
    timeout_ms: int | None
    rate_limit: str | None
    idempotency_key_retries: bool | None = None
    # Body, path-parameter and query schemas (config/endpoint_validation.py).
    validation: EndpointValidation | None = None
    idempotency: str | None = None  # required, optional, off; None: the route's
    # Limits of this endpoint, in addition to its route's (``rate_limit: <name>`` is one of
    # them, keyed ``user_or_ip``).
    limits: tuple[RouteLimitConfig, ...] = ()
    global_limit: bool | None = None  # ``global``: None, as its route says


@dataclass(frozen=True, slots=True)
class RouteConfig:
    prefix: str
    service: str
    public: tuple[str, ...]
    methods: frozenset[str] | None
    max_body_bytes: int
    timeout_ms: int | None
    endpoints: tuple[EndpointConfig, ...]
    # POST and PATCH may be retried when the request carries an Idempotency-Key.
    idempotency_key_retries: bool = False
    validation: ValidationConfig | None = None
    # When the rate-limit store cannot answer: 503 rather than decide without it.
    fail_closed: bool = False
    cache: RouteCacheConfig | None = None  # None: responses of the route are not cached
    alias_of: str | None = None  # this prefix is another name of that route (config.aliases)
    # How clients of the route may authenticate: "jwt", "api_key" (``auth: [jwt, api_key]``).
    auth: frozenset[str] = frozenset({"jwt"})
    websocket: bool = True  # WebSocket handshakes are proxied (false: refused with a problem)
    websocket_idle_timeout_ms: int = 600_000  # a tunnel with no byte either way this long ends
    websocket_max_per_user: int = 20  # open tunnels per user (or client address) on the route
    # The longest gap between two chunks of a stream once its head arrived (the request deadline
    # no longer applies). None: event streams get STREAM_IDLE_DEFAULT_MS, other responses the
    # request deadline.
    stream_idle_timeout_ms: int | None = None
    # Idempotency-Key handling of POST and PATCH: "required", "optional" or "off".
    idempotency: str = "off"
    limits: tuple[RouteLimitConfig, ...] = ()  # every request of the route counts against these
    global_limit: bool = True  # ``global: false``: the per-address limit does not apply here
    # Paths under the prefix (GET and HEAD) no gateway limit applies to: services' probes.
    exempt: tuple[str, ...] = ("/health", "/metrics")


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    server: ServerConfig
    log_level: str
    cors_origins: tuple[str, ...]
    cors_credentials: bool
    cors_max_age_s: int
    # Replacements (a value) and removals (None) of Helmet's default security headers.
    security_headers: tuple[tuple[str, str | None], ...]
    redis_url: str | None
    jwt: JwtConfig
    rate_limits: dict[str, LimitConfig]
    default_timeout_ms: int
    upstream: UpstreamConfig
    discovery: DiscoveryConfig
    overload: OverloadConfig
    services: dict[str, ServiceConfig]
    routes: tuple[RouteConfig, ...]
    tenancy: TenancyConfig
    cache: CacheConfig
    observability: ObservabilityConfig
    redis_cluster: bool = False  # redis.url names seeds of a Redis Cluster
    redis_timeout_ms: int = 50  # bound on every Redis call
    aggregates: tuple[AggregateConfig, ...] = ()  # under /api/v1/aggregate
    # Per-address limits key an IPv6 client by this prefix length (IPv4: the whole address).
    rate_limit_ipv6_prefix: int = 64
    response_headers: ResponseHeadersConfig = ResponseHeadersConfig()
    # Client addresses the admin listener answers (``admin.allow``; also in ``admin``).
    admin_allow: tuple[Network, ...] = LOOPBACK
    # The admin listener (config.admin); None: built without one (in-process tests).
    admin: AdminConfig | None = None
    # Readiness checks whose failure makes /ready 503 (``readiness.require``; default none).
    readiness_require: tuple[str, ...] = ()
    api_keys: ApiKeysConfig = ApiKeysConfig()
    stripe_webhooks: StripeWebhooksConfig = StripeWebhooksConfig()
    idempotency: IdempotencyConfig = IdempotencyConfig()
    internal_auth: InternalAuthConfig = InternalAuthConfig()

    API_PREFIX = "/api/v1"

"""The gateway application: everything built once at start-up, then one call per request."""

from __future__ import annotations

import asyncio
import logging
import os
import random
from collections.abc import Awaitable
from time import perf_counter
from typing import TYPE_CHECKING, Final

from api_gateway import compiled
from api_gateway.admin import Admin, Probe
from api_gateway.config.settings import GatewayConfig
from api_gateway.directory import VenueDirectory
from api_gateway.docs import DocsSite
from api_gateway.errors import GatewayError, InvalidPath, RouteNotFound, problem_response
from api_gateway.hosts import check_target_authority
from api_gateway.http.client import PoolSettings, UpstreamPool
from api_gateway.keeper import KEEPER_TIMEOUT_S, KEEPER_VARIABLE
from api_gateway.network import TrustedProxies
from api_gateway.observability import exporters
from api_gateway.observability.access import AccessLog
from api_gateway.observability.exposition import CONTENT_TYPE, Family, render
from api_gateway.observability.metrics import Metrics
from api_gateway.observability.process import ProcessInfo
from api_gateway.observability.snapshots import DIRECTORY_VARIABLE, WORKER_VARIABLE, WorkerMetrics
from api_gateway.operations import Operations
from api_gateway.overload import OverloadMonitor
from api_gateway.pipeline import RouteBuilder, chain, outer_policies
from api_gateway.policies.context import RequestContext, Stamper, new_request_id
from api_gateway.policies.security_headers import SecurityHeaders
from api_gateway.routing import RouteTable, normalize, split_target, target_authority
from api_gateway.signing import open_signer
from api_gateway.stores import Store, StoreUnavailable
from api_gateway.stores.fallback import FallbackStore
from api_gateway.stores.memory import MemoryStore
from api_gateway.tokens import KeySource, StaticKeys, TokenVerifier, configured_keys
from api_gateway.types import Handler, Request, Response
from api_gateway.upstream.call import AttemptHook
from api_gateway.upstream.clients import AuthServiceClient, VenueServiceClient
from api_gateway.upstream.discovery import Discovery, open_discovery
from api_gateway.upstream.health import HealthChecker
from api_gateway.upstream.instances import ServiceInstances
from api_gateway.upstream.service import UpstreamService

log = logging.getLogger("api_gateway")
# What ``OPTIONS *`` answers: the methods some route of the gateway serves.
ALLOW: Final = b"GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"

if TYPE_CHECKING:
    from api_gateway.apikeys import ApiKeys
    from api_gateway.http.connections import Connections
    from api_gateway.jwks import JwksKeys
    from api_gateway.observability.tracing import Tracing
    from api_gateway.upstream.breaker_sync import BreakerSync


def open_store(config: GatewayConfig) -> Store:
    """Redis when configured; else the keeper when this worker has siblings (the supervisor
    says where); else this process's memory, exact for a single worker."""
    if config.redis_url is None:
        keeper = os.environ.get(KEEPER_VARIABLE)
        if not keeper:
            return MemoryStore()
        from api_gateway.stores.redis import RedisStore

        return FallbackStore(RedisStore("unix://" + keeper, KEEPER_TIMEOUT_S))
    from api_gateway.stores.cluster import open_shared

    return FallbackStore(open_shared(config))


class Gateway:
    # Background work, running between start() and close().
    discovery: Discovery | None = None
    health_checker: HealthChecker | None = None
    tracing: Tracing | None = None
    jwks: JwksKeys | None = None
    api_keys: ApiKeys | None = None
    breaker_sync: BreakerSync | None = None
    # The server's open client connections (serve.py sets it), counted at scrape time.
    connections: Connections | None = None

    def __init__(self, config: GatewayConfig, loop: asyncio.AbstractEventLoop, port: int) -> None:
        self.config, self.loop = config, loop
        upstream = config.upstream
        self.pool = UpstreamPool(
            loop,
            PoolSettings(
                upstream.connect_timeout_ms / 1000,
                upstream.max_idle_per_instance,
                upstream.idle_timeout_ms / 1000,
                upstream.max_response_header_bytes,
                upstream.max_response_header_count,
                config.response_headers.drop_names,
                config.response_headers.drop_prefixes,
            ),
        )
        self.store = open_store(config)

        def clock_ms() -> float:
            return loop.time() * 1000

        rng = random.Random()
        self.services = {
            name: UpstreamService(service, ServiceInstances(name, service.instances), rng)
            for name, service in config.services.items()
        }
        self.signer = open_signer(config.internal_auth)
        for upstream_service in self.services.values():
            upstream_service.signer = self.signer  # proxied, aggregated and the clients' calls
        self.auth_client = AuthServiceClient(self.services["auth"], self.pool, clock_ms)
        self.venue_client = VenueServiceClient(self.services["venue"], self.pool, clock_ms)
        self.overload = OverloadMonitor(config.overload, loop)
        around_attempt: AttemptHook | None = None
        if config.observability.tracing:
            # Imported only when on: tracing off must not cost even the import.
            from api_gateway.observability.tracing import Tracing

            self.tracing = Tracing(config.observability)
            around_attempt = self.tracing.client_span
        self.verifier = TokenVerifier(config.jwt, keys=self.key_source(config))
        keyed = [r.prefix for r in config.routes if "api_key" in r.auth]
        if keyed and config.api_keys.pepper:
            from api_gateway.apikeys import open_api_keys

            self.api_keys = open_api_keys(config, self.store)
        elif keyed:
            log.warning(
                "API keys are off: API_KEY_PEPPER is not set",
                extra={"routes_accepting_keys": keyed},
            )
        builder = RouteBuilder(
            config,
            self.pool,
            self.verifier,
            self.store,
            self.services,
            clock_ms,
            port,
            VenueDirectory(self.venue_client, config.tenancy, clock_ms),
            self.overload,
            around_attempt,
            self.api_keys,
            None if self.api_keys is None else self.api_keys.limit,
        )
        self.builder = builder
        self.routes: RouteTable[Handler] = RouteTable()
        for route in config.routes:
            self.routes.add(GatewayConfig.API_PREFIX + route.prefix, builder.build(route))
        for prefix, handler in builder.aggregate_routes().items():
            self.routes.add(prefix, handler)
        probes: dict[str, Probe] = {
            "auth-service": self.auth_client.health_check,
            "venue-service": self.venue_client.health_check,
        }
        if config.redis_url:
            probes["redis"] = self._redis_probe
        if self.jwks is not None:
            probes["signing-keys"] = self._keys_probe
        # Status, uptime and readiness to anyone; the insides are the admin listener's.
        self.admin = Admin(probes, config.readiness_require)
        self.metrics = Metrics(
            {GatewayConfig.API_PREFIX + route.prefix: route.service for route in config.routes}
        )
        self.worker_metrics = WorkerMetrics.from_environment(self.collect_metrics, loop)
        self.operations = Operations(
            self.services,
            self.metrics,
            self.store_state,
            loop,
            os.environ.get(DIRECTORY_VARIABLE),
            os.environ.get(WORKER_VARIABLE, "0"),
        )
        self.process_info = ProcessInfo(compiled.ACTIVE)
        self.exact: dict[str, Handler] = self.admin.endpoints()
        if config.server.public_metrics:
            self.exact["/metrics"] = self.render_metrics
        self.exact.update(DocsSite(config).endpoints())
        access_log = (
            AccessLog(loop, sample_rate=config.observability.access_log_sample_rate)
            if config.server.access_log and config.log_level in ("trace", "debug", "info")
            else None
        )
        trusted = TrustedProxies(config.server.trusted_proxies)
        self.stamper = Stamper(SecurityHeaders(config.security_headers))
        context = RequestContext(trusted, perf_counter, self.metrics, access_log, self.stamper)
        span = None if self.tracing is None else self.tracing.server_span
        policies = outer_policies(config, context, span)
        self.handler = chain(policies, self.dispatch)

    def key_source(self, config: GatewayConfig) -> KeySource:
        """The configured secret and PEM keys, and the JWKS's when one is configured."""
        static = configured_keys(config.jwt)
        if not config.jwt.jwks_url:
            return StaticKeys(static)
        from api_gateway.jwks import JwksKeys

        self.jwks = JwksKeys(config.jwt, static, on_removed=self.forget_verified_tokens)
        return self.jwks

    def forget_verified_tokens(self) -> None:
        # A key was withdrawn from the JWKS: what it verified must not stay trusted.
        self.verifier.forget_all()

    def handle(self, request: Request) -> Awaitable[Response]:
        return self.handler(request)

    def dispatch(self, request: Request) -> Awaitable[Response]:
        try:
            path, request.query = split_target(request.target)
        except InvalidPath:
            if request.target == b"*":
                return self.asterisk(request)
            raise
        authority = target_authority(request.target)
        if authority is not None:
            check_target_authority(authority, request.header(b"host"))
        request.path = normalize(path)
        handler = self.exact.get(request.path)
        if handler is None:
            match = self.routes.match(request.path)
            if match is None:
                raise RouteNotFound(f"no route for {request.path}")
            request.route, handler = match
        else:
            request.route = request.path
        return handler(request)

    async def asterisk(self, request: Request) -> Response:
        """``OPTIONS *``: what the server as a whole supports (RFC 9112 §3.2.4, RFC 9110
        §9.3.7); the asterisk form means nothing to any other method."""
        if request.method != "OPTIONS":
            raise InvalidPath("the asterisk-form target is for OPTIONS only")
        return Response(200, [(b"allow", ALLOW)])

    def reject(self, error: GatewayError, peer_ip: str) -> Response:
        request_id = new_request_id()
        response = problem_response(error, request_id)
        self.stamper.stamp(response, request_id, 0.0)
        return response

    def store_state(self) -> dict[str, object]:
        """The rate-limit store, for the admin API: where limits are decided, and whether it
        is degraded (deciding in this worker's memory while the shared store is away)."""
        store = self.store
        if not isinstance(store, FallbackStore):
            return {"kind": "memory", "degraded": False}
        kind = "redis" if self.config.redis_url is not None else "keeper"
        state: dict[str, object] = {"kind": kind, "degraded": store.degraded}
        if store.degraded:
            state["reason"] = store.reason
        state["outages"] = store.outages
        return state

    def collect_metrics(self) -> list[Family]:
        """This worker's metric families (cheap: read from counters kept anyway)."""
        return [
            *self.metrics.collect(),
            *exporters.service_families(self.services),
            *exporters.limit_families(self.builder.limits, self.store),
            *exporters.cache_families(self.builder.caches),
            *exporters.idempotency_families(self.builder.idempotency),
            *exporters.websocket_families(self.builder.websocket_stats),
            *exporters.webhook_families(
                None if self.builder.webhooks is None else self.builder.webhooks.counts
            ),
            *exporters.instance_families(self.services, self.loop.time() * 1000),
            *exporters.process_families(self.loop, self.overload, self.connections),
            *self.process_info.families(),
        ]

    async def render_metrics(self, request: Request) -> Response:
        # The supervisor's reload counts once, after the workers' families are merged.
        directory = self.worker_metrics.directory
        reloads = exporters.reload_families(None if directory is None else str(directory))
        return Response(200, [CONTENT_TYPE], render([*self.worker_metrics.families(), *reloads]))

    async def _keys_probe(self) -> str | None:
        assert self.jwks is not None
        return self.jwks.problem()

    async def _redis_probe(self) -> str | None:
        try:
            await self.store.ping()
        except StoreUnavailable as exc:
            return str(exc)
        return None

    def start(self) -> None:
        """Start service discovery and active health checks; the event loop must be running."""
        endpoints = {name: service.endpoints for name, service in self.services.items()}
        self.discovery = open_discovery(self.config, endpoints, lambda: self.loop.time() * 1000)
        health = {name: service.health_check for name, service in self.config.services.items()}
        self.health_checker = HealthChecker(endpoints, health, self.pool, self.signer)
        self.discovery.start()
        self.health_checker.start()
        if self.jwks is not None:
            self.jwks.start()
        if self.api_keys is not None:
            self.api_keys.start()
        self.overload.start()
        self.worker_metrics.start()
        self.operations.start()
        self.breaker_sync = self._breaker_sync()
        if self.breaker_sync is not None:
            self.breaker_sync.start()

    def _breaker_sync(self) -> BreakerSync | None:
        """Breakers shared with the other workers, when they share a keeper (not a Redis:
        each gateway of a fleet keeps its own breakers, as a proxy next to its clients does)."""
        store = self.store
        if self.config.redis_url is not None or not isinstance(store, FallbackStore):
            return None
        from api_gateway.resp.client import RedisClient
        from api_gateway.upstream.breaker_sync import BreakerSync

        assert isinstance(store.primary, RedisClient)
        slot = int(os.environ.get(WORKER_VARIABLE, "0"))
        workers = self.config.server.workers

        def clock_ms() -> float:
            return self.loop.time() * 1000

        return BreakerSync(store.primary, self.services, slot, workers, clock_ms)

    async def stop_background(self) -> None:
        if self.jwks is not None:
            await self.jwks.close()
        if self.api_keys is not None:
            await self.api_keys.close()
        self.overload.stop()
        self.worker_metrics.stop()
        self.operations.stop()
        if self.breaker_sync is not None:
            await self.breaker_sync.close()
        if self.health_checker is not None:
            await self.health_checker.close()
        if self.discovery is not None:
            await self.discovery.close()

    async def close(self) -> None:
        await self.stop_background()
        self.pool.close()
        await self.store.close()
        if self.tracing is not None:
            await self.tracing.close()

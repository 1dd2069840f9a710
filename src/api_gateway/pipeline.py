"""Builds every route's policy chain at start-up: the one place that decides policy order.

    RequestContext (id, client address, timing, security headers, metrics, access log, errors)
      → Cors (when origins are configured)
      └─ dispatch: admin endpoint, or the route's chain (an endpoint override has its own):
           RequestBounds → RateLimit(global, per client IP; not with ``global: false``)
           → QueryValidation → Authenticate → ApiKeyLimit (routes that accept API keys)
           → Idempotency (where keys are checked: before the body's validation, so a bad key is
             reported as such, and before the limits, so a replay or a 409 counts against none)
           → PathParams (endpoints with parameter schemas) → JsonBody
           → RateLimit(user) → the route's ``limits`` → its endpoint's ``limits`` (after
             JsonBody: a ``body:`` key reads the parsed body) → StripeWebhook (Stripe's endpoints)
           → VenueDomain → VenueIsolation → HeaderTrust
           → WebSocketGate (a handshake: straight to the call)
           → ResponseCache (routes whose ``cache`` is enabled)
           → UpstreamCall (deadline, circuit breaker, balancer, outlier detection, retries)

VenueDomain and VenueIsolation need the token's claims, so they follow Authenticate; they follow
the endpoint limit too, so a flood that is refused anyway costs the venue service nothing.

A policy a route does not need is not in its chain at all. A route's ``exempt`` paths (its
service's ``/health`` and ``/metrics``, public, GET and HEAD) have its chain without any rate
limit, and without API-key lookups. StripeWebhook (on only with ``STRIPE_WEBHOOK_SECRET``) sits
in the chains of the endpoints ``webhooks.stripe.paths`` names, which every route with one below
it gets as a POST endpoint: no other request pays for it. It follows the limits, so a flood of
forged deliveries is refused before any of it is hashed.

Aggregates (``/api/v1/aggregate/...``) have the same chain up to HeaderTrust, without body or
query validation and the response cache, and end in ``Aggregate`` instead of UpstreamCall.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import BuiltinMethodType, FunctionType, MethodType
from typing import Final

from api_gateway.aggregation.aggregate import Aggregate, AggregateRoutes
from api_gateway.aggregation.fetch import Fetcher
from api_gateway.aggregation.templates import literal_prefix
from api_gateway.cache import open_cache
from api_gateway.config.aggregates import AggregateConfig
from api_gateway.config.loader import HTTP_METHODS
from api_gateway.config.settings import (
    EndpointConfig,
    GatewayConfig,
    LimitConfig,
    RouteConfig,
    RouteLimitConfig,
)
from api_gateway.config.validation import ValidationConfig
from api_gateway.cross_site import CookieOrigins
from api_gateway.directory import VenueDirectory
from api_gateway.hosts import PlatformHosts
from api_gateway.limit_keys import compile_key
from api_gateway.limiter import Rate
from api_gateway.network import AddressKeys, TrustedProxies
from api_gateway.origins import AllowedOrigins
from api_gateway.overload import OverloadMonitor
from api_gateway.path_templates import PathTemplate, is_template
from api_gateway.policies.auth import Authenticate, KeyChecker
from api_gateway.policies.bounds import BodyGate, RequestBounds
from api_gateway.policies.cache import Flights, ResponseCache, RouteCache
from api_gateway.policies.context import RequestContext
from api_gateway.policies.cors import Cors
from api_gateway.policies.domains import VenueDomain
from api_gateway.policies.headers import HeaderTrust
from api_gateway.policies.idempotency import Idempotency
from api_gateway.policies.optional_auth import OptionalAuthenticate
from api_gateway.policies.params import PathParams
from api_gateway.policies.ratelimit import (
    KeyFunction,
    RateLimit,
    by_client_ip,
    by_identity,
    by_user,
    by_user_or_ip,
)
from api_gateway.policies.tenancy import VenueIsolation
from api_gateway.policies.validation import JsonBody, QueryValidation
from api_gateway.policies.websocket import WebSocketGate, WebSocketStats
from api_gateway.revocation import open_revocations
from api_gateway.routing import PublicPaths
from api_gateway.stores import Store
from api_gateway.stores.idempotency import open_idempotency
from api_gateway.tokens import TokenVerifier
from api_gateway.types import Handler, Policy, Pool, Request, Response
from api_gateway.upstream.call import AttemptHook, UpstreamCall
from api_gateway.upstream.service import UpstreamService
from api_gateway.venue_refs import VenueRefs
from api_gateway.webhook_endpoints import open_stripe_webhooks
from api_gateway.websocket import OpenTunnels

PARAMETERS: Final = re.compile(r";[^/]*")
GLOBAL_LIMIT: Final = "global"
USER_LIMIT: Final = "user"
AGGREGATE_BASE: Final = GatewayConfig.API_PREFIX + "/aggregate"
AGGREGATE_METHODS: Final = frozenset({"GET", "HEAD"})
# TRACE and CONNECT have no business behind an API gateway (TRACE echoes credentials).
STANDARD_METHODS: Final = HTTP_METHODS
PROBE_METHODS: Final = frozenset({"GET", "HEAD"})
FUNCTION_TYPES: Final = (FunctionType, MethodType, BuiltinMethodType)


def chain(policies: Sequence[Policy], terminal: Handler) -> Handler:
    """Bind policies around a terminal handler, outermost first."""
    handler = terminal
    for policy in reversed(policies):
        handler = _bind(policy, handler)
    return handler


def _bind(policy: Policy, call_next: Handler) -> Handler:
    # Bound once (COMPILED.md §6). A function or a bound method (tracing's server span) is its
    # own call: its ``__call__`` would be a wrapper around it, a slower call per request.
    call = policy if isinstance(policy, FUNCTION_TYPES) else policy.__call__

    def link(request: Request) -> Awaitable[Response]:
        return call(request, call_next)

    return link


def global_limit(route: RouteConfig, endpoint: EndpointConfig | None) -> bool:
    """Whether the per-address limit applies: the endpoint's ``global``, else its route's."""
    if endpoint is not None and endpoint.global_limit is not None:
        return endpoint.global_limit
    return route.global_limit


def outer_policies(
    config: GatewayConfig, context: RequestContext, server_span: Policy | None = None
) -> list[Policy]:
    """The policies every request passes, before its route is known (tracing's server span,
    when on, outermost: it times everything else)."""
    policies: list[Policy] = [context] if server_span is None else [server_span, context]
    if config.cors_origins:
        policies.append(Cors(config.cors_origins, config.cors_credentials, config.cors_max_age_s))
    return policies


class Endpoints:
    """A route whose endpoints (method + path) have chains of their own.

    Matching ignores case, a trailing slash and ``;parameters``: a service that routes
    ``/Purchase/;x`` as ``/purchase`` must not let it slip past the purchase limit. Exact paths
    win; then templates (``/{id}/refund``, path_templates.py) in the order configured, tried only
    when no exact path matched (and only on routes that have them).
    """

    def __init__(
        self,
        prefix: str,
        default: Handler,
        special: dict[tuple[str, str], Handler],
        templates: list[tuple[str, PathTemplate, Handler]] | None = None,
        exempt: Sequence[str] = (),
        probe: Handler | None = None,
    ):
        self.prefix_length, self.default = len(prefix), default
        self.special = {
            (method, path.lower()): handler for (method, path), handler in special.items()
        }
        self.templates = templates or []
        # Probe paths match exactly as Authenticate's public paths do (case, parameters), so a
        # request that skips the limits is always a public one: ``/HEALTH`` or ``/health;x``
        # is not, and keeps its limits.
        self.exempt, self.probe = frozenset(exempt), probe

    def __call__(self, request: Request) -> Awaitable[Response]:
        rest = request.path[self.prefix_length :]
        raw = rest
        if ";" in rest:
            rest = PARAMETERS.sub("", rest)
        method, path = request.method, rest.rstrip("/").lower()
        handler = self.special.get((method, path))
        if handler is None:
            probe = self.probe
            if probe is not None and method in PROBE_METHODS and raw.rstrip("/") in self.exempt:
                return probe(request)
            handler = self._templated(method, path) if self.templates else self.default
        return handler(request)

    def _templated(self, method: str, rest: str) -> Handler:
        for wanted, template, handler in self.templates:
            if wanted == method and template.matches(rest):
                return handler
        return self.default


class RouteBuilder:
    """Turns each configured route into its compiled handler."""

    def __init__(
        self,
        config: GatewayConfig,
        pool: Pool,
        verifier: TokenVerifier,
        store: Store,
        services: Mapping[str, UpstreamService],
        clock_ms: Callable[[], float],
        port: int,
        directory: VenueDirectory | None = None,
        overload: OverloadMonitor | None = None,
        around_attempt: AttemptHook | None = None,
        api_keys: KeyChecker | None = None,
        key_limit: Policy | None = None,
    ) -> None:
        self.config, self.pool, self.verifier, self.store = config, pool, verifier, store
        # API keys, on routes that accept them (``auth: [jwt, api_key]``), and their own limit.
        self.api_keys, self.key_limit = api_keys, key_limit
        self.services, self.clock_ms, self.port = services, clock_ms, port
        self.overload, self.around_attempt = overload, around_attempt
        # Every rate limit and response cache built, for the metrics exporter.
        self.limits: list[RateLimit] = []
        self.caches: list[ResponseCache] = []
        # Each chain built, as the admin API's /routes shows it: where, and its steps in order.
        self.chains: list[tuple[dict[str, object], list[object]]] = []
        self.trusted = TrustedProxies(config.server.trusted_proxies)
        self.addresses = AddressKeys(config.rate_limit_ipv6_prefix)
        self.bodies = BodyGate(config.server.max_bodies_per_client, self.addresses)
        # One instance per failure mode, shared by the routes with that mode: the same buckets.
        self.global_rate_limits = {
            closed: self._rate_limit(GLOBAL_LIMIT, by_client_ip, closed) for closed in (False, True)
        }
        self.user_rate_limits = {
            closed: self._rate_limit(USER_LIMIT, by_user, closed)
            for closed in (False, True)
            if USER_LIMIT in config.rate_limits
        }
        self.directory = directory
        tenancy = config.tenancy
        self.venue_domain = None
        if directory is not None and tenancy.domain_routing:
            platform = PlatformHosts(tenancy.platform_domains)
            self.venue_domain = VenueDomain(directory, platform, self.trusted, tenancy.admin_roles)
        self.cache = open_cache(config, store)
        # auth-service's revoked tokens, checked inside Authenticate (with REDIS_URL only).
        self.revocations = open_revocations(config, store, verifier.clock)
        self.tunnels = OpenTunnels(config.server.max_websockets)
        # Every route's (and endpoint's) WebSocket figures, by route, for the metrics exporter.
        self.websocket_stats: list[tuple[str, WebSocketStats]] = []
        self.flights = Flights()
        # Where a token from the cookie may be used from: the gateway's host, listed origins.
        self.cookie_origins = CookieOrigins(AllowedOrigins(config.cors_origins))
        # Verified Stripe webhooks: None while no secret is set (a warning says so).
        self.webhooks = open_stripe_webhooks(config, store, clock_ms)
        self.idempotency_store = open_idempotency(config, store)
        # Every route's (and endpoint's) idempotency policy, for the metrics exporter.
        self.idempotency: list[tuple[str, Idempotency]] = []

    def build(self, route: RouteConfig) -> Handler:
        prefix = GatewayConfig.API_PREFIX + route.prefix
        default = self._chain(route, prefix, None)
        endpoints = self.endpoints(route)
        if not endpoints and not route.exempt:
            return default
        # Services' probes: GET and HEAD only, so an exempt path is never a way to write.
        probe = self._chain(route, prefix, None, exempt=True) if route.exempt else None
        special = {}
        templates = []
        for endpoint in endpoints:
            handler = self._chain(route, prefix, endpoint)
            template = PathTemplate(endpoint.path) if is_template(endpoint.path) else None
            for method in sorted(endpoint.methods):
                if template is None:
                    special[(method, endpoint.path.rstrip("/"))] = handler
                else:
                    templates.append((method, template, handler))
        return Endpoints(prefix, default, special, templates, route.exempt, probe)

    def endpoints(self, route: RouteConfig) -> tuple[EndpointConfig, ...]:
        """The route's endpoints, with the verified webhook endpoints below it."""
        if self.webhooks is None:
            return route.endpoints
        return self.webhooks.endpoints(route)

    def _chain(
        self, route: RouteConfig, prefix: str, endpoint: EndpointConfig | None, exempt: bool = False
    ) -> Handler:
        policies, call = self.route_chain(route, prefix, endpoint, exempt)
        where: dict[str, object] = {"route": prefix, "service": route.service}
        if endpoint is not None:
            where.update(path=endpoint.path, methods=sorted(endpoint.methods))
        elif exempt:
            where.update(paths=list(route.exempt), methods=["GET", "HEAD"], exempt=True)
        else:
            methods = route.methods
            where.update(methods=None if methods is None else sorted(methods))
            where.update(public=list(route.public))
        self.chains.append((where, [*policies, call]))
        return chain(policies, call)

    def route_chain(
        self,
        route: RouteConfig,
        prefix: str,
        endpoint: EndpointConfig | None,
        exempt: bool = False,
    ) -> tuple[list[Policy], UpstreamCall]:
        """The route's (or its endpoint's) policies, outermost first, and its terminal handler:
        the order, pinned by tests/unit/test_policy_order.py."""
        service = self.config.services[route.service]
        timeout_ms = (endpoint and endpoint.timeout_ms) or route.timeout_ms or service.timeout_ms
        key_retries = route.idempotency_key_retries
        if endpoint is not None and endpoint.idempotency_key_retries is not None:
            key_retries = endpoint.idempotency_key_retries
        idempotency = self._idempotency(route, prefix, endpoint, timeout_ms)
        # A valid key makes a POST retry-safe where the gateway checks keys (the service sees it).
        key_retries = key_retries or idempotency is not None
        policies: list[Policy] = [
            RequestBounds(route.methods or STANDARD_METHODS, route.max_body_bytes, self.bodies)
        ]
        limited = not exempt  # a service's probe path passes no gateway limit
        if limited and global_limit(route, endpoint):
            policies.append(self.global_rate_limits[route.fail_closed])
        validation = route.validation
        checks = endpoint.validation if endpoint is not None else None
        query = (validation.query if validation is not None else ()) + (
            checks.query if checks is not None else ()
        )
        if query:
            policies.append(QueryValidation(query))
        policies.append(self._authenticate(route, prefix, limited))
        if limited and self.key_limit is not None and "api_key" in route.auth:
            policies.append(self.key_limit)
        if idempotency is not None:
            policies.append(idempotency)
        if endpoint is not None and checks is not None and checks.params:
            template = PathTemplate(endpoint.path)
            rules = [(name, template.names[name], schema) for name, schema in checks.params]
            policies.append(PathParams(prefix, rules))
        schema = checks.body if checks is not None else None
        if schema is not None or (validation is not None and validation.json_body):
            bounds = validation or ValidationConfig(query=(), json_body=True)
            policies.append(JsonBody(bounds, schema))
        if self.user_rate_limits and limited:
            policies.append(self.user_rate_limits[route.fail_closed])
        if limited:
            policies += self.route_limits(route, prefix, endpoint)
        if endpoint is not None and self.webhooks is not None:
            webhook = self.webhooks.policy(route, endpoint, route.max_body_bytes, timeout_ms)
            if webhook is not None:
                policies.append(webhook)
        policies += self.tenancy_policies(route)
        policies.append(HeaderTrust(self.trusted, self.port))
        call = UpstreamCall(
            self.services[route.service],
            self.pool,
            timeout_ms,
            key_retries,
            self.clock_ms,
            around_attempt=self.around_attempt,
            stream_idle_ms=route.stream_idle_timeout_ms or 0,
        )
        # A handshake goes from here to the upstream call alone: the cache never sees one.
        gate = WebSocketGate(
            route.websocket,
            route.websocket_idle_timeout_ms,
            route.websocket_max_per_user,
            self.tunnels,
            self.addresses,
            call,
        )
        self.websocket_stats.append((prefix, gate.stats))
        policies.append(gate)
        if route.cache is not None and route.cache.enabled:
            policies.append(self._response_cache(route, prefix))
        return policies, call

    def _idempotency(
        self, route: RouteConfig, prefix: str, endpoint: EndpointConfig | None, timeout_ms: int
    ) -> Idempotency | None:
        mode = route.idempotency
        if endpoint is not None and endpoint.idempotency is not None:
            mode = endpoint.idempotency
        if mode == "off":
            return None
        settings = self.config.idempotency
        policy = Idempotency(
            self.idempotency_store,
            mode == "required",
            timeout_ms,
            settings.lock_ms,
            settings.ttl_ms,
            settings.max_body_bytes,
            route.fail_closed,
        )
        self.idempotency.append((prefix, policy))
        return policy

    def _authenticate(self, route: RouteConfig, prefix: str, limited: bool = True) -> Authenticate:
        # A probe path passes no limit, so it looks no API key up either: unlimited lookups of
        # made-up keys would cost the key store what the limits are there to bound.
        keys = self.api_keys if "api_key" in route.auth and limited else None
        return Authenticate(
            self.verifier,
            PublicPaths.parse(route.public),
            prefix,
            self.config.jwt.cookie,
            keys,
            route.alias_of or route.prefix,
            self.revocations,
            route.fail_closed,
            self.cookie_origins,
        )

    def _rate_limit(self, name: str, key: KeyFunction, fail_closed: bool) -> RateLimit:
        return self._new_limit(name, self.config.rate_limits[name], key, fail_closed)

    def _new_limit(
        self, name: str, config: LimitConfig, key: KeyFunction, fail_closed: bool
    ) -> RateLimit:
        rate, factor = Rate.of(config), self.config.overload.tighten_factor
        limit = RateLimit(
            name, rate, self.store, key, self.overload, factor, fail_closed, self.addresses
        )
        self.limits.append(limit)
        return limit

    def route_limits(
        self, route: RouteConfig, prefix: str, endpoint: EndpointConfig | None
    ) -> list[RateLimit]:
        """The route's own limits, then its endpoint's (they add up: an endpoint cannot undo
        a limit of its route)."""
        limits = [self._route_limit(c, route.fail_closed, len(prefix), ()) for c in route.limits]
        if endpoint is not None:
            template = endpoint.path.split("/")
            limits += [
                self._route_limit(c, route.fail_closed, len(prefix), template)
                for c in endpoint.limits
            ]
        return limits

    def _route_limit(
        self,
        config: RouteLimitConfig,
        fail_closed: bool,
        prefix_length: int,
        template: Sequence[str],
    ) -> RateLimit:
        key: KeyFunction
        if config.key == ("ip",):
            key = by_client_ip  # RateLimit's own fast path, with its key cache
        elif config.key == ("user_or_ip",):
            key = by_user_or_ip  # what ``rate_limit: <name>`` has always counted by
        elif config.key == ("user",):
            key = by_identity  # the purchase's: one call, where a composite key costs a few
        else:
            key = compile_key(config.key, self.addresses, prefix_length, template)
        return self._new_limit(config.name, config.limit, key, fail_closed)

    def aggregate_routes(self) -> dict[str, Handler]:
        """Route-table prefix -> handler of the aggregates found under it."""
        fetch = Fetcher(
            self.services, self.pool, self.clock_ms, self.source_isolation(), self.around_attempt
        )
        grouped: dict[str, list[tuple[AggregateConfig, Handler]]] = {}
        for aggregate in self.config.aggregates:
            prefix = AGGREGATE_BASE + literal_prefix(aggregate.path)
            handler = self._aggregate_chain(aggregate, prefix, fetch)
            grouped.setdefault(prefix, []).append((aggregate, handler))
        return {
            prefix: AggregateRoutes(AGGREGATE_BASE, [(a.path, h) for a, h in entries])
            for prefix, entries in grouped.items()
        }

    def _aggregate_chain(self, aggregate: AggregateConfig, prefix: str, fetch: Fetcher) -> Handler:
        policies, terminal = self.aggregate_chain(aggregate, prefix, fetch)
        where: dict[str, object] = {"aggregate": AGGREGATE_BASE + aggregate.path.text}
        self.chains.append((where, [*policies, terminal]))
        return chain(policies, terminal)

    def aggregate_chain(
        self, aggregate: AggregateConfig, prefix: str, fetch: Fetcher
    ) -> tuple[list[Policy], Aggregate]:
        """An aggregate's policies, outermost first, and its terminal handler."""
        policies: list[Policy] = [RequestBounds(AGGREGATE_METHODS, 0)]
        policies.append(self.global_rate_limits[False])
        if aggregate.auth_required:
            policies.append(
                Authenticate(
                    self.verifier,
                    PublicPaths.parse([]),
                    prefix,
                    self.config.jwt.cookie,
                    revocations=self.revocations,
                )
            )
        else:
            policies.append(OptionalAuthenticate(self.verifier, self.revocations))
        if self.user_rate_limits:
            policies.append(self.user_rate_limits[False])
        policies += self.tenancy_policies(prefix.removeprefix(GatewayConfig.API_PREFIX))
        policies.append(HeaderTrust(self.trusted, self.port))
        return policies, Aggregate(aggregate, AGGREGATE_BASE, fetch, self.clock_ms)

    def tenancy_policies(self, route: RouteConfig | str) -> list[Policy]:
        """Domain routing on every route; isolation where a request could name a venue."""
        prefix = route if isinstance(route, str) else route.prefix
        policies: list[Policy] = []
        if self.venue_domain is not None:
            policies.append(self.venue_domain)
        tenancy = self.config.tenancy
        if self.directory is not None and tenancy.venue_isolation:
            patterns = [p for p in tenancy.venue_paths if p.overlaps(prefix)]
            refs = VenueRefs(GatewayConfig.API_PREFIX, patterns, tenancy.venue_params)
            if refs:
                policies.append(VenueIsolation(self.directory, refs, tenancy.admin_roles))
        return policies

    def source_isolation(self) -> VenueIsolation | None:
        """Venue isolation of the paths aggregates build: every pattern, since a source path
        may lie under any route."""
        tenancy = self.config.tenancy
        if self.directory is None or not tenancy.venue_isolation:
            return None
        refs = VenueRefs(GatewayConfig.API_PREFIX, tenancy.venue_paths, tenancy.venue_params)
        return VenueIsolation(self.directory, refs, tenancy.admin_roles)

    def _response_cache(self, route: RouteConfig, prefix: str) -> ResponseCache:
        assert route.cache is not None
        settings = self.config.cache
        max_body = route.cache.max_body_bytes
        cache = ResponseCache(
            self.cache,
            self.flights,
            RouteCache(
                prefix,
                route.cache.ttl_ms,
                route.cache.per_user,
                settings.max_body_bytes if max_body is None else max_body,
                settings.max_ttl_ms,
                # An alias reads and writes its route's resources (config/aliases.py).
                None if route.alias_of is None else GatewayConfig.API_PREFIX + route.alias_of,
            ),
        )
        self.caches.append(cache)
        return cache

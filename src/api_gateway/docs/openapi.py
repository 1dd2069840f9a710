"""The OpenAPI 3.1 document of the gateway, built once at start-up from the compiled config.

It describes what the gateway itself decides (which paths need a token, rate limits, body
limits, validation, caching, the errors it answers) and the gateway's own endpoints; what a
service answers behind a prefix is the service's own business and appears as ``default``.
"""

from __future__ import annotations

from api_gateway import __version__
from api_gateway.config.loader import HTTP_METHODS
from api_gateway.config.settings import EndpointConfig, GatewayConfig, LimitConfig, RouteConfig
from api_gateway.config.validation import FieldRule
from api_gateway.docs.aggregates import TAG, aggregate_components, aggregate_paths
from api_gateway.docs.components import (
    Json,
    components,
    error_refs,
    limit_facts,
    operation_id,
    ref,
)
from api_gateway.docs.gateway_paths import gateway_paths
from api_gateway.http.framing import BODY_METHODS
from api_gateway.path_templates import NAME

API = GatewayConfig.API_PREFIX
# HEAD and OPTIONS go wherever GET does; said once in the description rather than per path.
IMPLIED_METHODS = frozenset({"HEAD", "OPTIONS"})
REST = "/{path}"
STRING: Json = {"type": "string"}
REST_PARAMETER: Json = {
    "name": "path",
    "in": "path",
    "required": True,
    "description": "Any path below the prefix (it may span several segments), forwarded as is.",
    "schema": {"type": "string"},
}
DESCRIPTION = (
    "The single entry point of the TicketToken platform. Every route lives under `/api/v1` and "
    "is matched by segment-exact longest prefix; the service receives the canonical path and "
    "the query unchanged. Paths marked public need no token; every other path needs "
    "`Authorization: Bearer <JWT>`. Errors the gateway answers itself are "
    "`application/problem+json` (RFC 9457). Answers under a rate limit carry `RateLimit-*` and "
    "`X-RateLimit-*` headers; a refusal is 429 with `Retry-After`. HEAD and OPTIONS are "
    "accepted wherever GET is (a CORS preflight is answered by the gateway itself)."
)


def build_document(config: GatewayConfig) -> Json:
    paths: Json = dict(gateway_paths())
    for route in config.routes:
        paths.update(RoutePaths(config, route).paths())
    paths.update(aggregate_paths(config))
    document_components = components()
    document_components["schemas"].update(aggregate_components())
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "TicketToken API gateway",
            "version": __version__,
            "description": DESCRIPTION,
        },
        "servers": [{"url": "/"}],
        "tags": [{"name": "gateway", "description": "The gateway's own endpoints."}]
        + [
            {"name": name, "description": f"Proxied to {name}-service."}
            for name in sorted({r.service for r in config.routes})
        ]
        + ([TAG] if config.aggregates else []),
        "security": [{"bearerAuth": []}, {"cookieAuth": []}],
        "paths": paths,
        "components": document_components,
    }


class RoutePaths:
    """The path items of one route: its prefix, the subtree below it, and the concrete paths
    (public entries, endpoint overrides) the gateway treats differently."""

    def __init__(self, config: GatewayConfig, route: RouteConfig) -> None:
        self.config, self.route = config, route
        self.prefix = API + route.prefix
        self.exact = {p.rstrip("/") or "/" for p in route.public if not p.endswith("/*")}
        self.subtrees = [p[:-2] for p in route.public if p.endswith("/*")]
        self.methods = sorted((route.methods or HTTP_METHODS) - IMPLIED_METHODS)

    def paths(self) -> Json:
        concrete = ["", REST, *sorted(self.exact)]
        concrete += [p for s in self.subtrees if s for p in (s, s + REST)]
        concrete += [e.path for e in self.route.endpoints]
        return {
            self.prefix + sub.rstrip("/"): self.path_item(sub) for sub in dict.fromkeys(concrete)
        }

    def is_public(self, sub: str) -> bool:
        if sub.rstrip("/") in self.exact or "" in self.subtrees:
            return True
        return any(sub == s or sub.startswith(s + "/") for s in self.subtrees if s)

    def endpoint(self, sub: str, method: str) -> EndpointConfig | None:
        for endpoint in self.route.endpoints:
            if endpoint.path.rstrip("/").lower() == sub.lower() and method in endpoint.methods:
                return endpoint
        return None

    def security(self, public: bool) -> list[Json]:
        keys = "api_key" in self.route.auth
        if public:
            return [{}, {"apiKeyAuth": []}] if keys else []
        schemes: list[Json] = [{"bearerAuth": []}, {"cookieAuth": []}]
        return [*schemes, {"apiKeyAuth": []}] if keys else schemes

    def path_item(self, sub: str) -> Json:
        return {m.lower(): self.operation(sub, m) for m in self.methods}

    def operation(self, sub: str, method: str) -> Json:
        route, public = self.route, self.is_public(sub)
        endpoint = self.endpoint(sub, method)
        validation = route.validation
        parameters = [REST_PARAMETER] if sub.endswith(REST) else self.template_parameters(sub)
        if validation is not None:
            parameters += [query_parameter(rule) for rule in validation.query]
        checks = endpoint.validation if endpoint is not None else None
        if checks is not None:
            parameters += [query_parameter(rule) for rule in checks.query]
        keys = self.idempotency(method, endpoint)
        if keys != "off":
            parameters.append(idempotency_key_parameter(keys == "required"))
        operation: Json = {
            "operationId": operation_id(method, self.prefix + sub),
            "tags": [route.service],
            "summary": f"{'Public' if public else 'Needs a token'}: {route.service}-service",
            "security": self.security(public),
            "parameters": parameters,
            "responses": self.responses(method, public, endpoint),
            "x-gateway": self.facts(method, endpoint),
        }
        if not parameters:
            del operation["parameters"]
        if method in BODY_METHODS:
            json_only = validation is not None and validation.json_body
            schema: Json = {}
            if checks is not None and checks.body_document is not None:
                json_only, schema = True, dict(checks.body_document)
                schema.pop("$schema", None)
            operation["requestBody"] = {
                "description": f"Forwarded byte for byte; at most {route.max_body_bytes} bytes.",
                "content": {("application/json" if json_only else "*/*"): {"schema": schema}},
            }
        return operation

    def template_parameters(self, sub: str) -> list[Json]:
        """An endpoint template's ``{name}`` segments, with their schemas where declared."""
        declared: dict[str, Json] = {}
        for endpoint in self.route.endpoints:
            if endpoint.path == sub and endpoint.validation is not None:
                declared.update(endpoint.validation.params_documents)
        return [
            {"name": name, "in": "path", "required": True, "schema": declared.get(name, STRING)}
            for name in NAME.findall(sub)
        ]

    def responses(self, method: str, public: bool, endpoint: EndpointConfig | None) -> Json:
        cached = self.caches() and method in ("GET", "HEAD")
        statuses = ["400", "403", "405", "429", "502", "503", "504"]
        if not public:
            statuses.append("401")
        if method in BODY_METHODS:
            statuses.append("413")
            if self.route.validation is not None and self.route.validation.json_body:
                statuses.append("415")
        if self.idempotency(method, endpoint) != "off":
            statuses += ["409", "422"]
        forwarded = ref("responses", "ForwardedCacheable" if cached else "Forwarded")
        return {"default": forwarded, **error_refs(sorted(statuses))}

    def idempotency(self, method: str, endpoint: EndpointConfig | None) -> str:
        """Whether the gateway checks Idempotency-Key here: required, optional or off."""
        if method not in ("POST", "PATCH"):
            return "off"
        if endpoint is not None and endpoint.idempotency is not None:
            return endpoint.idempotency
        return self.route.idempotency

    def caches(self) -> bool:
        return self.route.cache is not None and self.route.cache.enabled

    def facts(self, method: str, endpoint: EndpointConfig | None) -> Json:
        route = self.route
        service = self.config.services[route.service]
        limits = [
            self.limit(name) for name in ("global", "user") if name in self.config.rate_limits
        ]
        global_limit = route.global_limit
        if endpoint is not None and endpoint.global_limit is not None:
            global_limit = endpoint.global_limit
        if not global_limit:
            limits.pop(0)
        own = route.limits + (endpoint.limits if endpoint is not None else ())
        limits += [self.limit(c.name, c.limit, c.key) for c in own]
        timeout = (endpoint and endpoint.timeout_ms) or route.timeout_ms or service.timeout_ms
        facts: Json = {
            "service": route.service,
            "timeout_ms": timeout,
            "max_body_bytes": route.max_body_bytes,
            "rate_limits": limits,
        }
        if self.idempotency(method, endpoint) != "off":
            facts["idempotency"] = self.idempotency(method, endpoint)
        if self.caches() and method in ("GET", "HEAD"):
            assert route.cache is not None
            facts["cache"] = {"per_user": route.cache.per_user, "ttl_ms": route.cache.ttl_ms}
        return facts

    def limit(self, name: str, limit: LimitConfig | None = None, key: tuple[str, ...] = ()) -> Json:
        return limit_facts(name, limit or self.config.rate_limits[name], key)


def idempotency_key_parameter(required: bool) -> Json:
    return {
        "name": "Idempotency-Key",
        "in": "header",
        "required": required,
        "description": "Makes a repeat safe: the first answer is kept and replayed "
        "(`Idempotency-Replayed: true`); 409 while the first is in flight, 422 for another "
        "request with the same key.",
        "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,128}$"},
    }


def query_parameter(rule: FieldRule) -> Json:
    schema: Json = {"type": rule.type}
    for key, value in (
        ("minimum", rule.minimum),
        ("maximum", rule.maximum),
        ("minLength", rule.min_length),
        ("maxLength", rule.max_length),
    ):
        if value is not None:
            schema[key] = int(value) if rule.type == "integer" else value
    if rule.enum:
        schema["enum"] = list(rule.enum)
    return {"name": rule.name, "in": "query", "required": rule.required, "schema": schema}

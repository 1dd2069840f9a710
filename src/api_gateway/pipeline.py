"""Builds every route's policy chain at start-up: the one place that decides policy order.

    RequestContext (id, client address, timing, error boundary)      -- every request
      └─ router: admin endpoints, or the route's own chain:
           MethodFilter → BodyLimit → Authenticate → HeaderTrust → Forwarder (terminal)

A policy a route does not need is not in its chain at all.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence

from api_gateway.config.settings import GatewayConfig, RouteConfig
from api_gateway.http.client import UpstreamPool
from api_gateway.network import TrustedProxies
from api_gateway.policies.auth import Authenticate
from api_gateway.policies.headers import HeaderTrust
from api_gateway.policies.limits import BodyLimit, MethodFilter
from api_gateway.routing import PublicPaths
from api_gateway.tokens import TokenVerifier
from api_gateway.types import Handler, Policy, Request, Response
from api_gateway.upstream.forward import Forwarder


def chain(policies: Sequence[Policy], terminal: Handler) -> Handler:
    """Bind policies around a terminal handler, outermost first."""
    handler = terminal
    for policy in reversed(policies):
        handler = _bind(policy, handler)
    return handler


def _bind(policy: Policy, call_next: Handler) -> Handler:
    def link(request: Request) -> Awaitable[Response]:
        return policy(request, call_next)

    return link


class RouteBuilder:
    """Turns each configured route into its compiled handler."""

    def __init__(
        self,
        config: GatewayConfig,
        pool: UpstreamPool,
        verifier: TokenVerifier,
        trusted: TrustedProxies,
        port: int,
    ) -> None:
        self.config, self.pool, self.verifier = config, pool, verifier
        self.trusted, self.port = trusted, port

    def build(self, route: RouteConfig) -> Handler:
        prefix = GatewayConfig.API_PREFIX + route.prefix
        service = self.config.services[route.service]
        timeout_ms = route.timeout_ms or service.timeout_ms
        policies: list[Policy] = []
        if route.methods is not None:
            policies.append(MethodFilter(route.methods))
        policies.append(BodyLimit(route.max_body_bytes))
        policies.append(Authenticate(self.verifier, PublicPaths.parse(route.public), prefix))
        policies.append(HeaderTrust(self.trusted, self.port))
        return chain(policies, Forwarder(service, self.pool, timeout_ms))

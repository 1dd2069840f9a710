"""The gateway application: everything built once at start-up, then one call per request."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from time import perf_counter

from api_gateway.admin import Admin
from api_gateway.config.settings import GatewayConfig
from api_gateway.errors import GatewayError, RouteNotFound, problem_response
from api_gateway.http.client import PoolSettings, UpstreamPool
from api_gateway.network import TrustedProxies
from api_gateway.pipeline import RouteBuilder, chain
from api_gateway.policies.context import RequestContext, new_request_id, stamp
from api_gateway.routing import RouteTable, normalize, split_target
from api_gateway.tokens import TokenVerifier
from api_gateway.types import Handler, Request, Response


class Gateway:
    def __init__(self, config: GatewayConfig, loop: asyncio.AbstractEventLoop, port: int) -> None:
        self.config, self.loop = config, loop
        upstream = config.upstream
        self.pool = UpstreamPool(
            loop,
            PoolSettings(
                upstream.connect_timeout_ms / 1000,
                upstream.max_idle_per_instance,
                upstream.idle_timeout_ms / 1000,
            ),
        )
        trusted = TrustedProxies(config.server.trusted_proxies)
        builder = RouteBuilder(config, self.pool, TokenVerifier(config.jwt), trusted, port)
        self.routes: RouteTable[Handler] = RouteTable()
        for route in config.routes:
            self.routes.add(GatewayConfig.API_PREFIX + route.prefix, builder.build(route))
        self.admin = Admin(config, self.pool)
        self.exact: dict[str, Handler] = self.admin.endpoints()
        self.handler = chain([RequestContext(trusted, perf_counter)], self.dispatch)

    def handle(self, request: Request) -> Awaitable[Response]:
        return self.handler(request)

    async def dispatch(self, request: Request) -> Response:
        path, request.query = split_target(request.target)
        request.path = normalize(path)
        handler = self.exact.get(request.path)
        if handler is None:
            match = self.routes.match(request.path)
            if match is None:
                raise RouteNotFound(f"no route for {request.path}")
            handler = match[1]
        return await handler(request)

    def reject(self, error: GatewayError, peer_ip: str) -> Response:
        request_id = new_request_id()
        response = problem_response(error, request_id)
        now = perf_counter()
        stamp(response.headers, request_id, now, now)
        return response

    def close(self) -> None:
        self.pool.close()

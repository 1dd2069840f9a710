"""``api-gateway demo``: stub services for all 19 backends on loopback, and a gateway in front.

Each stub answers every request with JSON describing what it received, so the printed ``curl``
lines show the gateway's work: the route chosen, the canonical path, and the identity headers
it added from the token.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from collections.abc import Callable
from dataclasses import replace

import orjson
import uvloop

from api_gateway import config as config_module
from api_gateway.config.admin import AdminListenError
from api_gateway.config.settings import GatewayConfig, Instance
from api_gateway.errors import GatewayError, problem_response
from api_gateway.http.server import Connections, HttpConnection, ServerBounds
from api_gateway.observability.logging import configure
from api_gateway.serve import admin_socket, listening_socket, serve
from api_gateway.tokens import mint
from api_gateway.types import Request, Response

DEMO_TENANT = "demo-tenant"
ECHOED = (b"x-tenant-id", b"x-user-id", b"x-user-role", b"x-request-id", b"x-forwarded-for")


class StubService:
    """A backend stand-in: 200 with a JSON echo of the request it saw."""

    def __init__(self, name: str) -> None:
        self.name = name

    async def handle(self, request: Request) -> Response:
        if self.name == "venue" and request.header(b"x-forwarded-for") is None:
            # Not a client's request passed on, but the gateway asking about a venue.
            return _venue_lookup(request.target.decode("latin-1"))
        body = request.body
        size = len(body) if isinstance(body, bytes) else await _drain(body)
        path = request.target.decode("latin-1")
        seen = {k.decode(): v.decode("latin-1") for k, v in request.headers if k in ECHOED}
        if path.endswith("/health"):
            document: dict[str, object] = {"status": "ok", "service": self.name}
        else:
            document = {
                "service": f"{self.name}-service",
                "method": request.method,
                "path": path,
                "body_bytes": size,
                "headers": seen,
            }
            if self.name == "event":
                document["venueId"] = "7"  # what the event details aggregate looks the venue up by
        return Response(200, [(b"content-type", b"application/json")], orjson.dumps(document))

    def reject(self, error: GatewayError, peer_ip: str) -> Response:
        return problem_response(error, "")


def _venue_lookup(path: str) -> Response:
    """The gateway's own questions to venue-service: every demo venue is the demo tenant's, and
    no custom domain is registered."""
    venue_id = path.removeprefix("/api/v1/venues/").split("/")[0]
    if path.startswith("/api/v1/branding/domain/") or not venue_id:
        return Response(404, [(b"content-type", b"application/json")], b"{}")
    document = {"id": venue_id, "tenantId": DEMO_TENANT}
    return Response(200, [(b"content-type", b"application/json")], orjson.dumps(document))


async def _drain(body: object) -> int:
    size = 0
    async for chunk in body:  # type: ignore[attr-defined]
        size += len(chunk)
    return size


def _free_socket() -> socket.socket:
    return listening_socket("127.0.0.1", 0, reuse_port=False)


def _stub_factory(
    stub: StubService, connections: Connections, port: int
) -> Callable[[], HttpConnection]:
    return lambda: HttpConnection(stub, ServerBounds(), connections, port)


async def _run(
    config: GatewayConfig,
    gateway_socket: socket.socket,
    admin: socket.socket | None,
    banner: str,
) -> None:
    loop = asyncio.get_running_loop()
    connections = Connections(loop)
    services = {}
    for name, service in config.services.items():
        sock = _free_socket()
        port = sock.getsockname()[1]
        await loop.create_server(_stub_factory(StubService(name), connections, port), sock=sock)
        services[name] = replace(service, instances=(Instance("127.0.0.1", port),))
    # The stubs listen and the gateway's socket already queues connections: the lines work now.
    print(banner, flush=True)
    await serve(replace(config, services=services), gateway_socket, admin_sock=admin)


def run(port: int) -> int:
    secret = os.environ.get("JWT_SECRET") or os.urandom(24).hex()
    env = {**os.environ, "JWT_SECRET": secret, "LOG_LEVEL": os.environ.get("LOG_LEVEL", "warn")}
    config = config_module.load(None, env)
    configure(config.log_level)
    try:
        gateway_socket = listening_socket("127.0.0.1", port, reuse_port=False)
    except OSError as exc:
        reason = exc.strerror or exc
        print(f"api-gateway: cannot listen on 127.0.0.1:{port}: {reason} (--port picks another)",
              file=sys.stderr)  # fmt: skip
        return 1
    token = mint(config.jwt, "demo-user", DEMO_TENANT, "admin", 3600, "demo@tickettoken.io")
    admin = _admin_socket(config)
    base = f"http://127.0.0.1:{gateway_socket.getsockname()[1]}"
    uvloop.run(_run(config, gateway_socket, admin, _banner(base, token, admin)))
    return 0


def _banner(base: str, token: str, admin: socket.socket | None) -> str:
    return f"""api-gateway demo: 19 stub services and the gateway at {base} (Ctrl-C stops)
{_admin_line(admin)}
Demo access token (tenant demo-tenant, user demo-user, role admin, valid 1 h):
  TOKEN={token}

Try:
  curl -s {base}/health
  curl -s {base}/api/v1/events/42 -H "Authorization: Bearer $TOKEN"
  curl -s {base}/api/v1/tickets/7 -H "Authorization: Bearer $TOKEN" -H "X-Tenant-ID: forged"
  curl -s {base}/api/v1/search/events?q=jazz
  curl -s {base}/api/v1/auth/login --json '{{"email":"fan@example.com","password":"s3cret-pw"}}'
  curl -s {base}/api/v1/auth/login --json '{{"email":"fan"}}'   # 400: each field named
  curl -s {base}/api/v1/venues/7 -H "Authorization: Bearer $TOKEN"   # a venue of your tenant
  curl -s -i {base}/api/v1/venues/1        # no token: 401 problem+json
  curl -s {base}/api/v1/aggregate/events/42 -H "Authorization: Bearer $TOKEN"  # 4 services merged
"""


def _admin_socket(config: GatewayConfig) -> socket.socket | None:
    """The status page's listener; the demo runs without it, saying why, when its port is
    taken (a gateway already running, say)."""
    try:
        return admin_socket(config)
    except AdminListenError as exc:
        print(f"api-gateway demo: no status page: {exc}", file=sys.stderr)
        return None


def _admin_line(admin: socket.socket | None) -> str:
    if admin is None:
        return ""
    host, port = admin.getsockname()[:2]
    return f"""Status page and admin API: http://{host}:{port}/ (ADMIN_PORT changes the port)
"""

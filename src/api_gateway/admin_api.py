"""The admin listener's application: the admin API and the live status page.

Served on its own socket (``ADMIN_HOST``:``ADMIN_PORT``) by the same data plane as the traffic
port, with its own connections. Every request must come from an ``admin.allow`` address (403
otherwise) and, when ``ADMIN_TOKEN`` is set, carry ``Authorization: Bearer <token>`` (401). All
answers are JSON (errors problem+json) but ``/`` (the status page) and ``/metrics`` (text).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import TYPE_CHECKING, Final

import orjson

from api_gateway import __version__
from api_gateway.admin import json_response
from api_gateway.admin_health import merged_health
from api_gateway.config_view import config_document
from api_gateway.errors import (
    BadRequest,
    Forbidden,
    GatewayError,
    MethodNotAllowed,
    PayloadTooLarge,
    ReloadRefused,
    ReloadTimedOut,
    ReloadUnavailable,
    RouteNotFound,
    Unauthorized,
    problem_response,
)
from api_gateway.http.body import read_whole
from api_gateway.journal import command
from api_gateway.network import TrustedProxies
from api_gateway.observability.logging import LEVELS
from api_gateway.policies.context import new_request_id
from api_gateway.reload_status import read_reload_status
from api_gateway.reloading import request_reload
from api_gateway.routing import normalize, split_target
from api_gateway.status_page import PAGE
from api_gateway.types import Request, Response

if TYPE_CHECKING:
    from api_gateway.gateway import Gateway

log = logging.getLogger("api_gateway.admin")
MAX_BODY_BYTES: Final = 65536
ADMIN_TASK_NAME: Final = "admin-request"
PAGE_PATH: Final = "/"
# How long a command waits for every worker to apply it before answering anyway.
COMMAND_TIMEOUT_S: Final = 2.0
# How long POST /reload waits for the supervisor to replace every worker (a roll waits for each
# new worker to listen, up to 30 s each; most take well under a second).
RELOAD_TIMEOUT_S: Final = 60.0
HTML: Final = (b"content-type", b"text/html; charset=utf-8")
NO_STORE: Final = (b"cache-control", b"no-store")
Action = Callable[[Request, list[str]], Awaitable[Response]]


class AdminApi:
    def __init__(self, gateway: Gateway, token: str, directory: str | None) -> None:
        self.gateway, self.directory = gateway, directory
        self.token = token.encode()
        self.allowed = TrustedProxies(gateway.config.admin_allow)
        self.operations = gateway.operations
        # path -> method -> action; templates below by their first segments.
        self.exact: dict[str, dict[str, Action]] = {
            PAGE_PATH: {"GET": self.page},
            "/health": {"GET": self.health},
            "/ready": {"GET": self.ready},
            "/live": {"GET": self.live},
            "/metrics": {"GET": self.metrics},
            "/config": {"GET": self.config},
            "/routes": {"GET": self.routes},
            "/log-level": {"GET": self.get_log_level, "PUT": self.set_log_level},
            "/reload": {"POST": self.reload_request},
        }

    # the App protocol

    def handle(self, request: Request) -> Awaitable[Response]:
        return self._answer(request)

    def reject(self, error: GatewayError, peer_ip: str) -> Response:
        return problem_response(error, new_request_id())

    async def _answer(self, request: Request) -> Response:
        # The data plane names the task of a request in flight; an operator's request is not
        # client traffic for gateway_requests_in_flight or the overload monitor.
        task = asyncio.current_task()
        if task is not None:
            task.set_name(ADMIN_TASK_NAME)
        request_id = new_request_id()
        try:
            path, _ = split_target(request.target)
            request.path = normalize(path)
            # The status page's HTML holds no data, and a browser cannot send a bearer token
            # with a navigation: it is served without one, and asks for it (README).
            self._authorize(request, token=request.path != PAGE_PATH)
            log.debug("admin request", extra={"method": request.method, "path": request.path})
            action, arguments = self._route(request)
            response = await action(request, arguments)
        except GatewayError as error:
            response = problem_response(error, request_id)
        response.headers.append((b"x-request-id", request_id.encode()))
        return response

    def _authorize(self, request: Request, token: bool = True) -> None:
        if not self.allowed.contains(request.peer_ip):
            raise Forbidden("the admin API answers the addresses in admin.allow only")
        if not self.token or not token:
            return
        header = request.header(b"authorization") or b""
        scheme, _, credential = header.partition(b" ")
        if scheme.lower() != b"bearer" or not credential.strip():
            raise Unauthorized("the admin API needs Authorization: Bearer <ADMIN_TOKEN>", "")
        if not hmac.compare_digest(credential.strip(), self.token):
            raise Unauthorized("the admin token is not valid")

    def _route(self, request: Request) -> tuple[Action, list[str]]:
        path = request.path
        methods: dict[str, Action] | None = self.exact.get(path)
        arguments: list[str] = []
        if methods is None:
            parts = path.strip("/").split("/")
            if len(parts) == 5 and parts[0] == "services" and parts[2] == "instances":
                if parts[4] in ("eject", "restore"):
                    methods, arguments = {"POST": self.instance}, [parts[1], parts[3], parts[4]]
            elif len(parts) == 4 and parts[0] == "services" and parts[2:] == ["breaker", "reset"]:
                methods, arguments = {"POST": self.breaker_reset}, [parts[1]]
        if methods is None:
            raise RouteNotFound(f"no admin endpoint {path}")
        action = methods.get(request.method)
        if action is None and request.method == "HEAD":
            action = methods.get("GET")
        if action is None:
            allow = ", ".join(methods).encode()
            raise MethodNotAllowed(f"{path} answers {allow.decode()}", [(b"allow", allow)])
        return action, arguments

    # endpoints

    async def page(self, request: Request, arguments: list[str]) -> Response:
        return Response(200, [HTML, NO_STORE], PAGE)

    async def live(self, request: Request, arguments: list[str]) -> Response:
        return json_response(200, {"status": "alive"})

    async def ready(self, request: Request, arguments: list[str]) -> Response:
        status, document = await self.gateway.admin.readiness_document(reasons=True)
        return json_response(status, document)

    async def health(self, request: Request, arguments: list[str]) -> Response:
        _, readiness = await self.gateway.admin.readiness_document(reasons=True)
        document = merged_health(
            self.operations.every_state(),
            __version__,
            asdict(read_reload_status(self.directory)),
            readiness,
        )
        return json_response(200, document)

    async def metrics(self, request: Request, arguments: list[str]) -> Response:
        return await self.gateway.render_metrics(request)

    async def config(self, request: Request, arguments: list[str]) -> Response:
        return json_response(200, config_document(self.gateway.config))

    async def routes(self, request: Request, arguments: list[str]) -> Response:
        routes = [
            {**where, "policies": [step_name(step) for step in steps]}
            for where, steps in self.gateway.builder.chains
        ]
        return json_response(200, {"routes": routes})

    async def get_log_level(self, request: Request, arguments: list[str]) -> Response:
        return json_response(200, {"level": self.operations.log_level})

    async def set_log_level(self, request: Request, arguments: list[str]) -> Response:
        document = await json_body(request)
        level = document.get("level") if isinstance(document, dict) else None
        allowed = ", ".join(LEVELS)
        if not isinstance(level, str) or level.lower() not in LEVELS:
            raise BadRequest(f'send {{"level": ...}} with one of {allowed}')
        result = await self.operations.run(
            command("log-level", level=level.lower()), COMMAND_TIMEOUT_S
        )
        return json_response(200, {"level": level.lower(), **result})

    async def instance(self, request: Request, arguments: list[str]) -> Response:
        service, instance, action = arguments
        entry = command(action, service=service, instance=instance)
        result = await self.operations.run(entry, COMMAND_TIMEOUT_S)
        state = "ejected" if action == "eject" else "restored"
        return json_response(
            200, {"service": service, "instance": instance, "state": state, **result}
        )

    async def breaker_reset(self, request: Request, arguments: list[str]) -> Response:
        (service,) = arguments
        result = await self.operations.run(
            command("breaker-reset", service=service), COMMAND_TIMEOUT_S
        )
        return json_response(200, {"service": service, "breaker": "CLOSED", **result})

    async def reload_request(self, request: Request, arguments: list[str]) -> Response:
        return await self.reload()

    async def reload(self) -> Response:
        """Validate here (a broken file is answered at once, naming the key), then have the
        supervisor re-read it and replace every worker (README: Reload)."""
        result = await request_reload(RELOAD_TIMEOUT_S, self.gateway.config)
        if result.ok:
            return json_response(200, {"status": "reloaded", "generation": result.generation})
        if result.outcome == "timeout":
            raise ReloadTimedOut(result.message)
        if result.outcome == "unavailable":
            raise ReloadUnavailable(result.message)
        raise ReloadRefused(result.message)


def step_name(step: object) -> str:
    name = getattr(step, "name", None)
    kind = type(step).__name__
    if kind == "RateLimit" and isinstance(name, str):
        return f"RateLimit({name})"
    return str(getattr(step, "__qualname__", kind))


async def json_body(request: Request) -> object:
    body = await read_whole(request.body, MAX_BODY_BYTES)
    if body is None:
        raise PayloadTooLarge(f"an admin request body is at most {MAX_BODY_BYTES} bytes")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise BadRequest("the body must be JSON") from None

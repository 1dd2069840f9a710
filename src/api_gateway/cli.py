"""The ``api-gateway`` command: serve | demo | config check | token | registry | apikey."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from api_gateway import config as config_module
from api_gateway.config.admin import AdminListenError
from api_gateway.config.settings import ConfigError, GatewayConfig
from api_gateway.observability.logging import configure
from api_gateway.reloading import ConfigSource


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = args.command(args)
    except ConfigError as exc:
        print(f"api-gateway: invalid configuration: {exc}", file=sys.stderr)
        code = 1
    except (CannotListen, CannotStart, AdminListenError) as exc:
        print(f"api-gateway: {exc}", file=sys.stderr)
        code = 1
    sys.exit(code)


class CannotListen(Exception):
    """The listening socket could not be opened (address in use, no permission)."""


class CannotStart(Exception):
    """A worker failed while starting (before it listened): the gateway stops, saying why."""


class PrintVersion(argparse.Action):
    """``--version``: the version, whether the compiled request path is in use (and why not),
    the Python running it; then exit 0, whatever else the command line says."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> None:
        from api_gateway import compiled
        from api_gateway.observability.process import describe_runtime

        print(describe_runtime(compiled.ACTIVE, compiled.REASON))
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="api-gateway", description=__doc__)
    parser.add_argument("--version", action=PrintVersion)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", help="YAML file overriding the defaults")
    serve.add_argument("--host", help="listen address (default HOST or 0.0.0.0)")
    serve.add_argument("--port", type=int, help="listen port (default PORT or 3000)")
    serve.add_argument("--workers", type=int, help="worker processes sharing the port")
    serve.set_defaults(command=run_serve)

    demo = commands.add_parser("demo", help="run stub services and a gateway in front of them")
    demo.add_argument("--port", type=int, default=3000, help="gateway port (default 3000)")
    demo.set_defaults(command=run_demo)

    config = commands.add_parser("config", help="configuration tools")
    config_commands = config.add_subparsers(required=True, metavar="ACTION")
    check = config_commands.add_parser("check", help="validate and print the route table")
    check.add_argument("file", nargs="?", help="YAML file overriding the defaults")
    check.set_defaults(command=run_config_check)

    token = commands.add_parser("token", help="mint a development access token")
    token.add_argument("--sub", required=True, help="user id")
    token.add_argument("--tenant", required=True, help="tenant id")
    token.add_argument("--role", default="user")
    token.add_argument("--email")
    token.add_argument("--ttl", default="1h", help="lifetime, e.g. 90s, 15m, 1h, 7d")
    token.add_argument("--config", help="YAML file overriding the defaults")
    token.set_defaults(command=run_token)

    registry = commands.add_parser("registry", help="the Redis service registry (REDIS_URL)")
    registry.add_argument("--config", help="YAML file overriding the defaults")
    actions = registry.add_subparsers(required=True, metavar="ACTION", dest="action")
    register = actions.add_parser("register", help="register (or heartbeat) an instance")
    register.add_argument("--ttl", type=float, default=30.0, help="seconds (default 30)")
    deregister = actions.add_parser("deregister", help="remove an instance")
    for action in (register, deregister):
        action.add_argument("service")
        action.add_argument("url", help="http://host:port")
    listing = actions.add_parser("list", help="print the live instances of services")
    listing.add_argument("services", nargs="*", help="default: every configured service")
    registry.set_defaults(command=run_registry)
    add_apikey_parser(commands)
    return parser


def add_apikey_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    apikey = commands.add_parser(
        "apikey",
        help="manage API keys (needs API_KEY_PEPPER; stored in Redis or api_keys.path)",
        description="API keys, kept as HMAC-SHA256(API_KEY_PEPPER) hashes in Redis when "
        "REDIS_URL is set, else in the file api_keys.path. create and rotate print the new key "
        "alone on stdout, once; the key id and what was done go to stderr.",
    )
    actions = apikey.add_subparsers(required=True, metavar="ACTION", dest="action")
    create = actions.add_parser("create", help="make a key and print it (once)")
    create.add_argument("--tenant", required=True, help="the tenant the key acts for")
    create.add_argument("--name", required=True, help="what the key is for, e.g. box-office-3")
    create.add_argument("--routes", help="comma list, e.g. /integrations,/search (default: all)")
    create.add_argument("--rate-limit", help="e.g. 1000/60s (default api_keys.default_rate_limit)")
    create.add_argument("--expires", help="lifetime, e.g. 90d (default: never)")
    actions.add_parser("list", help="id, name, tenant, routes, dates; never the key")
    revoke = actions.add_parser("revoke", help="refuse the key on every gateway within seconds")
    rotate = actions.add_parser("rotate", help="print a new key for the same id and settings")
    rotate.add_argument("--grace", default="24h", help="how long the old key still works")
    for action in (revoke, rotate):
        action.add_argument("id", help="the key id (ttk_<id>_...; see apikey list)")
    for action in actions.choices.values():
        action.add_argument("--config", help="YAML file overriding the defaults")
    apikey.set_defaults(command=run_apikey)


def source_of(args: argparse.Namespace) -> ConfigSource:
    """The configuration file and command-line overrides, read again on every reload."""
    return ConfigSource(
        getattr(args, "config", None),
        getattr(args, "host", None),
        getattr(args, "port", None),
        getattr(args, "workers", None),
    )


def run_serve(args: argparse.Namespace) -> int:
    source = source_of(args)
    config = source.load()
    configure(config.log_level)
    # Always supervised, one worker too: SIGHUP reloads instead of ending it, and the workers
    # share a directory (metrics, the reload record).
    from api_gateway.supervisor import Supervisor

    return Supervisor(config, source).run()


def run_demo(args: argparse.Namespace) -> int:
    from api_gateway.demo import run

    return run(args.port)


def run_config_check(args: argparse.Namespace) -> int:
    config = config_module.load(args.file)
    print(f"configuration OK: {len(config.routes)} routes, {len(config.services)} services")
    print(f"{'PREFIX':<32} {'SERVICE':<14} {'INSTANCES':<40} PUBLIC")
    for route in config.routes:
        service = config.services[route.service]
        instances = ",".join(i.authority for i in service.instances)
        methods = "" if route.methods is None else f" [{','.join(sorted(route.methods))}]"
        public = " ".join(route.public) or "-"
        prefix = GatewayConfig.API_PREFIX + route.prefix + methods
        print(f"{prefix:<32} {route.service:<14} {instances:<40} {public}")
    return 0


def run_token(args: argparse.Namespace) -> int:
    from api_gateway.tokens import mint, parse_ttl

    config = config_module.load(args.config)
    try:
        ttl = parse_ttl(args.ttl)
    except ValueError as exc:
        print(f"api-gateway: {exc}", file=sys.stderr)
        return 2
    print(mint(config.jwt, args.sub, args.tenant, args.role, ttl, args.email))
    return 0


def run_registry(args: argparse.Namespace) -> int:
    import asyncio

    from api_gateway.config.services import parse_instance
    from api_gateway.stores import StoreUnavailable
    from api_gateway.upstream.registry import open_registry

    config = config_module.load(args.config)
    if config.redis_url is None:
        raise ConfigError("REDIS_URL", "the registry lives in Redis: set REDIS_URL or redis.url")
    if args.action != "list":
        try:
            parse_instance(args.url, "url")  # refuse what the gateway would skip
        except ConfigError as exc:
            print(f"api-gateway: {exc}", file=sys.stderr)
            return 2

    async def act() -> None:
        registry = open_registry(config)
        try:
            if args.action == "register":
                await registry.register(args.service, args.url, args.ttl)
            elif args.action == "deregister":
                await registry.deregister(args.service, args.url)
            else:
                for service in args.services or list(config.services):
                    for instance in await registry.discover(service):
                        print(f"{service} http://{instance.authority}")
        finally:
            await registry.close()

    try:
        asyncio.run(act())
    except StoreUnavailable as exc:
        print(f"api-gateway: {exc}", file=sys.stderr)
        return 1
    return 0


def run_apikey(args: argparse.Namespace) -> int:
    config = config_module.load(args.config)
    if not config.api_keys.pepper:
        print(
            "api-gateway: API_KEY_PEPPER is not set: keys are stored as HMAC-SHA256 hashes under "
            "it (at least 32 bytes, the same for every gateway)",
            file=sys.stderr,
        )
        return 2
    from api_gateway.apikeys.commands import run

    return run(config, args)

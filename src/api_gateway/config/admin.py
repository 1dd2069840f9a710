"""The admin listener's settings (``admin``) and what readiness requires (``readiness``).

``ADMIN_HOST``, ``ADMIN_PORT`` and ``ADMIN_TOKEN`` (or ``ADMIN_TOKEN_FILE``) override
``admin.host``, ``admin.port`` and ``admin.token``. A listener on anything but loopback needs a
token: start-up refuses otherwise, naming ``ADMIN_TOKEN``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from api_gateway.config.sections import Section
from api_gateway.config.settings import LOOPBACK, ConfigError, Network

# The checks /ready runs, by name (readiness.require lists some of them).
READINESS_CHECKS: Final = ("redis", "auth-service", "venue-service", "signing-keys")
ENVIRONMENT: Final = {"ADMIN_HOST": "host", "ADMIN_PORT": "port", "ADMIN_TOKEN": "token"}


class AdminListenError(Exception):
    """The admin listener's socket cannot be opened (port in use, no permission)."""


@dataclass(frozen=True, slots=True)
class AdminConfig:
    host: str = "127.0.0.1"
    port: int = 9901  # 0: an ephemeral port, chosen once at start-up and logged
    # Required as ``Authorization: Bearer <token>`` on every admin request when set ("": none).
    token: str = field(default="", repr=False)
    # Client addresses the admin listener answers (others: 403), token or not.
    allow: tuple[Network, ...] = LOOPBACK


def apply_admin_environment(document: dict[str, Any], env: Mapping[str, str]) -> None:
    for variable, key in ENVIRONMENT.items():
        if env.get(variable):
            admin = document.setdefault("admin", {})
            if not isinstance(admin, dict):
                raise ConfigError("admin", "must be a mapping")
            admin[key] = env[variable]


def loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def build_admin(s: Section, allow: tuple[Network, ...]) -> AdminConfig:
    host = s.text("host", "127.0.0.1")
    port = s.integer("port", 0, 9901)
    if port > 65535:
        raise ConfigError(s.key("port"), f"must be at most 65535 (ADMIN_PORT), got {port}")
    token = s.raw("token", "")
    if not isinstance(token, str):
        raise ConfigError("ADMIN_TOKEN", "must be a string")
    if not token and not loopback_host(host):
        raise ConfigError(
            "ADMIN_TOKEN",
            f"the admin listener on {host} (not loopback) needs a token: set ADMIN_TOKEN or "
            "ADMIN_TOKEN_FILE, or ADMIN_HOST=127.0.0.1",
        )
    return AdminConfig(host=host, port=port, token=token, allow=allow)


def build_readiness(s: Section) -> tuple[str, ...]:
    required = s.texts("require", [])
    for name in required:
        if name not in READINESS_CHECKS:
            raise ConfigError(
                s.key("require"),
                f"unknown check {name!r}: one of {', '.join(READINESS_CHECKS)}",
            )
    s.done()
    return tuple(dict.fromkeys(required))

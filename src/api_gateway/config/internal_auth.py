"""The ``internal_auth`` settings: signing every request sent to a service (``signing.py``).

``INTERNAL_HMAC_SECRET`` (or ``INTERNAL_SERVICE_SECRET``, the name the services also read) turns
it on; ``USE_NEW_HMAC=false`` selects the legacy format. A secret never appears in a complaint.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from api_gateway.config.auth import MIN_SECRET_BYTES
from api_gateway.config.sections import Section
from api_gateway.config.settings import ConfigError, InternalAuthConfig

SECTION: Final = "internal_auth"
# The order the services' validator reads them in; the legacy validators read the second only.
SECRET_VARIABLES: Final = ("INTERNAL_HMAC_SECRET", "INTERNAL_SERVICE_SECRET")
FORMAT_VARIABLE: Final = "USE_NEW_HMAC"


def apply_internal_auth_environment(document: dict[str, Any], env: Mapping[str, str]) -> None:
    if not any(env.get(name) for name in (*SECRET_VARIABLES, FORMAT_VARIABLE)):
        return
    section = document.setdefault(SECTION, {})
    if not isinstance(section, dict):
        raise ConfigError(SECTION, "must be a mapping")
    new_format = (env.get(FORMAT_VARIABLE) or "").strip().lower()
    if new_format and new_format not in ("true", "false", "1", "0"):
        raise ConfigError(FORMAT_VARIABLE, f"must be true or false, got {new_format!r}")
    if new_format:
        section["new_hmac"] = new_format
    legacy = new_format in ("false", "0")
    for variable in reversed(SECRET_VARIABLES) if legacy else SECRET_VARIABLES:
        secret = env.get(variable)
        if secret:
            _check_length(secret, variable)
            section["secret"] = secret
            return


def build_internal_auth(s: Section | None) -> InternalAuthConfig:
    if s is None:
        return InternalAuthConfig()
    secret = s.raw("secret", None)
    if secret is not None:
        if not isinstance(secret, str):
            raise ConfigError(s.key("secret"), "must be a string")
        _check_length(secret, s.key("secret"))
    default = InternalAuthConfig()
    config = InternalAuthConfig(
        secret=secret or "",
        new_hmac=s.flag("new_hmac", default.new_hmac),
        max_buffered_body_bytes=s.integer(
            "max_buffered_body_bytes", 0, default.max_buffered_body_bytes
        ),
    )
    s.done()
    return config


def _check_length(secret: str, key: str) -> None:
    if len(secret.encode()) < MIN_SECRET_BYTES:
        raise ConfigError(key, f"must be at least {MIN_SECRET_BYTES} bytes long")

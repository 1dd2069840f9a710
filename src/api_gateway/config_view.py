"""The effective configuration as JSON for the admin API's /config, every secret redacted.

A value is redacted when its field is declared ``repr=False`` (how the settings mark secrets:
JWT secrets and keys, ``ADMIN_TOKEN``, ``API_KEY_PEPPER``, Stripe webhook secrets, internal-auth
secrets), when its name says it is one (*secret*, *token*, *password*, *pepper*, a *_key* PEM),
and a password in a URL (``redis://:pw@host``) is masked. Last, any string still containing one
of the redacted values is redacted whole, so a secret copied elsewhere does not leak either.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

REDACTED: Final = "[redacted]"
SECRET_NAME: Final = re.compile(r"secret|token|password|passwd|pepper|passphrase|credential")
# PEM and key material by name; not key prefixes, key specs or the balancer's hash key.
KEY_NAME: Final = re.compile(r"(^|_)(private|public|signing|secret)_key$|^key_material$")
NOT_SECRET: Final = frozenset({"max_token_bytes", "token_cache_size", "hash_key"})


def config_document(config: object) -> object:
    secrets: set[str] = set()
    document = _plain(config, "", secrets)
    return _scrub(document, {s for s in secrets if len(s) >= 4})


def _secret_name(name: str) -> bool:
    name = name.lower()
    if name in NOT_SECRET:
        return False
    return bool(SECRET_NAME.search(name) or KEY_NAME.search(name))


def _plain(value: Any, name: str, secrets: set[str]) -> object:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        document: dict[str, object] = {}
        for field in dataclasses.fields(value):
            item = getattr(value, field.name)
            if not field.repr or _secret_name(field.name):
                document[field.name] = _redact(item, secrets)
            else:
                document[field.name] = _plain(item, field.name, secrets)
        return document
    if isinstance(value, Mapping):
        return {
            str(k): (_redact(v, secrets) if _secret_name(str(k)) else _plain(v, str(k), secrets))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=str) if isinstance(value, set | frozenset) else value
        return [_plain(item, name, secrets) for item in items]
    if isinstance(value, ipaddress.IPv4Network | ipaddress.IPv6Network):
        return str(value)
    if isinstance(value, str):
        return _mask_url(value, secrets)
    if value is None or isinstance(value, bool | int | float):
        return value
    return str(value)


def _redact(value: Any, secrets: set[str]) -> object:
    """A secret: its place stays (to show it is set), its value does not."""
    if isinstance(value, str):
        if value:
            secrets.add(value)
        return REDACTED if value else ""
    if isinstance(value, list | tuple):
        return [_redact(item, secrets) for item in value]
    if isinstance(value, bytes):
        secrets.add(value.decode("latin-1"))
        return REDACTED
    if value is None or isinstance(value, bool | int | float):
        return value if isinstance(value, bool) or value is None else REDACTED
    return REDACTED


def _mask_url(text: str, secrets: set[str]) -> str:
    if "://" not in text or "@" not in text:
        return text
    try:
        parts = urlsplit(text)
        password = parts.password
    except ValueError:
        return REDACTED
    if not password:
        return text
    secrets.add(password)
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:{REDACTED}@{host}"))


def _scrub(value: object, secrets: set[str]) -> object:
    if isinstance(value, str):
        return REDACTED if any(secret in value for secret in secrets) else value
    if isinstance(value, list):
        return [_scrub(item, secrets) for item in value]
    if isinstance(value, dict):
        return {k: _scrub(v, secrets) for k, v in value.items()}
    return value

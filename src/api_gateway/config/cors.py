"""``cors_origins`` entries in the canonical form ``origins.AllowedOrigins`` compiles.

An entry is ``*`` (any origin), an exact origin (``https://app.example.com``, a port if not the
default) or a pattern: ``*.example.com`` (that domain and its subdomains, over http or https)
or ``https://*.example.com`` (over that scheme only). Everything is lower-cased, as browsers
send origins; an entry a browser could never send, or one that would allow more than meant, is
refused at start-up.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from api_gateway.config.settings import ConfigError
from api_gateway.errors import InvalidHost
from api_gateway.hosts import normalize_host

SCHEMES = ("http", "https")
PATTERN = "*."


def cors_origin(entry: str, key: str) -> str:
    """The canonical form of one entry, or a ``ConfigError`` naming ``key``."""
    entry = entry.strip().rstrip("/").lower()
    if entry == "*":
        return entry
    if entry == "null":
        # Sandboxed frames and file: pages all send "null": listing it lets any of them in.
        raise ConfigError(key, "'null' cannot be allowed: every sandboxed page sends it")
    if "*" in entry:
        return _pattern(entry, key)
    return _exact(entry, key)


def _pattern(entry: str, key: str) -> str:
    scheme, separator, rest = entry.rpartition("://")
    if separator and scheme not in SCHEMES:
        raise ConfigError(key, f"{entry!r}: a pattern's scheme must be http or https")
    if not rest.startswith(PATTERN) or "*" in rest[len(PATTERN) :]:
        raise ConfigError(key, f"{entry!r}: a pattern is '*.domain' or 'https://*.domain'")
    domain = rest[len(PATTERN) :]
    if ":" in domain:
        raise ConfigError(key, f"{entry!r}: a pattern cannot name a port")
    try:
        host = normalize_host(domain.encode())
    except InvalidHost as exc:
        raise ConfigError(key, f"{entry!r}: {domain!r} is not a domain name") from exc
    if host.is_ip or "." not in host.name:
        # '*.com' would allow every site of a top-level domain.
        raise ConfigError(key, f"{entry!r}: a pattern needs a domain of two labels or more")
    return f"{scheme}{separator}{PATTERN}{host.name}"


def _exact(entry: str, key: str) -> str:
    parts = urlsplit(entry)
    if not parts.scheme or not parts.netloc or parts.path or parts.query or parts.fragment:
        raise ConfigError(key, f"{entry!r} is not an origin (scheme://host[:port])")
    return entry

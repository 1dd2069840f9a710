"""Route aliases: a second prefix for a route (``/ticket`` for ``/tickets``).

Both prefixes reach the same service handlers, so whatever protects a service path (endpoint
limits, timeouts and retries, body and query validation, methods, body limit, failure mode)
must hold whichever prefix a client uses: an alias is its route under another prefix, with the
same endpoints (and the same rate-limit buckets). It may only be stricter about which paths
are public. It caches exactly as its route does, under the route's resources (pipeline.py
passes the route's prefix as the cache's collection), so a write through either prefix makes
the answers read through both stale; an alias that cached on its own, or not at all, would
keep answers a write through the other prefix changed. Any other key is refused, so that an
alias can never become the unprotected way to a protected path.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Final

from api_gateway.config.limits import is_public
from api_gateway.config.sections import Section
from api_gateway.config.settings import ConfigError, RouteConfig

ALIAS_KEYS: Final = frozenset({"alias_of", "public"})


def is_alias(entry: Section) -> bool:
    return entry.raw("alias_of", None) is not None


def build_alias(prefix: str, entry: Section, routes: Mapping[str, RouteConfig]) -> RouteConfig:
    """The route ``entry`` (an alias) names, under ``prefix``."""
    target = entry.text("alias_of")
    canonical = routes.get(target)
    if canonical is None:
        raise ConfigError(entry.key("alias_of"), f"{target!r} is not a route (nor an alias)")
    for name in entry.data:
        if name not in ALIAS_KEYS:
            raise ConfigError(
                entry.key(str(name)), f"an alias shares it with {target}: set it there"
            )
    public = entry.texts("public", list(canonical.public))
    opened = [path for path in public if path not in canonical.public]
    if opened:
        raise ConfigError(
            entry.key("public"),
            f"{opened[0]!r} is not public on {target}: an alias cannot open what its route "
            "protects",
        )
    entry.done()
    # A probe path the alias keeps private is limited there (config/limits.py: exempt_paths).
    exempt = tuple(path for path in canonical.exempt if is_public(path, public))
    return replace(canonical, prefix=prefix, public=public, alias_of=target, exempt=exempt)

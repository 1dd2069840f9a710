"""The limits a route or endpoint lists (``limits:``), checked and typed.

routes:
  /tickets:
    validation: {json_body: true}      # needed by body: keys
    endpoints:
      - path: /purchase
        methods: [POST]
        limits:
          - {limit: ticket_purchase, key: user}                   # a rate_limit.<name>
          - {name: purchase_address, max: 20, window_ms: 60000, key: ip}   # inline
          - {name: purchase_event, max: 2, window_ms: 60000, key: [user, "body:eventId"]}
  /webhooks: {service: payment, global: false, limits: [{max: 1000, window_ms: 60000, key: ip}]}

A name is one budget: every place that lists the same name with the same key counts in the same
buckets (an alias's limits are its route's). An inline limit without a name is named after its
place and key, and may not take the name of a ``rate_limit.<name>``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from api_gateway.config.sections import Section
from api_gateway.config.security import HEADER_NAME
from api_gateway.config.settings import ConfigError, LimitConfig, RouteLimitConfig

INLINE_KEYS = ("max", "window_ms", "block_ms")
# What a key may count by (limit_keys.py reads each from the request).
IDENTITY_KINDS = frozenset({"ip", "user", "user_or_ip", "tenant", "api_key"})
PARAMETERISED_KINDS = frozenset({"header", "path", "body"})
PARAM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
DEFAULT_EXEMPT = ("/health", "/metrics")


def parse_part(text: str) -> tuple[str, str]:
    """``kind`` and its argument (``header:x-partner`` -> ``header``, ``x-partner``); raises
    ValueError naming what is wrong."""
    kind, colon, argument = text.partition(":")
    if kind in IDENTITY_KINDS and not colon:
        return kind, ""
    if kind in PARAMETERISED_KINDS and argument:
        return kind, argument
    if kind in PARAMETERISED_KINDS:
        raise ValueError(f"{text!r} needs a name: {kind}:<name>")
    kinds = sorted(IDENTITY_KINDS) + [f"{k}:<name>" for k in sorted(PARAMETERISED_KINDS)]
    raise ValueError(f"unknown key {text!r}; one of {', '.join(kinds)}")


def spec_text(parts: Sequence[str]) -> str:
    """The canonical text of a spec, the namespace of its keys (``[user,body:eventId]``)."""
    return "[" + ",".join(parts) + "]"


def build_limits(
    s: Section,
    where: str,
    rate_limits: Mapping[str, LimitConfig],
    json_body: bool,
    template: Sequence[str] = (),
) -> tuple[RouteLimitConfig, ...]:
    """``s.limits`` of the route or endpoint at ``where`` (``/tickets/purchase``), whose path
    template (segments) ``path:`` keys may name and whose JSON bodies ``body:`` keys read."""
    entries = s.raw("limits", [])
    if not isinstance(entries, list):
        raise ConfigError(s.key("limits"), "must be a list of limits")
    return tuple(
        build_limit_entry(
            Section(entry, f"{s.key('limits')}[{i}]"), where, rate_limits, json_body, template
        )
        for i, entry in enumerate(entries)
    )


def build_limit_entry(
    s: Section,
    where: str,
    rate_limits: Mapping[str, LimitConfig],
    json_body: bool,
    template: Sequence[str],
) -> RouteLimitConfig:
    key = key_parts(s, json_body, template)
    named = s.raw("limit", None)
    inline = [name for name in INLINE_KEYS if name in s.data]
    if named is not None:
        if inline or "name" in s.data:
            raise ConfigError(s.key("limit"), "name a rate_limit or give max/window_ms, not both")
        if named not in rate_limits:
            raise ConfigError(s.key("limit"), f"unknown rate limit {named!r}")
        config = RouteLimitConfig(named, rate_limits[named], key)
    else:
        name = s.text("name", f"{where}{spec_text(key)}")
        if name in rate_limits:
            raise ConfigError(
                s.key("name"), f"{name!r} is a rate_limit: write limit: {name} to use it"
            )
        limit = LimitConfig(
            s.integer("max", 1), s.integer("window_ms", 1), s.integer("block_ms", 0, 0)
        )
        config = RouteLimitConfig(name, limit, key)
    s.done()
    return config


def key_parts(s: Section, json_body: bool, template: Sequence[str]) -> tuple[str, ...]:
    raw: Any = s.raw("key")
    parts = [raw] if isinstance(raw, str) else raw
    where = s.key("key")
    if not isinstance(parts, list) or not parts or not all(isinstance(p, str) for p in parts):
        raise ConfigError(where, "must be a key or a non-empty list of keys")
    if len(set(parts)) != len(parts):
        raise ConfigError(where, "names a key twice")
    for part in parts:
        check_part(part, where, json_body, template)
    return tuple(parts)


def check_part(part: str, where: str, json_body: bool, template: Sequence[str]) -> None:
    try:
        kind, argument = parse_part(part)
    except ValueError as exc:
        raise ConfigError(where, str(exc)) from None
    if kind == "header" and not HEADER_NAME.fullmatch(argument.lower()):
        raise ConfigError(where, f"{argument!r} is not a header name")
    if kind == "path" and "{" + argument + "}" not in template:
        raise ConfigError(
            where, f"{part!r} needs an endpoint whose path has the segment {{{argument}}}"
        )
    if kind == "body" and not json_body:
        raise ConfigError(
            where, f"{part!r} reads the JSON body: the route needs validation: {{json_body: true}}"
        )


def template_of(path: str, where: str) -> tuple[str, ...]:
    """An endpoint path's segments; ``{name}`` segments match any one segment and name it for
    ``path:<name>`` keys."""
    segments = tuple(path.split("/"))
    names = [seg[1:-1] for seg in segments if "{" in seg or "}" in seg]
    for name in names:
        if not PARAM_NAME.fullmatch(name):
            raise ConfigError(where, f"{path!r}: a parameter is a whole segment, {{name}}")
    if len(set(names)) != len(names):
        raise ConfigError(where, f"{path!r} names a parameter twice")
    return segments


def exempt_paths(s: Section, public: Sequence[str]) -> tuple[str, ...]:
    """Paths under the route (its service's probes) that no gateway limit applies to: by
    default whichever of /health and /metrics are public. Only a public path may be exempt: on
    any other, the limits are what bounds a flood of failed authentications."""
    given = s.raw("exempt", None)
    if given is None:
        return tuple(path for path in DEFAULT_EXEMPT if is_public(path, public))
    paths = s.texts("exempt")
    for path in paths:
        segments = path.split("/")
        if not path.startswith("/") or not all(
            seg and seg not in (".", "..") and "{" not in seg for seg in segments[1:]
        ):
            raise ConfigError(s.key("exempt"), f"{path!r} is not a clean path")
        if not is_public(path, public):
            raise ConfigError(s.key("exempt"), f"{path!r} is not public on the route")
    return paths


def is_public(path: str, public: Sequence[str]) -> bool:
    """Whether ``public`` (exact paths, ``/subtree/*``) makes ``path`` public."""
    return any(
        path == entry or (entry.endswith("/*") and (path + "/").startswith(entry.removesuffix("*")))
        for entry in public
    )

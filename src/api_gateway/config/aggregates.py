"""The ``aggregates`` section: responses merged from several services, declared as data.

    aggregates:
      <name>:                       # null removes an aggregate of the defaults
        path: "/events/{eventId}"   # under /api/v1/aggregate
        auth: required              # or optional (a token is verified when sent)
        timeout_ms: 5000            # the whole aggregate's deadline (timeouts.default_ms)
        sources:
          <key>: {service, path, required: false, timeout_ms, fallback}

Everything a request could trip over is checked here, naming the key: an unknown service, a
template variable that nothing provides, a dependency cycle, a required source with a fallback.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import orjson

from api_gateway.aggregation.plan import PlanError, stages
from api_gateway.aggregation.templates import (
    NAME,
    Template,
    TemplateError,
    Variable,
    parse,
    parse_route,
)
from api_gateway.config.sections import Section
from api_gateway.config.settings import ConfigError, ServiceConfig

AUTH_MODES = ("required", "optional")
USER = "user"
# The token's fields a template may use as {user.<field>}.
USER_FIELDS = frozenset({"id", "tenantId", "role", "email"})


@dataclass(frozen=True, slots=True)
class SourceConfig:
    key: str
    service: str
    path: Template
    required: bool
    timeout_ms: int | None  # optional sources: their own cap (the aggregate's deadline bounds all)
    fallback: object  # optional sources: the JSON value used when they fail or are late
    depends_on: frozenset[str]  # earlier sources whose answers the path uses


@dataclass(frozen=True, slots=True)
class AggregateConfig:
    name: str
    path: Template  # relative to /api/v1/aggregate
    auth_required: bool
    timeout_ms: int
    sources: tuple[SourceConfig, ...]
    stages: tuple[tuple[str, ...], ...]


def build_aggregates(
    s: Section, services: Mapping[str, ServiceConfig], default_timeout_ms: int
) -> tuple[AggregateConfig, ...]:
    aggregates = []
    for name in s.data:
        s.seen.add(str(name))
        if s.data[name] is None:
            continue
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_-]+", name):
            raise ConfigError(s.key(str(name)), "an aggregate's name must be letters, digits, _, -")
        aggregates.append(build_aggregate(s.section(name), name, services, default_timeout_ms))
    paths: dict[str, str] = {}
    for aggregate in aggregates:
        shape = "/".join("{}" if isinstance(p, Variable) else p for p in aggregate.path.parts)
        if shape in paths:
            raise ConfigError(
                s.key(f"{aggregate.name}.path"), f"same path as aggregate {paths[shape]!r}"
            )
        paths[shape] = aggregate.name
    return tuple(aggregates)


def build_aggregate(
    s: Section, name: str, services: Mapping[str, ServiceConfig], default_timeout_ms: int
) -> AggregateConfig:
    try:
        path = parse_route(s.text("path"))
    except TemplateError as exc:
        raise ConfigError(s.key("path"), str(exc)) from None
    auth = s.text("auth", "required")
    if auth not in AUTH_MODES:
        raise ConfigError(s.key("auth"), f"must be one of {', '.join(AUTH_MODES)}")
    timeout_ms = s.integer("timeout_ms", 1, default_timeout_ms)
    params = frozenset(v.root for v in path.variables)
    sources_section = s.section("sources")
    if not sources_section.data:
        raise ConfigError(sources_section.path, "an aggregate needs at least one source")
    sources = tuple(
        build_source(sources_section, key, services, params) for key in sources_section.data
    )
    sources_section.seen.update(str(key) for key in sources_section.data)
    s.done()
    check_variables(sources_section, sources, params, auth == "required")
    try:
        planned = stages({source.key: source.depends_on for source in sources})
    except PlanError as exc:
        raise ConfigError(sources_section.key(exc.key), str(exc)) from None
    return AggregateConfig(
        name, path, auth == "required", timeout_ms, sources, tuple(map(tuple, planned))
    )


def build_source(
    parent: Section, key: object, services: Mapping[str, ServiceConfig], params: frozenset[str]
) -> SourceConfig:
    if not isinstance(key, str) or not _is_name(key) or key == USER or key in params:
        raise ConfigError(
            parent.key(str(key)), "a source's key must be a plain name, not 'user' or a parameter"
        )
    s = parent.section(key)
    service = s.text("service")
    if service not in services:
        raise ConfigError(s.key("service"), f"unknown service {service!r}")
    try:
        path = parse(s.text("path"))
    except TemplateError as exc:
        raise ConfigError(s.key("path"), str(exc)) from None
    required = s.flag("required", False)
    timeout = s.raw("timeout_ms", None)
    if timeout is None and not required:
        raise ConfigError(s.key("timeout_ms"), "is required for an optional source")
    timeout_ms = None if timeout is None else s.integer("timeout_ms", 1)
    if required and "fallback" in s.data:
        raise ConfigError(s.key("fallback"), "a required source has no fallback: it fails")
    fallback = s.raw("fallback", None)
    try:
        orjson.dumps(fallback)
    except TypeError:
        raise ConfigError(s.key("fallback"), "must be a JSON value") from None
    s.done()
    roots = {v.root for v in path.variables} - params - {USER}
    return SourceConfig(key, service, path, required, timeout_ms, fallback, frozenset(roots))


def check_variables(
    s: Section, sources: tuple[SourceConfig, ...], params: frozenset[str], user: bool
) -> None:
    """Every variable must name a path parameter, a token field, or a field of a required
    source (an optional one may be a fallback without the field)."""
    by_key = {source.key: source for source in sources}
    for source in sources:
        where = s.key(f"{source.key}.path")
        for variable in source.path.variables:
            if variable.root in params:
                if variable.fields:
                    raise ConfigError(where, f"path parameter {variable.root} has no fields")
            elif variable.root == USER:
                if not user:
                    raise ConfigError(where, f"{{{variable.name}}} needs auth: required")
                if len(variable.fields) != 1 or variable.fields[0] not in USER_FIELDS:
                    fields = ", ".join(sorted(USER_FIELDS))
                    raise ConfigError(where, f"{{{variable.name}}}: user fields are {fields}")
            elif variable.root not in by_key:
                raise ConfigError(where, f"{{{variable.name}}}: no parameter or source is named so")
            elif not by_key[variable.root].required:
                raise ConfigError(where, f"{{{variable.name}}}: {variable.root} is not required")
            elif not variable.fields:
                raise ConfigError(where, f"{{{variable.name}}}: name a field of {variable.root}")


def _is_name(text: str) -> bool:
    return re.fullmatch(NAME, text) is not None

"""Request schemas a route may declare: rules for query parameters, and whether bodies are JSON.

routes:
  /search:
    validation:
      query:
        limit: {type: integer, minimum: 1, maximum: 100}
        sort: {type: string, enum: [relevance, date]}
      json_body: false
"""

from __future__ import annotations

from dataclasses import dataclass

from api_gateway.config.sections import Section
from api_gateway.config.settings import ConfigError

FIELD_TYPES = ("string", "integer", "number", "boolean")


@dataclass(frozen=True, slots=True)
class FieldRule:
    name: str
    type: str
    required: bool = False
    minimum: float | None = None
    maximum: float | None = None
    min_length: int | None = None
    max_length: int | None = None
    enum: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ValidationConfig:
    query: tuple[FieldRule, ...]
    # POST, PUT and PATCH bodies must be JSON (Content-Type and syntax) on this route.
    json_body: bool


def build_validation(s: Section) -> ValidationConfig:
    query = Section(s.raw("query", {}), s.key("query"))
    rules = tuple(build_rule(query.section(str(name)), str(name)) for name in query.data)
    query.seen.update(query.data)
    config = ValidationConfig(query=rules, json_body=s.flag("json_body", False))
    s.done()
    return config


def build_rule(s: Section, name: str) -> FieldRule:
    kind = s.text("type")
    if kind not in FIELD_TYPES:
        raise ConfigError(s.key("type"), f"must be one of {', '.join(FIELD_TYPES)}")
    rule = FieldRule(
        name=name,
        type=kind,
        required=s.flag("required", False),
        minimum=_number(s, "minimum"),
        maximum=_number(s, "maximum"),
        min_length=_optional_int(s, "min_length"),
        max_length=_optional_int(s, "max_length"),
        enum=s.texts("enum", []),
    )
    if rule.minimum is not None and rule.maximum is not None and rule.minimum > rule.maximum:
        raise ConfigError(s.key("minimum"), "must not exceed maximum")
    s.done()
    return rule


def _number(s: Section, name: str) -> float | None:
    value = s.raw(name, None)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(s.key(name), f"must be a number, got {value!r}")
    return float(value)


def _optional_int(s: Section, name: str) -> int | None:
    return None if s.raw(name, None) is None else s.integer(name, 0)

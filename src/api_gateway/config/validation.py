"""Request schemas a route may declare: rules for query parameters, and whether bodies are JSON.

routes:
  /search:
    validation:
      query:
        limit: {type: integer, minimum: 1, maximum: 100}
        sort: {type: string, enum: [relevance, date]}
      json_body: true
      json_max_bytes: 1048576   # 413 beyond
      json_max_depth: 64        # 400 for arrays/objects nested deeper
      json_max_values: 10000    # 400 for more values (arrays, objects, elements, members)

The JSON bounds exist for the gateway's own sake: parsing costs one Python object per value
(about 0.1 µs each, 120 ms for a 1 MiB body of nested arrays), all of it on the event loop.
"""

from __future__ import annotations

from dataclasses import dataclass

from api_gateway.config.sections import Section
from api_gateway.config.settings import ConfigError

FIELD_TYPES = ("string", "integer", "number", "boolean")
JSON_MAX_BYTES = 1024 * 1024
JSON_MAX_DEPTH = 64
JSON_MAX_VALUES = 10_000
ORJSON_MAX_DEPTH = 1024  # orjson refuses anything deeper, whatever is configured


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
    # What a JSON body may hold, so that checking it costs at most a few ms of the loop.
    json_max_bytes: int = JSON_MAX_BYTES
    json_max_depth: int = JSON_MAX_DEPTH
    json_max_values: int = JSON_MAX_VALUES


def build_validation(s: Section) -> ValidationConfig:
    query = Section(s.raw("query", {}), s.key("query"))
    rules = tuple(build_rule(query.section(str(name)), str(name)) for name in query.data)
    query.seen.update(query.data)
    config = ValidationConfig(
        query=rules,
        json_body=s.flag("json_body", False),
        json_max_bytes=s.integer("json_max_bytes", 1, JSON_MAX_BYTES),
        json_max_depth=s.integer("json_max_depth", 1, JSON_MAX_DEPTH),
        json_max_values=s.integer("json_max_values", 1, JSON_MAX_VALUES),
    )
    if config.json_max_depth > ORJSON_MAX_DEPTH:
        raise ConfigError(s.key("json_max_depth"), f"must be at most {ORJSON_MAX_DEPTH}")
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

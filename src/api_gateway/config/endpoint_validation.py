"""What an endpoint validates before its service sees the request: a JSON Schema for the body,
schemas for the template's path parameters, rules for its query.

routes:
  /payments:
    endpoints:
      - path: /{id}/refund
        methods: [POST]
        validation:
          body: refund-transaction.json        # a file shipped in config/schemas, a path
                                               # (relative to the working directory), or inline
          params: {id: {type: string, format: uuid}}
          query: {token: {type: string, required: true, max_length: 256}}

Schemas are read and compiled here, once: a missing file or a schema the validator cannot
honour stops start-up naming the key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from api_gateway.config.sections import Section
from api_gateway.config.settings import ConfigError
from api_gateway.config.validation import FieldRule, build_rule
from api_gateway.json_schema import Schema, SchemaError, compile_schema
from api_gateway.path_templates import NAME

SHIPPED = Path(__file__).parent / "schemas"


@dataclass(frozen=True, slots=True)
class EndpointValidation:
    # Compiled checks compare as the documents they were compiled from.
    body: Schema | None = field(default=None, compare=False)
    # The schema documents as written (compared; and shown by the API documentation).
    body_document: Mapping[str, Any] | None = field(default=None, hash=False)
    params: tuple[tuple[str, Schema], ...] = field(default=(), compare=False)
    params_documents: Mapping[str, Any] = field(default_factory=dict, hash=False)
    query: tuple[FieldRule, ...] = ()


def build_endpoint_validation(s: Section, path: str) -> EndpointValidation:
    body_document = None
    body = None
    given = s.raw("body", None)
    if given is not None:
        body_document = read_schema(given, s.key("body"))
        body = compiled(body_document, s.key("body"))
    names = NAME.findall(path)
    params_section = Section(s.raw("params", {}), s.key("params"))
    params = []
    for name in params_section.data:
        key = params_section.key(str(name))
        if name not in names:
            raise ConfigError(key, f"the path {path!r} has no parameter {{{name}}}")
        params.append((str(name), compiled(params_section.raw(str(name)), key)))
    query = Section(s.raw("query", {}), s.key("query"))
    rules = tuple(build_rule(query.section(str(name)), str(name)) for name in query.data)
    query.seen.update(query.data)
    s.done()
    return EndpointValidation(
        body=body,
        body_document=body_document,
        params=tuple(params),
        params_documents=dict(params_section.data),
        query=rules,
    )


def read_schema(given: object, key: str) -> Mapping[str, Any]:
    """An inline schema as it is; a file name from the shipped schemas; a path from disk."""
    if isinstance(given, Mapping):
        return given
    if not isinstance(given, str) or not given:
        raise ConfigError(key, "must be a schema file name or an inline schema")
    path = Path(given) if "/" in given else SHIPPED / given
    try:
        document = orjson.loads(path.read_bytes())
    except OSError as exc:
        raise ConfigError(key, f"cannot read the schema {given!r}: {exc.strerror}") from None
    except orjson.JSONDecodeError as exc:
        raise ConfigError(key, f"the schema {given!r} is not JSON: {exc}") from None
    if not isinstance(document, Mapping):
        raise ConfigError(key, f"the schema {given!r} must be a JSON object")
    return document


def compiled(document: object, key: str) -> Schema:
    try:
        return compile_schema(document)
    except SchemaError as exc:
        raise ConfigError(key, f"invalid schema: {exc}") from None

"""A small JSON Schema validator of the subset the endpoint schemas use, compiled once at
start-up into a tree of checks.

Supported: ``type`` (one or a list), ``properties``, ``required``, ``additionalProperties``
(true or false), ``items``, ``minItems``/``maxItems``, ``minLength``/``maxLength``,
``minimum``/``maximum``, ``exclusiveMinimum``/``exclusiveMaximum``, ``enum``, ``const``,
``pattern``, ``format`` (``uuid``, ``email``, ``date-time``); ``$schema``, ``$id``, ``title``,
``description`` and ``$comment`` are annotations. Anything else is refused when the schema is
compiled, so a schema never means less than it says.

Why not the ``jsonschema`` library: it costs several times as much per body (README "Validation"),
and it would be a run-time dependency for a few keywords. The values checked come from
``orjson.loads`` of a body already bounded in size, depth and count (policies/validation.py),
so the recursion and the work are bounded too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Final

Error = dict[str, str]

# A problem lists at most this many fields: enough to fix a form, never a body's worth.
MAX_ERRORS: Final = 20
# A client's property name echoed in an error is cut to this many characters.
MAX_NAME: Final = 64
TYPES: Final = frozenset({"string", "integer", "number", "boolean", "object", "array", "null"})
ANNOTATIONS: Final = frozenset({"$schema", "$id", "title", "description", "$comment"})
KEYWORDS: Final = ANNOTATIONS | {
    "type",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "minItems",
    "maxItems",
    "minLength",
    "maxLength",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "enum",
    "const",
    "pattern",
    "format",
}
FORMATS: Final = frozenset({"uuid", "email", "date-time"})
# Any version: the 8-4-4-4-12 hexadecimal form (Joi's uuid() without a version).
UUID: Final = re.compile(
    r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
)
# A dot-atom local part and a host name with at least two labels.
EMAIL: Final = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
)
ARTICLES: Final = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "object": "an object",
    "array": "an array",
    "null": "null",
}


class SchemaError(Exception):
    """A schema the validator cannot honour; ``where`` is a JSON pointer into it."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where = where


def type_of(value: object) -> str:
    """The JSON type of a parsed value (a float with no fraction is an integer, as in JS)."""
    if isinstance(value, str):  # the commonest first
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "integer" if value.is_integer() else "number"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    return "null" if value is None else "unknown"


def same(a: object, b: object) -> bool:
    """JSON equality: true is not 1, 1.0 is 1."""
    if (type(a) is bool) != (type(b) is bool):
        return False
    return a == b


class Schema:
    """One compiled (sub)schema. ``check`` appends ``{field, message}`` for what fails."""

    __slots__ = (
        "accepts",
        "closed",
        "enum",
        "exclusive_maximum",
        "exclusive_minimum",
        "format",
        "items",
        "max_items",
        "max_length",
        "maximum",
        "min_items",
        "min_length",
        "minimum",
        "pattern",
        "properties",
        "required",
        "types",
    )

    def __init__(self) -> None:
        self.types: frozenset[str] = frozenset()
        # The types a value may have (an integer is a number too); empty: any.
        self.accepts: frozenset[str] = frozenset()
        self.properties: dict[str, Schema] = {}
        self.required: tuple[str, ...] = ()
        self.closed = False
        self.items: Schema | None = None
        self.min_items: int | None = None
        self.max_items: int | None = None
        self.min_length: int | None = None
        self.max_length: int | None = None
        self.minimum: float | None = None
        self.maximum: float | None = None
        self.exclusive_minimum: float | None = None
        self.exclusive_maximum: float | None = None
        self.enum: list[object] | None = None
        self.pattern: re.Pattern[str] | None = None
        self.format = ""

    def check(self, value: object, field: str, errors: list[Error]) -> None:
        """Append an error for each field of ``value`` (named below ``field``) that fails."""
        self._check(value, field, "", errors)

    def _check(self, value: object, parent: str, key: str, errors: list[Error]) -> None:
        # The field's name is built only when it is needed: on an error, or for a container.
        if len(errors) >= MAX_ERRORS:
            return
        kind = type_of(value)
        if self.accepts and kind not in self.accepts:
            wanted = " or ".join(ARTICLES[t] for t in sorted(self.types))
            errors.append({"field": named(parent, key), "message": f"must be {wanted}"})
            return
        if self.enum is not None and not any(same(value, c) for c in self.enum):
            message: str | None = "must be one of " + self._choices()
        elif isinstance(value, str):
            message = self._string(value)
        elif kind == "integer" or kind == "number":
            message = self._number(float(value))  # type: ignore[arg-type]
        elif isinstance(value, dict):
            message = None
            self._object(value, named(parent, key), errors)
        elif isinstance(value, list):
            message = self._array(value, named(parent, key), errors)
        else:
            message = None
        if message is not None:
            errors.append({"field": named(parent, key), "message": message})

    def _choices(self) -> str:
        assert self.enum is not None
        return ", ".join(c if isinstance(c, str) else repr(c).lower() for c in self.enum)

    def _string(self, value: str) -> str | None:
        if self.min_length is not None and len(value) < self.min_length:
            if self.min_length == 1:
                return "must not be empty"
            return f"must be at least {self.min_length} characters long"
        if self.max_length is not None and len(value) > self.max_length:
            return f"must be at most {self.max_length} characters long"
        if self.pattern is not None and self.pattern.search(value) is None:
            return f"must match {self.pattern.pattern}"
        if self.format:
            return format_error(self.format, value)
        return None

    def _number(self, value: float) -> str | None:
        if self.minimum is not None and value < self.minimum:
            return f"must be at least {plain(self.minimum)}"
        if self.exclusive_minimum is not None and value <= self.exclusive_minimum:
            return f"must be greater than {plain(self.exclusive_minimum)}"
        if self.maximum is not None and value > self.maximum:
            return f"must be at most {plain(self.maximum)}"
        if self.exclusive_maximum is not None and value >= self.exclusive_maximum:
            return f"must be less than {plain(self.exclusive_maximum)}"
        return None

    def _array(self, value: list[object], field: str, errors: list[Error]) -> str | None:
        if self.min_items is not None and len(value) < self.min_items:
            return f"must hold at least {self.min_items} items"
        if self.max_items is not None and len(value) > self.max_items:
            return f"must hold at most {self.max_items} items"
        items = self.items
        if items is not None:
            for index, item in enumerate(value):
                if len(errors) >= MAX_ERRORS:
                    break
                items._check(item, field, str(index), errors)
        return None

    def _object(self, value: dict[str, object], field: str, errors: list[Error]) -> None:
        for name in self.required:
            if name not in value:
                errors.append({"field": f"{field}.{name}", "message": "is required"})
        properties = self.properties
        for name, item in value.items():
            if len(errors) >= MAX_ERRORS:
                return
            schema = properties.get(name)
            if schema is not None:
                schema._check(item, field, name, errors)
            elif self.closed:
                shown = name if len(name) <= MAX_NAME else name[:MAX_NAME] + "..."
                errors.append({"field": f"{field}.{shown}", "message": "is not allowed"})


def named(parent: str, key: str) -> str:
    return parent + "." + key if key else parent


def format_error(name: str, value: str) -> str | None:
    if name == "uuid":
        return None if UUID.fullmatch(value) else "must be a UUID"
    if name == "email":
        return None if EMAIL.fullmatch(value) else "must be an email address"
    try:  # date-time: ISO 8601, a date alone included (as Joi's date().iso())
        datetime.fromisoformat(value)
    except ValueError:
        return "must be an ISO 8601 date-time"
    return None


def plain(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else str(number)


def compile_schema(document: object, where: str = "#") -> Schema:
    """The compiled form of a schema document; SchemaError names what cannot be honoured."""
    if not isinstance(document, Mapping):
        raise SchemaError(where, "a schema must be an object")
    unknown = sorted(set(document) - KEYWORDS)
    if unknown:
        raise SchemaError(f"{where}/{unknown[0]}", "unsupported keyword")
    schema = Schema()
    kinds = document.get("type", [])
    kinds = [kinds] if isinstance(kinds, str) else kinds
    if not isinstance(kinds, list) or not all(k in TYPES for k in kinds):
        raise SchemaError(f"{where}/type", f"must be one of {', '.join(sorted(TYPES))}")
    schema.types = frozenset(kinds)
    schema.accepts = schema.types | ({"integer"} if "number" in kinds else set())
    _object_keywords(schema, document, where)
    items = document.get("items")
    if items is not None:
        schema.items = compile_schema(items, f"{where}/items")
    schema.min_items = _count(document, "minItems", where)
    schema.max_items = _count(document, "maxItems", where)
    schema.min_length = _count(document, "minLength", where)
    schema.max_length = _count(document, "maxLength", where)
    schema.minimum = _bound(document, "minimum", where)
    schema.maximum = _bound(document, "maximum", where)
    schema.exclusive_minimum = _bound(document, "exclusiveMinimum", where)
    schema.exclusive_maximum = _bound(document, "exclusiveMaximum", where)
    _value_keywords(schema, document, where)
    return schema


def _object_keywords(schema: Schema, document: Mapping[str, object], where: str) -> None:
    properties = document.get("properties", {})
    if not isinstance(properties, Mapping):
        raise SchemaError(f"{where}/properties", "must be an object")
    schema.properties = {
        str(name): compile_schema(sub, f"{where}/properties/{name}")
        for name, sub in properties.items()
    }
    required = document.get("required", [])
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        raise SchemaError(f"{where}/required", "must be a list of property names")
    schema.required = tuple(required)
    closed = document.get("additionalProperties", True)
    if not isinstance(closed, bool):
        raise SchemaError(f"{where}/additionalProperties", "must be true or false")
    schema.closed = not closed


def _value_keywords(schema: Schema, document: Mapping[str, object], where: str) -> None:
    if "const" in document:
        schema.enum = [document["const"]]
    enum = document.get("enum")
    if enum is not None:
        if not isinstance(enum, list) or not enum:
            raise SchemaError(f"{where}/enum", "must be a non-empty list")
        schema.enum = list(enum)
    pattern = document.get("pattern")
    if pattern is not None:
        try:
            schema.pattern = re.compile(str(pattern))
        except re.error as exc:
            raise SchemaError(f"{where}/pattern", f"not a regular expression: {exc}") from None
    name = document.get("format", "")
    if name and name not in FORMATS:
        raise SchemaError(f"{where}/format", f"must be one of {', '.join(sorted(FORMATS))}")
    schema.format = str(name)


def _count(document: Mapping[str, object], name: str, where: str) -> int | None:
    value = document.get(name)
    if value is None:
        return None
    if type(value) is not int or value < 0:
        raise SchemaError(f"{where}/{name}", "must be a non-negative integer")
    return value


def _bound(document: Mapping[str, object], name: str, where: str) -> float | None:
    value = document.get(name)
    if value is None:
        return None
    if type(value) is not int and type(value) is not float:
        raise SchemaError(f"{where}/{name}", "must be a number")
    return float(value)

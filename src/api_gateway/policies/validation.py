"""Request validation for routes that declare a schema: a bad request gets 400 with every field's
error and never reaches the service."""

from __future__ import annotations

import math
import re
from collections.abc import Awaitable
from typing import Final
from urllib.parse import unquote

import orjson

from api_gateway.config.validation import FieldRule, ValidationConfig
from api_gateway.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType, ValidationFailed
from api_gateway.http.framing import BODY_METHODS, single_value
from api_gateway.json_schema import Schema
from api_gateway.types import Handler, Request, Response

Error = dict[str, str]
# Every byte but the four brackets, deleted to leave a body's nesting structure; every byte but
# what opens a container or separates two values, deleted to count the values.
NOT_BRACKETS: Final = bytes([b for b in range(256) if b not in b"[]{}"])
NOT_VALUE_MARKS: Final = bytes([b for b in range(256) if b not in b"[{,"])
OPENERS: Final = b"[{"
OPEN_ARRAY: Final = ord("[")
OPEN_OBJECT: Final = ord("{")
CONTENT_TYPE: Final = b"content-type"
# A quoted-pair (backslash and any byte), removed before telling quoted commas from others.
QUOTED_PAIR: Final = re.compile(rb"\\.", re.DOTALL)


def check_query(query: bytes, rules: tuple[FieldRule, ...]) -> list[Error]:
    """Every rule's complaint about the query string (parameters without a rule pass)."""
    try:
        pairs = query_pairs(query)
    except UnicodeDecodeError:
        return [{"field": "query", "message": "must be UTF-8"}]
    values: dict[str, list[str]] = {}
    for name, value in pairs:
        values.setdefault(name, []).append(value)
    errors = []
    for rule in rules:
        given = values.get(rule.name)
        field = f"query.{rule.name}"
        if given is None:
            if rule.required:
                errors.append({"field": field, "message": "is required"})
            continue
        if len(given) > 1:
            errors.append({"field": field, "message": "must be given once"})
            continue
        message = check_value(given[0], rule)
        if message:
            errors.append({"field": field, "message": message})
    return errors


def query_pairs(query: bytes) -> list[tuple[str, str]]:
    """``parse_qsl(query.decode(), keep_blank_values=True, errors="strict")``, the same pairs
    for every input, without its general machinery: a name or value without ``%`` needs no
    unquoting (most of them). Raises ``UnicodeDecodeError`` for what is not UTF-8."""
    pairs = []
    for part in query.decode("utf-8").split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        name, value = name.replace("+", " "), value.replace("+", " ")
        if "%" in name:
            name = unquote(name, errors="strict")
        if "%" in value:
            value = unquote(value, errors="strict")
        pairs.append((name, value))
    return pairs


def check_value(text: str, rule: FieldRule) -> str | None:
    if rule.type == "string":
        return _check_string(text, rule)
    if rule.type == "boolean":
        return None if text in ("true", "false") else "must be true or false"
    try:
        number = int(text) if rule.type == "integer" else float(text)
    except ValueError:
        return f"must be {'an integer' if rule.type == 'integer' else 'a number'}"
    if isinstance(number, float) and not math.isfinite(number):
        return "must be a finite number"
    if rule.minimum is not None and number < rule.minimum:
        return f"must be at least {_plain(rule.minimum)}"
    if rule.maximum is not None and number > rule.maximum:
        return f"must be at most {_plain(rule.maximum)}"
    return None


def _check_string(text: str, rule: FieldRule) -> str | None:
    if rule.min_length is not None and len(text) < rule.min_length:
        return f"must be at least {rule.min_length} characters long"
    if rule.max_length is not None and len(text) > rule.max_length:
        return f"must be at most {rule.max_length} characters long"
    if rule.enum and text not in rule.enum:
        return f"must be one of {', '.join(rule.enum)}"
    return None


def _plain(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else str(number)


class QueryValidation:
    """Query rules, checked before authentication (as the platform always did): cheap, and a
    malformed search is the same mistake with or without a token."""

    def __init__(self, rules: tuple[FieldRule, ...]) -> None:
        self.rules = rules

    def __call__(self, request: Request, call_next: Handler) -> Awaitable[Response]:
        errors = check_query(request.query, self.rules)
        if errors:
            raise ValidationFailed(errors)
        return call_next(request)


class JsonBody:
    """POST, PUT and PATCH bodies must be JSON. Checked after authentication: the gateway does
    not read the body of a request it is about to refuse (nor answer 100 Continue for it).

    Parsing builds one Python object per value, all on the event loop: its size, nesting and
    number of values are bounded first, by byte counts that cost well under a millisecond per
    MiB (see ``json_bound_error``), so that no body holds the loop for more than a few ms."""

    def __init__(self, config: ValidationConfig, schema: Schema | None = None) -> None:
        self.max_bytes = config.json_max_bytes
        self.max_depth = config.json_max_depth
        self.max_values = config.json_max_values
        # An endpoint's body schema (config/endpoint_validation.py): the body is then required.
        self.schema = schema

    def __call__(self, request: Request, call_next: Handler) -> Awaitable[Response]:
        if request.method in BODY_METHODS:
            return self._checked(request, call_next)
        return call_next(request)

    async def _checked(self, request: Request, call_next: Handler) -> Response:
        body = request.body
        declared = request.content_length
        if declared is not None and declared > self.max_bytes:
            raise PayloadTooLarge(f"a JSON body may not exceed {self.max_bytes} bytes")
        # Refused before a byte of the body is read (or a 100 Continue sent).
        content_type = single_value(request.headers, CONTENT_TYPE)
        if not isinstance(body, bytes):
            # Already capped by the route's body limit (RequestBounds runs first).
            chunks, size = [], 0
            async for chunk in body:
                size += len(chunk)
                if size > self.max_bytes:
                    raise PayloadTooLarge(f"a JSON body may not exceed {self.max_bytes} bytes")
                chunks.append(chunk)
            body = b"".join(chunks)
            request.body = body
            request.content_length = len(body)
        if body:
            _check_json_type(content_type)
            self._check_json(body)
        elif self.schema is not None:
            raise ValidationFailed([{"field": "body", "message": "is required"}])
        return await call_next(request)

    def _check_json(self, body: bytes) -> None:
        if len(body) > self.max_bytes:
            raise PayloadTooLarge(f"a JSON body may not exceed {self.max_bytes} bytes")
        complaint = json_bound_error(body, self.max_depth, self.max_values)
        if complaint is None:
            try:
                value = orjson.loads(body)
            except orjson.JSONDecodeError as exc:
                complaint = f"invalid JSON: {exc}"
            else:
                if self.schema is not None:
                    errors: list[Error] = []
                    self.schema.check(value, "body", errors)
                    if errors:
                        raise ValidationFailed(errors)
        if complaint is not None:
            raise ValidationFailed([{"field": "body", "message": complaint}])


def json_bound_error(body: bytes, max_depth: int, max_values: int) -> str | None:
    """Why parsing ``body`` would cost too much, or None; only C-speed passes over the bytes
    (about 1 ms for the worst MiB, against 120 ms to parse it).

    Values are counted as arrays + objects + commas + 1 outside strings: each value but the
    first opens a container or follows a comma (an empty container counts one too many). For a
    body that is not JSON the count is exact up to the first error, which is as far as the
    parser gets: it never builds more objects than counted.
    """
    if len(body) < max_values and body.count(OPEN_ARRAY) + body.count(OPEN_OBJECT) <= max_depth:
        # Each value counted is a byte of its own, and each level of nesting a bracket: too few
        # bytes for too many values, and too few brackets, in strings or not, to nest too deep.
        return None
    outside = _outside_strings(body, max_values)
    too_many = f"holds more than {max_values} values"
    if outside is None:
        return too_many
    marks = outside.translate(None, NOT_VALUE_MARKS)
    if len(marks) >= max_values:
        return too_many
    containers = len(marks) - marks.count(b",")
    if containers > max_depth and _deeper_than(outside.translate(None, NOT_BRACKETS), max_depth):
        return f"nested deeper than {max_depth} levels"
    return None


def _outside_strings(body: bytes, max_values: int) -> bytes | None:
    """The bytes outside JSON strings; None when there are more strings than values allow."""
    if b"\\" in body and b'\\"' in body:  # memchr first: the pair search is slower
        # Escapes pair left to right: drop escaped backslashes first, then escaped quotes, and
        # every quote left opens or closes a string.
        body = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    quotes = body.count(b'"')
    if quotes > 4 * (max_values + 1):  # a string per value and per key at most
        return None
    return b"".join(body.split(b'"')[::2]) if quotes else body


def _deeper_than(brackets: bytes, max_depth: int) -> bool:
    # Only reached with fewer containers than max_values: a short loop.
    depth = 0
    for byte in brackets:
        if byte in OPENERS:
            depth += 1
            if depth > max_depth:
                return True
        else:
            depth -= 1
    return False


def _check_json_type(content_type: bytes | None) -> None:
    """A declared type must be JSON; a body without one is judged by parsing it."""
    if content_type is None:
        return
    if b"," in content_type and _is_list(content_type):
        raise BadRequest("the content-type header holds more than one media type")
    media_type = content_type.split(b";")[0].strip().lower()
    if media_type != b"application/json" and not media_type.endswith(b"+json"):
        raise UnsupportedMediaType("the body must be JSON (Content-Type: application/json)")


def _is_list(value: bytes) -> bool:
    """Whether a comma stands outside quoted strings (a parameter may quote one)."""
    if b'"' not in value:
        return True
    outside = QUOTED_PAIR.sub(b"", value).split(b'"')[::2]
    return any(b"," in part for part in outside)

"""Request validation for routes that declare a schema: a bad request gets 400 with every field's
error and never reaches the service."""

from __future__ import annotations

import math
from collections.abc import Awaitable
from urllib.parse import parse_qsl

import orjson

from api_gateway.config.validation import FieldRule
from api_gateway.errors import UnsupportedMediaType, ValidationFailed
from api_gateway.http.framing import BODY_METHODS
from api_gateway.types import Handler, Request, Response

Error = dict[str, str]


def check_query(query: bytes, rules: tuple[FieldRule, ...]) -> list[Error]:
    """Every rule's complaint about the query string (parameters without a rule pass)."""
    try:
        pairs = parse_qsl(query.decode("utf-8"), keep_blank_values=True, errors="strict")
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
    not read the body of a request it is about to refuse (nor answer 100 Continue for it)."""

    def __call__(self, request: Request, call_next: Handler) -> Awaitable[Response]:
        if request.method in BODY_METHODS:
            return self._checked(request, call_next)
        return call_next(request)

    async def _checked(self, request: Request, call_next: Handler) -> Response:
        body = request.body
        if not isinstance(body, bytes):
            # Already capped by the route's body limit (RequestLimits runs first).
            body = b"".join([chunk async for chunk in body])
            request.body = body
            request.content_length = len(body)
        if body:
            _check_json_type(request.header(b"content-type"))
            try:
                orjson.loads(body)
            except orjson.JSONDecodeError as exc:
                error = {"field": "body", "message": f"invalid JSON: {exc}"}
                raise ValidationFailed([error]) from exc
        return await call_next(request)


def _check_json_type(content_type: bytes | None) -> None:
    """A declared type must be JSON; a body without one is judged by parsing it."""
    if content_type is None:
        return
    media_type = content_type.split(b";")[0].strip().lower()
    if media_type != b"application/json" and not media_type.endswith(b"+json"):
        raise UnsupportedMediaType("the body must be JSON (Content-Type: application/json)")

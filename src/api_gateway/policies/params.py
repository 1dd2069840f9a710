"""Path parameters of an endpoint template (``/payments/{id}/refund``), judged by their schemas
before the body is read: a bad one is a 400 ``validation-failed`` naming ``params.<name>``."""

from __future__ import annotations

from collections.abc import Awaitable

from api_gateway.errors import ValidationFailed
from api_gateway.json_schema import Error, Schema
from api_gateway.path_templates import segments_of
from api_gateway.types import Handler, Request, Response


class PathParams:
    """Only in the chain of an endpoint whose template matched, so every segment it reads is
    there (``Endpoints`` matched the shape)."""

    def __init__(self, prefix: str, rules: list[tuple[str, int, Schema]]) -> None:
        self.prefix_length = len(prefix)
        # (name, segment index, schema), in the template's order.
        self.rules = rules

    def __call__(self, request: Request, call_next: Handler) -> Awaitable[Response]:
        segments = segments_of(request.path[self.prefix_length :])
        errors: list[Error] = []
        for name, index, schema in self.rules:
            value = segments[index] if index < len(segments) else ""
            schema.check(value, "params." + name, errors)
        if errors:
            raise ValidationFailed(errors)
        return call_next(request)

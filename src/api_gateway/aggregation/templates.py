"""Path templates of aggregates and their sources: parsed once at start-up, resolved per request.

A template is a path with ``{placeholders}``, optionally followed by ``?query`` with more of
them. A placeholder names a path parameter of the aggregate (``{eventId}``), a field of the
caller's token (``{user.id}``) or a field of an earlier source's JSON answer
(``{event.venueId}``, ``{event.venue.id}``).

In the path part a placeholder is a whole segment, and a value that would change the path's
structure (empty, ``.``, ``..``, or holding ``/`` or ``\\``) is refused rather than encoded:
a service that decodes ``%2F`` or resolves dot segments must not be steered to another
resource. Every value is percent-encoded, so ``?``, ``#``, ``&`` and ``=`` stay data.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote, unquote

NAME: Final = r"[A-Za-z_][A-Za-z0-9_]*"
PLACEHOLDER: Final = re.compile(r"\{([^{}]*)\}")
VARIABLE: Final = re.compile(rf"{NAME}(?:\.{NAME})*")
STRUCTURAL: Final = frozenset({"", ".", ".."})


class TemplateError(ValueError):
    """A template is malformed (start-up) or cannot be filled in (per request)."""


@dataclass(frozen=True, slots=True)
class Variable:
    root: str  # a path parameter, "user", or a source's key
    fields: tuple[str, ...]  # the path into the root's value
    in_query: bool

    @property
    def name(self) -> str:
        return ".".join((self.root, *self.fields))


Part = str | Variable


@dataclass(frozen=True, slots=True)
class Template:
    text: str
    parts: tuple[Part, ...]

    @property
    def variables(self) -> tuple[Variable, ...]:
        return tuple(part for part in self.parts if isinstance(part, Variable))

    def resolve(self, scope: Mapping[str, object]) -> str:
        """The template filled in from ``scope`` (root name -> value); ``TemplateError`` when a
        value is missing, not a string or integer, or would change the path's structure."""
        pieces = []
        for part in self.parts:
            if isinstance(part, str):
                pieces.append(part)
                continue
            value = lookup(scope, part)
            if not part.in_query and (value in STRUCTURAL or "/" in value or "\\" in value):
                raise TemplateError(f"{part.name} = {value!r} cannot be a path segment")
            pieces.append(quote(value, safe=""))
        return "".join(pieces)

    def match(self, path: str) -> dict[str, str] | None:
        """The path parameters when the canonical ``path`` has this template's shape, else None.

        Path templates hold no query and no fields; values are percent-decoded (the canonical
        path keeps reserved characters encoded and never holds an encoded ``/``).
        """
        segments = path.rstrip("/").split("/")
        if len(segments) != len(self.parts):
            return None
        params = {}
        for segment, part in zip(segments, self.parts, strict=True):
            if isinstance(part, str):
                if segment != part:
                    return None
            elif not segment:
                return None
            else:
                try:
                    params[part.root] = unquote(segment, errors="strict")
                except UnicodeDecodeError:
                    return None
        return params


def lookup(scope: Mapping[str, object], variable: Variable) -> str:
    if variable.root not in scope:
        raise TemplateError(f"{variable.root} is not available")
    value = scope[variable.root]
    for depth, field in enumerate(variable.fields):
        if not isinstance(value, dict) or field not in value:
            seen = ".".join((variable.root, *variable.fields[:depth]))
            raise TemplateError(f"{variable.name} is missing from {seen}")
        value = value[field]
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise TemplateError(f"{variable.name} is not a string or an integer")
    return str(value)


def parse(text: str) -> Template:
    """A source's template: ``/path/{var}/more?query={var}``."""
    if not text.startswith("/") or "#" in text or not text.isascii():
        raise TemplateError(f"{text!r} must be an ASCII absolute path without a fragment")
    path, mark, query = text.partition("?")
    parts: list[Part] = []
    _parse_path(path, parts)
    if mark:
        parts.append("?")
        _parse_query(query, parts)
    return Template(text, tuple(parts))


def parse_route(text: str) -> Template:
    """An aggregate's own path (``/events/{eventId}``): one part per segment, no query, and
    placeholders that are plain names."""
    if not text.startswith("/") or "?" in text or "#" in text or not text.isascii():
        raise TemplateError(f"{text!r} must be an ASCII absolute path without a query")
    parts: list[Part] = [""]
    for segment in text[1:].split("/"):
        variable = _whole_segment(segment, False)
        if variable is not None and variable.fields:
            raise TemplateError(f"path parameter {{{variable.name}}} must be a plain name")
        parts.append(variable if variable is not None else _literal_segment(segment))
    names = [part.root for part in parts if isinstance(part, Variable)]
    if len(set(names)) != len(names):
        raise TemplateError(f"{text!r} names a path parameter twice")
    return Template(text, tuple(parts))


def literal_prefix(route: Template) -> str:
    """The segments before the first parameter: where the route table finds the aggregate."""
    literal = []
    for part in route.parts[1:]:
        if isinstance(part, Variable):
            break
        literal.append(part)
    return "".join("/" + segment for segment in literal)


def _parse_path(path: str, parts: list[Part]) -> None:
    for segment in path[1:].split("/"):
        parts.append("/")
        variable = _whole_segment(segment, False)
        parts.append(variable if variable is not None else _literal_segment(segment))


def _whole_segment(segment: str, in_query: bool) -> Variable | None:
    match = PLACEHOLDER.fullmatch(segment)
    return None if match is None else _variable(match.group(1), in_query)


def _literal_segment(segment: str) -> str:
    if segment in STRUCTURAL:
        raise TemplateError("empty, '.' and '..' segments are not allowed")
    if "{" in segment or "}" in segment:
        raise TemplateError(f"a placeholder must be a whole path segment, not {segment!r}")
    return segment


def _parse_query(query: str, parts: list[Part]) -> None:
    position = 0
    for match in PLACEHOLDER.finditer(query):
        _query_literal(query[position : match.start()], parts)
        parts.append(_variable(match.group(1), True))
        position = match.end()
    _query_literal(query[position:], parts)


def _query_literal(text: str, parts: list[Part]) -> None:
    if "{" in text or "}" in text:
        raise TemplateError(f"unbalanced brace in {text!r}")
    if text:
        parts.append(text)


def _variable(name: str, in_query: bool) -> Variable:
    if not VARIABLE.fullmatch(name):
        raise TemplateError(f"{{{name}}} is not a variable name (name or name.field)")
    root, *fields = name.split(".")
    return Variable(root, tuple(fields), in_query)

"""Endpoint paths with parameters: ``/{id}/refund`` below a route's prefix.

A template matches a path of as many segments whose literal segments are equal (without case,
as exact endpoints match: ``pipeline.Endpoints``) and whose parameter segments are anything
non-empty: the shape decides which endpoint's chain a request takes, and that chain's
``PathParams`` then judges the values, so a malformed id is a 400 rather than a request that
slips past to the route's default chain. Matching sees the path without ``;parameters`` (as
exact endpoints do); the values are judged as the service receives them, ``;`` and all.
"""

from __future__ import annotations

import re
from typing import Final

NAME: Final = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def is_template(path: str) -> bool:
    return "{" in path


def template_error(path: str) -> str | None:
    """Why ``path`` is not a template, or None."""
    for segment in path.split("/")[1:]:
        if ("{" in segment or "}" in segment) and NAME.fullmatch(segment) is None:
            return f"{segment!r}: a parameter is a whole segment, {{name}}"
    names = NAME.findall(path)
    if len(set(names)) != len(names):
        return "a parameter name appears twice"
    return None


class PathTemplate:
    """One endpoint template, split into segments once at start-up."""

    __slots__ = ("literals", "names", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        segments = text.rstrip("/").split("/")
        # None where a parameter stands; literal segments in lower case.
        self.literals: list[str | None] = []
        # Parameter name -> index of its segment (0 is the empty one before the first /).
        self.names: dict[str, int] = {}
        for index, segment in enumerate(segments):
            match = NAME.fullmatch(segment)
            if match is None:
                self.literals.append(segment.lower())
            else:
                self.literals.append(None)
                self.names[match.group(1)] = index

    def matches(self, rest: str) -> bool:
        """Whether ``rest`` (lower case, no ``;parameters``, no trailing /) has this shape."""
        segments = rest.split("/")
        literals = self.literals
        if len(segments) != len(literals):
            return False
        for index, literal in enumerate(literals):
            segment = segments[index]
            if literal is None:
                if not segment:
                    return False
            elif segment != literal:
                return False
        return True


def segments_of(rest: str) -> list[str]:
    """A path below the prefix as the service receives it, split like a template."""
    return rest.rstrip("/").split("/")

"""Stage planning: which sources can run together, given what each one's templates need.

Stage 0 holds the sources whose templates need only path parameters and the token; stage n
the sources whose dependencies all lie in earlier stages. At run time a source starts as soon
as its own dependencies are in (it does not wait for the whole previous stage), but the
stages are what start-up validation checks and what ``config check`` can show.
"""

from __future__ import annotations

from collections.abc import Mapping, Set


class PlanError(ValueError):
    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key  # the source at fault


def stages(dependencies: Mapping[str, Set[str]]) -> list[list[str]]:
    """Sources in stages (each stage in declaration order); ``PlanError`` names a source that
    depends on an unknown source or sits on a cycle."""
    for key, needs in dependencies.items():
        unknown = sorted(needs - dependencies.keys())
        if unknown:
            raise PlanError(key, f"depends on unknown source {unknown[0]!r}")
        if key in needs:
            raise PlanError(key, "depends on itself")
    placed: set[str] = set()
    planned: list[list[str]] = []
    while len(placed) < len(dependencies):
        stage = [
            key for key, needs in dependencies.items() if key not in placed and needs <= placed
        ]
        if not stage:
            stuck = next(key for key in dependencies if key not in placed)
            raise PlanError(stuck, "its dependencies form a cycle")
        planned.append(stage)
        placed.update(stage)
    return planned

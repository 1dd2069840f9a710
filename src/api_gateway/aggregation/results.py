"""What became of each source, and the merged document the client receives.

    {"data": {<key>: <answer or fallback>, ...},
     "meta": {"sources": {<key>: {"status": ..., "duration_ms": ..., "error": ...}},
              "complete": <every source ok>}}

A source is ``ok`` (its answer), ``fallback`` (optional: its configured value, with why),
``failed`` (required: the aggregate fails with it) or ``skipped`` (never finished because a
required source failed first). Only ``ok`` and ``fallback`` sources appear under ``data``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum


class Status(StrEnum):
    OK = "ok"
    FALLBACK = "fallback"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclass(frozen=True, slots=True)
class Outcome:
    status: Status
    value: object = None
    duration_ms: float = 0.0
    error: str | None = None
    # The exception behind a failure, for the problem the aggregate answers with.
    cause: Exception | None = field(default=None, compare=False)

    @property
    def has_data(self) -> bool:
        return self.status in (Status.OK, Status.FALLBACK)


def source_meta(outcome: Outcome) -> dict[str, object]:
    meta: dict[str, object] = {"status": outcome.status.value}
    if outcome.status is not Status.SKIPPED:
        meta["duration_ms"] = round(outcome.duration_ms, 1)
    if outcome.error is not None:
        meta["error"] = outcome.error
    return meta


def meta(keys: Iterable[str], outcomes: Mapping[str, Outcome]) -> dict[str, object]:
    """Every declared source's entry, in declaration order (a missing outcome is skipped)."""
    skipped = Outcome(Status.SKIPPED)
    sources = {key: source_meta(outcomes.get(key, skipped)) for key in keys}
    complete = all(entry["status"] == Status.OK.value for entry in sources.values())
    return {"sources": sources, "complete": complete}


def merge(keys: Iterable[str], outcomes: Mapping[str, Outcome]) -> dict[str, object]:
    keys = tuple(keys)
    data = {key: outcomes[key].value for key in keys if key in outcomes and outcomes[key].has_data}
    return {"data": data, "meta": meta(keys, outcomes)}

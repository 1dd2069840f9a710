"""What became of the configuration reloads: ``<dir>/reload.json``, written by the supervisor
after every attempt, read by the workers (metrics, the admin API) and by ``request_reload``.

The file lives in the supervisor's private directory (``API_GATEWAY_METRICS_DIR``) and is
replaced atomically (a temporary file, then a rename), so a reader sees the previous attempt's
record or the new one, never half of one. It is absent until the first attempt; a reader takes
an absent, unreadable or malformed file for "no attempt yet" rather than failing.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, replace
from typing import Any, Final

STATUS_FILE: Final = "reload.json"
# Longer messages are cut: the file is read on every scrape of the metrics.
MAX_ERROR_CHARS: Final = 1000


@dataclass(frozen=True, slots=True)
class ReloadStatus:
    generation: int = 0  # attempts so far, successful or not
    ok: int = 0
    error: int = 0
    last_error: str | None = None  # the last failed attempt's reason (kept after a success)
    # When the last attempt began (read the configuration): a reload asked for before that
    # moment is answered by it.
    last_attempt_unix: float | None = None
    # When the last successful attempt was done (every worker replaced).
    last_success_unix: float | None = None

    def attempted(self, error: str | None, began_unix: float, ended_unix: float) -> ReloadStatus:
        """The record after one more attempt: a success when ``error`` is None."""
        if error is None:
            return replace(
                self,
                generation=self.generation + 1,
                ok=self.ok + 1,
                last_attempt_unix=began_unix,
                last_success_unix=max(ended_unix, began_unix),
            )
        return replace(
            self,
            generation=self.generation + 1,
            error=self.error + 1,
            last_error=error[:MAX_ERROR_CHARS],
            last_attempt_unix=began_unix,
        )


def status_path(directory: str) -> str:
    return os.path.join(directory, STATUS_FILE)


def read_reload_status(directory: str | None) -> ReloadStatus:
    """The last record in ``directory`` (None: not under a supervisor), zeros when absent."""
    if not directory:
        return ReloadStatus()
    try:
        with open(status_path(directory), encoding="utf-8") as handle:
            document = json.load(handle)
    except (OSError, ValueError):
        return ReloadStatus()
    return parse_reload_status(document)


def parse_reload_status(document: Any) -> ReloadStatus:
    """A record from its JSON form, each field of the wrong type taken as absent."""
    if not isinstance(document, dict):
        return ReloadStatus()
    return ReloadStatus(
        generation=_count(document.get("generation")),
        ok=_count(document.get("ok")),
        error=_count(document.get("error")),
        last_error=_text(document.get("last_error")),
        last_attempt_unix=_instant(document.get("last_attempt_unix")),
        last_success_unix=_instant(document.get("last_success_unix")),
    )


def write_reload_status(directory: str, status: ReloadStatus) -> None:
    """Replace the record atomically (the supervisor's only writer)."""
    descriptor, temporary = tempfile.mkstemp(dir=directory, prefix=".reload-", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(asdict(status), handle)
        os.replace(temporary, status_path(directory))
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _instant(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)

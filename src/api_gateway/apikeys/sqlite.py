"""The embedded key store: one SQLite file in WAL mode, so gateway workers read while the CLI
writes, and no reader ever waits for a writer.

A lookup is one primary-key SELECT (a few µs), made on the event loop; ``touch`` writes, and a
write may wait for another process's, so it runs on a thread of its own connection.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from typing import Final

from api_gateway.apikeys.records import FIELDS, KeyRecord, record_of
from api_gateway.stores import StoreUnavailable

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS api_keys (
  id TEXT PRIMARY KEY, tenant TEXT NOT NULL, name TEXT NOT NULL, routes TEXT NOT NULL,
  rate TEXT NOT NULL, created_at REAL NOT NULL, expires_at REAL NOT NULL,
  revoked_at REAL NOT NULL, hash TEXT NOT NULL, previous_hash TEXT NOT NULL,
  previous_until REAL NOT NULL, last_used REAL NOT NULL DEFAULT 0
)"""
# Opening the file (start-up): how long every worker may wait for the others' set-up.
SETUP_TIMEOUT_S: Final = 5.0
SETUP_RETRY_S: Final = 0.02
COLUMNS: Final = ", ".join(FIELDS)
SELECT: Final = f"SELECT {COLUMNS}, last_used FROM api_keys"
UPSERT: Final = (
    f"INSERT INTO api_keys ({COLUMNS}) VALUES ({', '.join('?' * len(FIELDS))}) "
    f"ON CONFLICT(id) DO UPDATE SET {', '.join(f'{f} = excluded.{f}' for f in FIELDS[1:])}"
)


def connect(path: str, busy_timeout_s: float, any_thread: bool = False) -> sqlite3.Connection:
    """A connection whose reads wait at most ``busy_timeout_s`` for a writer. Set-up (WAL, the
    schema) runs at start-up, when every worker opens the file at once: switching a new file to
    WAL is refused at once ("database is locked", without waiting) while another process does
    the same, so it is tried again, for a bounded time."""
    try:
        db = sqlite3.connect(
            path, timeout=SETUP_TIMEOUT_S, isolation_level=None, check_same_thread=not any_thread
        )
        deadline = time.monotonic() + SETUP_TIMEOUT_S
        while True:
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                db.execute(SCHEMA)
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise
                time.sleep(SETUP_RETRY_S)
        db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
    except sqlite3.Error as exc:
        raise StoreUnavailable(f"API key store {path}: {exc}") from None
    return db


class SqliteKeys:
    def __init__(self, path: str, busy_timeout_s: float = 0.25) -> None:
        self.path, self.busy_timeout_s = path, busy_timeout_s
        self.db = connect(path, busy_timeout_s)
        self.writer: sqlite3.Connection | None = None  # touch's, on executor threads
        self.lock = threading.Lock()

    async def get(self, key_id: str) -> KeyRecord | None:
        rows = self._rows(SELECT + " WHERE id = ?", (key_id,))
        try:
            return _record(rows[0]) if rows else None
        except ValueError:
            return None

    async def put(self, record: KeyRecord) -> None:
        values = record.to_fields()
        try:
            self.db.execute(UPSERT, [values[name] for name in FIELDS])
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"API key store {self.path}: {exc}") from None

    async def records(self) -> list[KeyRecord]:
        found = []
        for row in self._rows(SELECT + " ORDER BY created_at, id", ()):
            try:
                found.append(_record(row))
            except ValueError:
                continue
        return found

    async def touch(self, key_id: str, when_s: float) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self._touch, key_id, when_s)

    def _touch(self, key_id: str, when_s: float) -> None:
        with self.lock:
            if self.writer is None:
                self.writer = connect(self.path, self.busy_timeout_s, any_thread=True)
            self.writer.execute(
                "UPDATE api_keys SET last_used = ? WHERE id = ? AND last_used < ?",
                (when_s, key_id, when_s),
            )

    async def close(self) -> None:
        self.db.close()
        with self.lock:
            if self.writer is not None:
                self.writer.close()
                self.writer = None

    def _rows(self, query: str, args: tuple[str, ...]) -> list[tuple[object, ...]]:
        try:
            return self.db.execute(query, args).fetchall()
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"API key store {self.path}: {exc}") from None


def _record(row: tuple[object, ...]) -> KeyRecord:
    return record_of(dict(zip((*FIELDS, "last_used"), map(str, row), strict=True)))

"""The embedded API-key store (SQLite) opened by every worker at once, as the supervisor starts
them: none may fail with "database is locked" (a new file's switch to WAL is refused at once,
not waited for, while another process makes the same switch)."""

from __future__ import annotations

import multiprocessing
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path

from api_gateway.apikeys.sqlite import SqliteKeys

ROUNDS = 10
WORKERS = 4
JOIN_S = 30.0


def open_store(path: str, barrier: Barrier, results: Queue[str]) -> None:
    barrier.wait()
    try:
        SqliteKeys(path)
    except Exception as exc:  # reported to the test, which names it
        results.put(repr(exc))
    else:
        results.put("ok")


def test_workers_opening_a_new_key_file_at_once_all_succeed(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    outcomes: list[str] = []
    for round_ in range(ROUNDS):
        path = str(tmp_path / f"keys-{round_}.sqlite3")
        barrier, results = context.Barrier(WORKERS), context.Queue()
        processes = [
            context.Process(target=open_store, args=(path, barrier, results))
            for _ in range(WORKERS)
        ]
        for process in processes:
            process.start()
        for process in processes:
            process.join(JOIN_S)
        outcomes += [results.get(timeout=JOIN_S) for _ in processes]

    assert [o for o in outcomes if o != "ok"] == []
    assert len(outcomes) == ROUNDS * WORKERS

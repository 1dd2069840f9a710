"""Generated request ids: unique within a worker, and across workers forked from one parent."""

from __future__ import annotations

import os
import re

from api_gateway.policies.context import new_request_id

WELL_FORMED = re.compile(r"[0-9a-f]{32}")


def test_ids_are_unique_and_of_one_width() -> None:
    ids = [new_request_id() for _ in range(10_000)]

    assert len(set(ids)) == len(ids)
    assert all(WELL_FORMED.fullmatch(request_id) for request_id in ids)
    assert len({request_id[:16] for request_id in ids}) == 1


def test_a_forked_worker_draws_its_own_prefix() -> None:
    parent = new_request_id()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: what a worker forked by the supervisor does
        os.write(write_end, new_request_id().encode())
        os._exit(0)
    os.close(write_end)
    try:
        child = os.read(read_end, 64).decode()
    finally:
        os.close(read_end)
        os.waitpid(pid, 0)

    assert WELL_FORMED.fullmatch(child)
    assert child[:16] != parent[:16]

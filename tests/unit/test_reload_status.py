"""The reload record (reload.json) and the pure parts of asking for a reload."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from api_gateway import config as config_module
from api_gateway.config.settings import ConfigError
from api_gateway.reload_status import (
    STATUS_FILE,
    ReloadStatus,
    parse_reload_status,
    read_reload_status,
    write_reload_status,
)
from api_gateway.reloading import ConfigSource, restart_free, settled


def test_attempts_are_counted_and_a_success_keeps_the_last_error() -> None:
    status = ReloadStatus().attempted("server.port: bad", 100.0, 100.5)
    status = status.attempted(None, 200.0, 201.0)

    assert status == ReloadStatus(
        generation=2,
        ok=1,
        error=1,
        last_error="server.port: bad",
        last_attempt_unix=200.0,
        last_success_unix=201.0,
    )


def test_the_record_is_written_whole_and_read_back(tmp_path: Path) -> None:
    status = ReloadStatus().attempted(None, 10.0, 11.0).attempted("x: y", 20.0, 20.1)

    write_reload_status(str(tmp_path), status)

    assert read_reload_status(str(tmp_path)) == status
    assert [path.name for path in tmp_path.iterdir()] == [STATUS_FILE]
    assert set(json.loads((tmp_path / STATUS_FILE).read_text())) == {
        "generation", "ok", "error", "last_error", "last_attempt_unix", "last_success_unix"
    }  # fmt: skip


@pytest.mark.parametrize("text", ["", "{", "[]", "null", '{"generation": "3"}'])
def test_an_absent_or_partial_record_reads_as_no_attempt(tmp_path: Path, text: str) -> None:
    (tmp_path / STATUS_FILE).write_text(text)

    assert read_reload_status(str(tmp_path)) == ReloadStatus()
    assert read_reload_status(str(tmp_path / "missing")) == ReloadStatus()
    assert read_reload_status(None) == ReloadStatus()


def test_fields_of_the_wrong_type_are_taken_as_absent() -> None:
    document = {"generation": 4, "ok": True, "error": -1, "last_error": 7, "last_attempt_unix": 5}

    assert parse_reload_status(document) == ReloadStatus(generation=4, last_attempt_unix=5.0)


def test_a_reload_is_answered_only_by_an_attempt_begun_after_it_was_asked() -> None:
    under_way = ReloadStatus().attempted(None, 99.0, 101.0)  # began before the signal at 100
    ours = under_way.attempted("routes: bad", 102.0, 102.1)
    later_success = ours.attempted(None, 103.0, 104.0)

    assert settled(under_way, 0, 100.0) is None
    assert settled(ReloadStatus(), 0, 100.0) is None
    refused = settled(ours, 1, 100.0)
    assert refused is not None and (refused.outcome, refused.message) == ("error", "routes: bad")
    done = settled(later_success, 1, 100.0)
    assert done is not None and done.ok and done.generation == 3


def test_command_line_overrides_apply_to_every_reload(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JWT_SECRET", "j" * 40)
    source = ConfigSource(None, "127.0.0.1", 0, 3)

    server = source.load().server

    assert (server.host, server.port, server.workers) == ("127.0.0.1", 0, 3)
    assert ConfigSource.decoded(source.encoded()) == source
    with pytest.raises(ConfigError, match="--workers"):
        ConfigSource(workers=0).overridden(source.load())


def test_a_new_listening_address_is_refused_naming_the_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("JWT_SECRET", "j" * 40)
    current = config_module.load(None)
    moved = replace(current, server=replace(current.server, port=current.server.port + 1))
    more_workers = replace(current, server=replace(current.server, workers=4))

    with pytest.raises(ConfigError) as refused:
        restart_free(current, moved)
    restart_free(current, more_workers)

    assert refused.value.key == "server.port"
    assert "needs a restart" in str(refused.value)

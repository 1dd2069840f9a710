"""``api-gateway apikey``: what an operator sees, run as a real process against the embedded
store and against a private Redis."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Mapping
from pathlib import Path

import pytest
import yaml
from support.gateway import GATEWAY_BINARY, gateway_env
from support.redis import RedisServer

PEPPER = "pepper-for-the-cli-tests-0123456789abcdef"
KEY = re.compile(r"ttk_([0-9A-Za-z]{12})_[0-9A-Za-z]{43}")
CLI_TIMEOUT_S = 30


class Cli:
    """``api-gateway apikey ...`` with one store (a config file in ``directory``)."""

    def __init__(self, directory: Path, env: Mapping[str, str] | None = None) -> None:
        self.directory = directory
        self.config = directory / "keys.yaml"
        self.config.write_text(yaml.safe_dump({"api_keys": {"path": str(directory / "k.db")}}))
        self.env = gateway_env({}, {"API_KEY_PEPPER": PEPPER, **(env or {})})

    def run(
        self, *args: str, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [GATEWAY_BINARY, "apikey", *args, "--config", str(self.config)],
            env={**self.env, **(env or {})},
            cwd=self.directory,
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT_S,
            check=False,
        )

    def ok(self, *args: str) -> subprocess.CompletedProcess[str]:
        done = self.run(*args)
        assert done.returncode == 0, done.stderr
        return done

    def create(self, *args: str) -> tuple[str, str]:
        """(key, id) of a new key."""
        done = self.ok("create", "--tenant", "tenant-7", "--name", "box office", *args)
        match = KEY.fullmatch(done.stdout.strip())
        assert match is not None, done.stdout
        assert match.group(1) in done.stderr
        return match.group(0), match.group(1)

    def listed(self) -> dict[str, list[str]]:
        """The rows of ``apikey list`` by id, checked to show no key."""
        done = self.ok("list")
        assert "ttk_" not in done.stdout
        lines = done.stdout.splitlines()
        assert lines[0].split()[:3] == ["ID", "TENANT", "NAME"]
        return {line.split()[0]: line.split() for line in lines[1:]}


@pytest.fixture(params=["embedded", "redis"])
def cli(request: pytest.FixtureRequest, tmp_path: Path) -> Cli:
    if request.param == "embedded":
        return Cli(tmp_path)
    server: RedisServer = request.getfixturevalue("redis_server")
    return Cli(tmp_path, {"REDIS_URL": server.url})


def test_create_prints_the_key_once_and_list_never_shows_it(cli: Cli) -> None:
    key, key_id = cli.create(
        "--routes", "/integrations", "--rate-limit", "3/60s", "--expires", "90d"
    )
    rows = cli.listed()
    assert list(rows) == [key_id]
    row = " ".join(rows[key_id])
    assert "tenant-7" in row and "box office" in row and "/integrations" in row
    assert "3/60s" in row and "never" in row and "active" in row
    secret = key.split("_")[2]
    stored = b"".join(p.read_bytes() for p in cli.directory.glob("k.db*"))
    assert secret.encode() not in stored and key.encode() not in stored
    second, second_id = cli.create()
    assert second != key and set(cli.listed()) == {key_id, second_id}


def test_revoke_marks_the_key_revoked(cli: Cli) -> None:
    _, key_id = cli.create()
    cli.ok("revoke", key_id)
    assert cli.listed()[key_id][-1] == "revoked"
    again = cli.ok("revoke", key_id)
    assert "already revoked" in again.stderr
    unknown = cli.run("revoke", "AAAAAAAAAAAA")
    assert unknown.returncode == 1 and "no API key" in unknown.stderr


def test_rotate_prints_a_new_key_for_the_same_record(cli: Cli) -> None:
    key, key_id = cli.create("--routes", "/search")
    done = cli.ok("rotate", key_id, "--grace", "1h")
    new = KEY.fullmatch(done.stdout.strip())
    assert new is not None and new.group(1) == key_id and new.group(0) != key
    assert "previous key works until" in done.stderr
    assert list(cli.listed()) == [key_id]
    cli.ok("revoke", key_id)
    refused = cli.run("rotate", key_id)
    assert refused.returncode == 1 and "revoked" in refused.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--routes", "/tickets"), "/tickets is not a route that accepts API keys"),
        (("--routes", "/nowhere"), "/nowhere is not a route that accepts API keys"),
        (("--rate-limit", "lots"), "--rate-limit"),
        (("--expires", "soon"), "--expires"),
        (("--expires", "0s"), "--expires"),
    ],
)
def test_bad_options_are_refused_with_one_clear_line(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    cli = Cli(tmp_path)
    done = cli.run("create", "--tenant", "t", "--name", "n", *args)
    assert done.returncode == 1
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert done.stdout == ""


def test_without_a_pepper_the_cli_refuses_to_run(tmp_path: Path) -> None:
    done = Cli(tmp_path).run("list", env={"API_KEY_PEPPER": ""})
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert "API_KEY_PEPPER is not set" in done.stderr
    assert not (tmp_path / "k.db").exists()

"""The admin listener's pure parts: the last-minute route window (injected clock), the
configuration's redaction, the command journal's parsing, and the admin settings."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from api_gateway.config.loader import load
from api_gateway.config.settings import ConfigError
from api_gateway.config_view import REDACTED, config_document
from api_gateway.journal import Journal, command, parse, parse_line
from api_gateway.observability.route_window import Delta, RouteWindow, Totals, figures, merge

BOUNDS = (1.0, 5.0, 10.0)  # ms; a fourth bucket is unbounded


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def totals(requests: int, errors: int, buckets: tuple[int, ...]) -> Totals:
    return Totals(requests, errors, buckets)


# --- route window -------------------------------------------------------------------------------


def test_the_window_is_the_growth_over_the_last_minute() -> None:
    clock = Clock()
    window = RouteWindow(clock, span_s=60, every_s=5)
    window.sample({"/api/v1/tickets": totals(100, 0, (100, 0, 0, 0))})
    for _ in range(13):  # 65 s of samples, nothing new
        clock.now += 5
        window.sample({"/api/v1/tickets": totals(100, 0, (100, 0, 0, 0))})
    clock.now += 5
    now = {"/api/v1/tickets": totals(160, 6, (100, 54, 5, 1))}

    delta = window.deltas(now)["/api/v1/tickets"]

    assert (delta.requests, delta.errors, delta.buckets) == (60, 6, (0, 54, 5, 1))
    assert delta.seconds == pytest.approx(60)
    shown = figures(delta.requests / delta.seconds, delta, BOUNDS)
    assert shown.rate_per_s == pytest.approx(1.0)
    assert shown.error_ratio == pytest.approx(0.1)
    assert shown.p99_ms is not None and 5.0 < shown.p99_ms <= 10.0


def test_the_ring_keeps_only_what_the_window_needs() -> None:
    clock = Clock()
    window = RouteWindow(clock, span_s=60, every_s=5)
    for _ in range(100):
        window.sample({})
        clock.now += 5

    assert len(window.samples) <= 60 / 5 + 1


def test_before_any_sample_the_window_runs_from_start() -> None:
    clock = Clock()
    window = RouteWindow(clock)
    clock.now += 10

    delta = window.deltas({"/r": totals(20, 0, (20, 0, 0, 0))})["/r"]

    assert delta.seconds == pytest.approx(10)
    assert delta.requests == 20


def test_workers_merge_by_summing_counts_and_rates() -> None:
    one = {"/r": Delta(60, 0, (60, 0, 0, 0), 60.0)}
    two = {"/r": Delta(30, 3, (0, 0, 27, 3), 30.0), "/s": Delta(1, 0, (1, 0, 0, 0), 60.0)}

    merged = merge([one, two])

    rate, delta = merged["/r"]
    assert rate == pytest.approx(2.0)
    assert (delta.requests, delta.errors, delta.buckets) == (90, 3, (60, 0, 27, 3))
    assert figures(rate, delta, BOUNDS).p99_ms == 10.0  # the unbounded bucket: the last bound
    assert figures(0.0, Delta(0, 0, (0, 0, 0, 0), 60.0), BOUNDS).p99_ms is None


def test_a_delta_survives_its_document_and_garbage_is_dropped() -> None:
    delta = Delta(5, 1, (4, 1, 0, 0), 12.5)

    assert Delta.parse(orjson.loads(orjson.dumps(delta.document()))) == delta
    assert Delta.parse([1, 2, "x", 3]) is None
    assert Delta.parse("nope") is None


# --- redaction ----------------------------------------------------------------------------------

SECRETS = {
    "JWT_ACCESS_SECRET": "access-secret-" + "a" * 32,
    "JWT_REFRESH_SECRET": "refresh-secret-" + "b" * 32,
    "ADMIN_TOKEN": "admin-token-" + "c" * 24,
    "API_KEY_PEPPER": "pepper-" + "d" * 32,
    "STRIPE_WEBHOOK_SECRET": "whsec_" + "e" * 24,
    "INTERNAL_HMAC_SECRET": "internal-hmac-" + "f" * 32,
    "REDIS_URL": "redis://gateway:redis-password-xyz@10.0.0.9:6379/0",
}


def test_no_secret_appears_in_the_configuration_document() -> None:
    config = load(None, SECRETS)

    text = orjson.dumps(config_document(config)).decode()

    for variable, value in SECRETS.items():
        secret = "redis-password-xyz" if variable == "REDIS_URL" else value
        assert secret not in text, variable
    assert REDACTED in text
    assert "10.0.0.9:6379" in text  # the Redis address is configuration, its password is not
    document = config_document(config)
    assert isinstance(document, dict)
    assert document["server"]["port"] == 3000  # the rest is as configured


# --- journal ------------------------------------------------------------------------------------


def test_journal_lines_parse_and_garbage_is_skipped() -> None:
    eject = command("eject", service="ticket", instance="10.0.0.1:3004")
    data = b"".join(
        [
            eject.line(),
            b"not json\n",
            b'{"command": "explode"}\n',
            b'{"command": "restore", "service": "ticket"}\n',  # no instance
            command("log-level", level="debug").line(),
            b'{"command": "breaker-reset", "serv',  # still being written
        ]
    )

    commands, used = parse(data)

    assert commands == [eject, command("log-level", level="debug")]
    assert data[used:] == b'{"command": "breaker-reset", "serv'
    assert parse_line(b"[1, 2]") is None


def test_every_journal_reader_applies_each_command_once_in_order(tmp_path: Path) -> None:
    seen_a: list[str] = []
    seen_b: list[str] = []
    a = Journal(str(tmp_path), lambda c: seen_a.append(c.get("level")))
    b = Journal(str(tmp_path), lambda c: seen_b.append(c.get("level")))

    a.append(command("log-level", level="debug"))
    b.poll()
    b.append(command("log-level", level="warn"))
    a.poll()
    a.poll()
    late = Journal(str(tmp_path), lambda c: None)
    late_seen: list[str] = []
    late.apply = lambda c: late_seen.append(c.get("level"))
    late.poll()  # a worker started later replays everything

    assert seen_a == seen_b == late_seen == ["debug", "warn"]
    assert a.offset == b.offset == late.offset == (tmp_path / "commands.jsonl").stat().st_size


def test_without_a_directory_a_command_applies_here_only() -> None:
    seen: list[str] = []
    journal = Journal(None, lambda c: seen.append(c.name))

    journal.append(command("breaker-reset", service="ticket"))

    assert seen == ["breaker-reset"] and not journal.poll()


# --- settings -----------------------------------------------------------------------------------

BASE = {"JWT_SECRET": "s" * 40}


def test_admin_settings_come_from_the_environment() -> None:
    config = load(None, BASE | {"ADMIN_PORT": "0", "ADMIN_TOKEN": "t" * 24})

    assert config.admin is not None
    assert (config.admin.host, config.admin.port, config.admin.token) == ("127.0.0.1", 0, "t" * 24)
    assert "t" * 24 not in repr(config)


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"ADMIN_PORT": "70000"}, "admin.port"),
        ({"ADMIN_PORT": "nine"}, "admin.port"),
        ({"ADMIN_HOST": "0.0.0.0"}, "ADMIN_TOKEN"),
    ],
)
def test_bad_admin_settings_stop_start_up_naming_the_key(env: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(None, BASE | env)
    assert caught.value.key == key


def test_a_non_loopback_admin_listener_starts_with_a_token() -> None:
    config = load(None, BASE | {"ADMIN_HOST": "0.0.0.0", "ADMIN_TOKEN": "t" * 24})
    assert config.admin is not None and config.admin.host == "0.0.0.0"


def test_readiness_require_knows_its_checks(tmp_path: Path) -> None:
    path = tmp_path / "ready.yaml"
    path.write_text("readiness: {require: [auth-service, redis]}\n")
    assert load(str(path), BASE).readiness_require == ("auth-service", "redis")
    path.write_text("readiness: {require: [auth]}\n")
    with pytest.raises(ConfigError) as caught:
        load(str(path), BASE)
    assert caught.value.key == "readiness.require"

"""What the workers tell each other about their breakers: merged per service, junk ignored."""

from __future__ import annotations

import orjson

from api_gateway.upstream.breaker_sync import merge, parse


def test_windows_are_summed_and_the_latest_opening_wins() -> None:
    merged = merge(
        [
            {"ticket": (4, 3, 0.0), "payment": (1, 0, 0.0)},
            {"ticket": (5, 5, 0.0), "payment": (0, 0, 900.0)},
            {"payment": (0, 0, 700.0)},
        ]
    )
    assert merged == {"ticket": (9, 8, 0.0), "payment": (1, 0, 900.0)}


def test_a_malformed_window_counts_as_nothing() -> None:
    raw = orjson.dumps({"ticket": [1, 2, 3.5], "bad": [1, "x", 0], "short": [1, 2], "no": True})
    assert parse(raw) == {"ticket": (1, 2, 3.5)}
    assert parse(b"not json") == {}
    assert parse(b"[1, 2]") == {}

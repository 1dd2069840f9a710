"""Which upstream response fields reach clients: the filter's decisions, and the configuration
that builds it (refused at start-up when an entry is neither a name nor ``prefix*``)."""

from __future__ import annotations

import pytest

from api_gateway.config.loader import build_response_headers, build_upstream
from api_gateway.config.sections import Section
from api_gateway.config.settings import ConfigError
from api_gateway.http.framing import FIELD_DECISIONS_SIZE, ResponseFieldFilter


def configured(drop: list[str]) -> ResponseFieldFilter:
    config = build_response_headers(Section({"drop": drop}, "response_headers"))
    return ResponseFieldFilter(config.drop_names, config.drop_prefixes)


def test_exact_names_and_prefixes_are_dropped_and_the_rest_passes() -> None:
    fields = configured(["X-Tenant-ID", "x-internal-*", "server"])

    assert not fields.decide(b"x-tenant-id")
    assert not fields.decide(b"x-internal-trace")
    assert not fields.decide(b"x-internal-")
    assert not fields.decide(b"server")
    assert fields.decide(b"x-tenant-idx")  # exact means exact
    assert fields.decide(b"x-internal")  # the prefix includes its dash
    assert fields.decide(b"content-type")


def test_framing_fields_and_x_powered_by_are_never_passed_whatever_the_list() -> None:
    fields = configured([])

    for name in (b"content-length", b"transfer-encoding", b"connection", b"x-powered-by"):
        assert not fields.decide(name)
    assert fields.decide(b"x-tenant-id")  # an empty list drops only those


def test_decisions_are_remembered_and_the_memory_is_bounded() -> None:
    fields = configured(["x-user-*"])

    assert fields.decide(b"x-user-id") is False
    assert fields.passed.get(b"x-user-id") is False
    for n in range(FIELD_DECISIONS_SIZE * 2):
        fields.decide(b"x-field-%d" % n)
    assert len(fields.passed) <= FIELD_DECISIONS_SIZE


@pytest.mark.parametrize("entry", ["*", "x-*-id", "x internal", "x-a**", "", "x:y", "é"])
def test_an_entry_that_is_neither_a_name_nor_a_prefix_stops_start_up(entry: str) -> None:
    with pytest.raises(ConfigError, match=r"response_headers\.drop"):
        configured([entry])


def test_the_list_must_be_a_list_of_strings() -> None:
    with pytest.raises(ConfigError, match=r"response_headers\.drop"):
        build_response_headers(Section({"drop": [1]}, "response_headers"))
    with pytest.raises(ConfigError, match=r"response_headers\.other"):
        build_response_headers(Section({"drop": [], "other": 1}, "response_headers"))


def test_the_head_caps_have_a_floor() -> None:
    base = {
        "connect_timeout_ms": 1,
        "max_idle_per_instance": 1,
        "idle_timeout_ms": 1,
        "max_response_header_bytes": 65536,
        "max_response_header_count": 100,
    }
    with pytest.raises(ConfigError, match=r"upstream\.max_response_header_bytes"):
        build_upstream(Section({**base, "max_response_header_bytes": 10}, "upstream"))
    with pytest.raises(ConfigError, match=r"upstream\.max_response_header_count"):
        build_upstream(Section({**base, "max_response_header_count": 0}, "upstream"))
    config = build_upstream(Section(base, "upstream"))
    assert (config.max_response_header_bytes, config.max_response_header_count) == (65536, 100)


def test_a_long_field_name_is_decided_but_never_remembered() -> None:
    fields = configured(["x-user-*"])
    long_names = [b"x-user-%d-" % n + b"a" * 16_000 for n in range(50)]

    assert [fields.decide(name) for name in long_names] == [False] * 50
    assert fields.decide(b"x-pad-" + b"b" * 16_000) is True
    assert len(fields.passed) == 0

"""Aggregation's pure core: templates, stage planning, merging, and the configuration's checks."""

from __future__ import annotations

import copy
from typing import Any
from urllib.parse import unquote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api_gateway.aggregation.plan import PlanError, stages
from api_gateway.aggregation.results import Outcome, Status, merge, meta
from api_gateway.aggregation.templates import TemplateError, literal_prefix, parse, parse_route
from api_gateway.config.loader import build, default_document
from api_gateway.config.settings import ConfigError

# --- templates -----------------------------------------------------------------------------------


def test_a_template_fills_in_parameters_token_fields_and_earlier_answers() -> None:
    template = parse("/api/v1/venues/{event.venue.id}/seats?user={user.id}&e={eventId}")
    scope = {"eventId": "e 1", "user": {"id": "a&b=c"}, "event": {"venue": {"id": 42}}}

    assert template.resolve(scope) == "/api/v1/venues/42/seats?user=a%26b%3Dc&e=e%201"
    assert {v.name for v in template.variables} == {"event.venue.id", "user.id", "eventId"}


@pytest.mark.parametrize("value", ["", ".", "..", "a/b", "a\\b"])
def test_a_value_that_would_change_the_path_structure_is_refused(value: str) -> None:
    with pytest.raises(TemplateError, match="path segment"):
        parse("/api/v1/events/{id}").resolve({"id": value})


def test_in_the_query_such_values_are_only_data() -> None:
    assert parse("/x?q={id}").resolve({"id": "../a/b?c#d"}) == "/x?q=..%2Fa%2Fb%3Fc%23d"


@pytest.mark.parametrize(
    ("scope", "message"),
    [
        ({}, "event is not available"),
        ({"event": {}}, "event.venueId is missing from event"),
        ({"event": ["x"]}, "missing"),
        ({"event": {"venueId": None}}, "not a string or an integer"),
        ({"event": {"venueId": True}}, "not a string or an integer"),
        ({"event": {"venueId": {"id": 1}}}, "not a string or an integer"),
    ],
)
def test_a_value_that_is_missing_or_not_scalar_is_refused(scope: Any, message: str) -> None:
    with pytest.raises(TemplateError, match=message):
        parse("/v/{event.venueId}").resolve(scope)


@pytest.mark.parametrize(
    "text",
    [
        "relative/{x}",
        "/caf\u00e9",
        "/a//b",
        "/a/./b",
        "/a/../b",
        "/a/x{id}",
        "/a/{bad-name}",
        "/a?q={",
        "/a#f",
    ],
)
def test_malformed_templates_are_refused(text: str) -> None:
    with pytest.raises(TemplateError):
        parse(text)


@given(st.text(max_size=40))
def test_a_resolved_segment_is_one_segment_that_decodes_to_the_value(value: str) -> None:
    template = parse("/api/v1/items/{id}/detail")
    try:
        resolved = template.resolve({"id": value})
    except TemplateError:
        assert value in ("", ".", "..") or "/" in value or "\\" in value
        return
    segments = resolved.split("/")
    assert len(segments) == 6 and segments[-1] == "detail"
    assert "?" not in resolved and "#" not in resolved
    assert unquote(segments[4], errors="surrogatepass") == value


@given(st.text(max_size=40))
def test_a_resolved_query_value_never_adds_a_parameter(value: str) -> None:
    resolved = parse("/x?a={v}&b=1").resolve({"v": value})
    path, _, query = resolved.partition("?")
    assert path == "/x" and "#" not in resolved
    assert [pair.split("=")[0] for pair in query.split("&")] == ["a", "b"]


def test_a_route_template_matches_its_shape_and_decodes_parameters() -> None:
    route = parse_route("/venues/{venueId}/overview")

    assert route.match("/venues/hall%201/overview") == {"venueId": "hall 1"}
    assert route.match("/venues/hall/overview/") == {"venueId": "hall"}
    assert route.match("/venues/hall") is None
    assert route.match("/venues/hall/overview/more") is None
    assert route.match("/venues//overview") is None
    assert route.match("/venues/%FF/overview") is None
    assert literal_prefix(route) == "/venues"
    assert literal_prefix(parse_route("/dashboard")) == "/dashboard"


@pytest.mark.parametrize("text", ["/a/{x.y}", "/a/{x}/{x}", "/a?b", "/a/"])
def test_malformed_route_templates_are_refused(text: str) -> None:
    with pytest.raises(TemplateError):
        parse_route(text)


# --- stages --------------------------------------------------------------------------------------


def test_sources_are_planned_in_stages_of_satisfied_dependencies() -> None:
    plan = stages({"event": set(), "venue": {"event"}, "seats": {"venue", "event"}, "x": set()})

    assert plan == [["event", "x"], ["venue"], ["seats"]]


@pytest.mark.parametrize(
    ("dependencies", "key", "message"),
    [
        ({"a": {"b"}, "b": {"a"}}, "a", "cycle"),
        ({"a": {"a"}}, "a", "itself"),
        ({"a": {"ghost"}}, "a", "unknown source 'ghost'"),
    ],
)
def test_impossible_plans_name_the_source(
    dependencies: dict[str, set[str]], key: str, message: str
) -> None:
    with pytest.raises(PlanError, match=message) as caught:
        stages(dependencies)
    assert caught.value.key == key


@given(st.dictionaries(st.sampled_from("abcdef"), st.sets(st.sampled_from("abcdef"))))
def test_every_stage_depends_only_on_earlier_stages(graph: dict[str, set[str]]) -> None:
    try:
        plan = stages(graph)
    except PlanError:
        return
    placed: set[str] = set()
    for stage in plan:
        assert all(graph[key] <= placed for key in stage)
        placed.update(stage)
    assert placed == set(graph)


# --- merging -------------------------------------------------------------------------------------


def test_merge_puts_answers_and_fallbacks_under_data_and_says_what_happened() -> None:
    outcomes = {
        "event": Outcome(Status.OK, {"id": 1}, 12.345),
        "listings": Outcome(Status.FALLBACK, [], 300.0, "no answer within 300 ms"),
    }

    document = merge(("event", "listings", "venue"), outcomes)

    assert document == {
        "data": {"event": {"id": 1}, "listings": []},
        "meta": {
            "sources": {
                "event": {"status": "ok", "duration_ms": 12.3},
                "listings": {
                    "status": "fallback",
                    "duration_ms": 300.0,
                    "error": "no answer within 300 ms",
                },
                "venue": {"status": "skipped"},
            },
            "complete": False,
        },
    }


def test_meta_is_complete_only_when_every_source_answered() -> None:
    ok = Outcome(Status.OK, 1, 1.0)
    assert meta(("a", "b"), {"a": ok, "b": ok})["complete"] is True
    failed = Outcome(Status.FAILED, None, 1.0, "a: bad")
    assert meta(("a", "b"), {"a": ok, "b": failed})["complete"] is False


# --- configuration -------------------------------------------------------------------------------

SECRETS = {"access_secret": "a" * 32, "refresh_secret": "a" * 32}


def with_aggregates(aggregates: dict[str, Any]) -> dict[str, Any]:
    document = default_document()
    document["jwt"].update(SECRETS)
    document["aggregates"] = aggregates
    return document


def aggregate(**sources: Any) -> dict[str, Any]:
    return {"path": "/things/{thingId}", "sources": sources}


REQUIRED = {"service": "event", "path": "/api/v1/events/{thingId}", "required": True}


def test_the_defaults_reproduce_the_two_platform_aggregates() -> None:
    document = default_document()
    document["jwt"].update(SECRETS)
    config = build(document)

    by_name = {a.name: a for a in config.aggregates}
    details, dashboard = by_name["event-details"], by_name["dashboard"]
    assert details.path.text == "/events/{eventId}"
    assert details.stages == (("event", "availability", "listings"), ("venue",))
    assert [s.key for s in details.sources if s.required] == ["event", "venue"]
    assert dashboard.stages == (("profile", "tickets", "orders", "notifications"),)
    assert [s.key for s in dashboard.sources if s.required] == ["profile"]
    assert all(a.auth_required for a in config.aggregates)


def test_null_removes_a_default_aggregate() -> None:
    document = default_document()
    document["jwt"].update(SECRETS)
    document["aggregates"]["dashboard"] = None

    assert [a.name for a in build(document).aggregates] == ["event-details"]


@pytest.mark.parametrize(
    ("aggregates", "key", "message"),
    [
        (
            {"x": aggregate(a={**REQUIRED, "service": "tix"})},
            "aggregates.x.sources.a.service",
            "unknown service 'tix'",
        ),
        (
            {"x": aggregate(a={**REQUIRED, "path": "/v/{nothing}"})},
            "aggregates.x.sources.a.path",
            "no parameter or source",
        ),
        (
            {"x": aggregate(a={**REQUIRED, "fallback": []})},
            "aggregates.x.sources.a.fallback",
            "required source has no fallback",
        ),
        (
            {"x": aggregate(a={"service": "event", "path": "/v"})},
            "aggregates.x.sources.a.timeout_ms",
            "optional source",
        ),
        (
            {
                "x": aggregate(
                    a={"service": "event", "path": "/v", "timeout_ms": 5},
                    b={**REQUIRED, "path": "/v/{a.id}"},
                )
            },
            "aggregates.x.sources.b.path",
            "a is not required",
        ),
        (
            {
                "x": aggregate(
                    a={**REQUIRED, "path": "/v/{b.id}"}, b={**REQUIRED, "path": "/{a.id}"}
                )
            },
            "aggregates.x.sources.a",
            "cycle",
        ),
        (
            {"x": {**aggregate(a={**REQUIRED, "path": "/u/{user.id}"}), "auth": "optional"}},
            "aggregates.x.sources.a.path",
            "needs auth: required",
        ),
        (
            {"x": aggregate(a={**REQUIRED, "path": "/u/{user.password}"})},
            "aggregates.x.sources.a.path",
            "user fields are",
        ),
        ({"x": aggregate(a={**REQUIRED, "colour": 1})}, "aggregates.x.sources.a.colour", "unknown"),
        ({"x": {**aggregate(a=REQUIRED), "auth": "maybe"}}, "aggregates.x.auth", "one of"),
        ({"x": {**aggregate(a=REQUIRED), "path": "/a/{b.c}"}}, "aggregates.x.path", "plain"),
        ({"x": {"path": "/a", "sources": {}}}, "aggregates.x.sources", "at least one"),
        ({"x": aggregate(user=REQUIRED)}, "aggregates.x.sources.user", "plain name"),
        (
            {
                "x": aggregate(a=REQUIRED),
                "y": {"path": "/things/{id}", "sources": {"a": {**REQUIRED, "path": "/e/{id}"}}},
            },
            "aggregates.y.path",
            "same path as aggregate 'x'",
        ),
    ],
)
def test_configuration_errors_name_the_key(
    aggregates: dict[str, Any], key: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        build(with_aggregates(copy.deepcopy(aggregates)))
    assert caught.value.key == key

"""The OpenAPI document: valid OpenAPI 3.1, and true to the compiled configuration."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from openapi_spec_validator import validate

from api_gateway.config.loader import load
from api_gateway.docs.components import ERRORS
from api_gateway.docs.openapi import build_document
from api_gateway.docs.site import DocsSite

ENV = {"JWT_SECRET": "s" * 40}


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return build_document(load(None, ENV))


def test_the_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    validate(document)
    assert document["openapi"] == "3.1.0"


def test_the_served_bytes_are_the_document(document: dict[str, Any]) -> None:
    assert orjson.loads(DocsSite(load(None, ENV)).document) == document


def test_the_gateways_own_endpoints_are_public(document: dict[str, Any]) -> None:
    for path in (
        "/health",
        "/ready",
        "/live",
        "/health/ready",
        "/health/live",
        "/docs",
        "/docs/openapi.json",
    ):
        assert document["paths"][path]["get"]["security"] == []


def test_every_prefix_is_described_with_its_subtree(document: dict[str, Any]) -> None:
    config = load(None, ENV)
    for route in config.routes:
        prefix = "/api/v1" + route.prefix
        assert prefix in document["paths"]
        assert prefix + "/{path}" in document["paths"]


def test_protected_paths_need_a_bearer_token_and_public_ones_do_not(
    document: dict[str, Any],
) -> None:
    paths = document["paths"]
    assert paths["/api/v1/tickets/{path}"]["get"]["security"] == [
        {"bearerAuth": []},
        {"cookieAuth": []},
    ]
    assert {"apiKeyAuth": []} in paths["/api/v1/integrations/{path}"]["get"]["security"]
    assert "401" in paths["/api/v1/tickets/{path}"]["get"]["responses"]
    assert paths["/api/v1/auth/login"]["post"]["security"] == []
    assert "401" not in paths["/api/v1/auth/login"]["post"]["responses"]
    assert paths["/api/v1/payments/webhooks/{path}"]["post"]["security"] == []
    # public, and a partner's API key is taken when sent
    assert paths["/api/v1/search/{path}"]["get"]["security"] == [{}, {"apiKeyAuth": []}]
    assert set(paths["/api/v1/webhooks/{path}"]) == {"post"}


def test_the_purchase_endpoint_shows_its_own_limit_and_timeout(document: dict[str, Any]) -> None:
    purchase = document["paths"]["/api/v1/tickets/purchase"]
    facts = purchase["post"]["x-gateway"]
    assert facts["timeout_ms"] == 30000
    limits = facts["rate_limits"]
    assert {
        "name": "ticket_purchase",
        "max": 5,
        "window_ms": 60000,
        "block_ms": 300000,
        "key": ["user"],
    } in limits
    assert {
        "name": "purchase_event",
        "max": 2,
        "window_ms": 60000,
        "key": ["user", "body:eventId"],
    } in limits
    assert "ticket_purchase" not in str(purchase["get"]["x-gateway"])


def test_endpoint_schemas_show_their_parameters_and_bodies(document: dict[str, Any]) -> None:
    refund = document["paths"]["/api/v1/payments/{id}/refund"]
    (parameter,) = [p for p in refund["post"]["parameters"] if p["in"] == "path"]
    assert parameter == {
        "name": "id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "format": "uuid"},
    }
    assert refund["get"]["parameters"][0]["name"] == "id"  # declared for every method
    body = refund["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["required"] == ["reason"]
    assert body["additionalProperties"] is False
    verify = document["paths"]["/api/v1/auth/verify-email"]["get"]["parameters"]
    assert {"name": "token", "in": "query", "required": True}.items() <= verify[0].items()


def test_keyed_operations_show_the_idempotency_key_and_its_answers(
    document: dict[str, Any],
) -> None:
    purchase = document["paths"]["/api/v1/tickets/purchase"]["post"]
    (key,) = [p for p in purchase["parameters"] if p["name"] == "Idempotency-Key"]
    assert key["in"] == "header" and key["required"] is False
    assert {"409", "422"} <= set(purchase["responses"])
    assert purchase["x-gateway"]["idempotency"] == "optional"
    reads = document["paths"]["/api/v1/tickets/purchase"]["get"]
    assert "409" not in reads["responses"] and "idempotency" not in reads["x-gateway"]


def test_declared_query_rules_become_parameters(document: dict[str, Any]) -> None:
    parameters = document["paths"]["/api/v1/search/{path}"]["get"]["parameters"]
    by_name = {p["name"]: p for p in parameters}
    assert by_name["limit"]["schema"] == {"type": "integer", "minimum": 1, "maximum": 100}
    assert by_name["order"]["schema"]["enum"] == ["asc", "desc"]


def test_rate_limit_headers_and_problem_responses(document: dict[str, Any]) -> None:
    components = document["components"]
    assert components["securitySchemes"]["bearerAuth"]["bearerFormat"] == "JWT"
    assert {"type", "title", "status", "detail", "request_id", "errors"} <= set(
        components["schemas"]["Problem"]["properties"]
    )
    for status in ("401", "403", "404", "413", "429", "502", "503", "504"):
        response = components["responses"][ERRORS[status][0]]
        assert "application/problem+json" in response["content"]
    too_many = components["responses"]["TooManyRequests"]
    assert {"Retry-After", "RateLimit-Limit", "X-RateLimit-Remaining"} <= set(too_many["headers"])
    forwarded = components["responses"]["ForwardedCacheable"]
    default = document["paths"]["/api/v1/events/{path}"]["get"]["responses"]["default"]
    assert default == {"$ref": "#/components/responses/ForwardedCacheable"}
    assert {"RateLimit-Reset", "X-RateLimit-Reset", "X-Cache"} <= set(forwarded["headers"])


# What the admin listener serves; the traffic port's document must describe none of it.
ADMIN_PATHS = ("/metrics", "/config", "/routes", "/reload", "/log-level", "/services")


def test_the_document_lists_the_traffic_ports_endpoints_and_no_admin_path(
    document: dict[str, Any],
) -> None:
    own = {path for path in document["paths"] if not path.startswith("/api/")}
    assert own == {"/live", "/ready", "/health", "/health/live", "/health/ready", "/docs"} | {
        "/docs/openapi.json"
    }
    assert not [p for p in document["paths"] if p.startswith(ADMIN_PATHS) or p == "/"]
    health = document["paths"]["/health"]["get"]["responses"]["200"]
    schema = health["content"]["application/json"]["schema"]
    assert set(schema["properties"]) == {"status", "uptime"}
    text = orjson.dumps(document).decode()
    for detail in ('"pid"', '"memory"', '"instances"', "admin.allow"):
        assert detail not in text


def test_every_aggregate_is_a_path_template_with_its_parameters(document: dict[str, Any]) -> None:
    config = load(None, ENV)
    assert config.aggregates
    for aggregate in config.aggregates:
        path = "/api/v1/aggregate" + aggregate.path.text
        operation = document["paths"][path]["get"]
        names = [p["name"] for p in operation.get("parameters", []) if p["in"] == "path"]
        assert names == [v.root for v in aggregate.path.variables]
        assert operation["tags"] == ["aggregates"]
        for source in aggregate.sources:
            assert f"`{source.key}`: {source.service}-service" in operation["description"]
    details = document["paths"]["/api/v1/aggregate/events/{eventId}"]["get"]
    assert details["parameters"] == [
        {"name": "eventId", "in": "path", "required": True, "schema": {"type": "string"}}
    ]
    assert details["security"] == [{"bearerAuth": []}, {"cookieAuth": []}]
    assert (
        "`listings`: marketplace-service `GET /api/v1/marketplace/listings?eventId={eventId}`, "
        "optional (after 1000 ms or a failure: `[]`)"
    ) in details["description"]
    facts = details["x-gateway"]
    assert (facts["aggregate"], facts["timeout_ms"]) == ("event-details", 5000)
    assert [s["key"] for s in facts["sources"]] == ["event", "venue", "availability", "listings"]


def test_an_aggregates_answers_are_its_document_and_problems_with_meta(
    document: dict[str, Any],
) -> None:
    responses = document["paths"]["/api/v1/aggregate/dashboard"]["get"]["responses"]
    assert {"200", "400", "401", "403", "404", "405", "413", "429", "502", "503", "504"} == set(
        responses
    )
    ok = responses["200"]["content"]["application/json"]["schema"]
    assert ok["properties"]["data"]["required"] == ["profile"]
    assert ok["properties"]["meta"]["properties"]["sources"]["required"] == [
        "profile",
        "tickets",
        "orders",
        "notifications",
    ]
    failed = responses["502"]["content"]["application/problem+json"]["schema"]
    assert failed == {"$ref": "#/components/schemas/AggregateProblem"}
    assert "Retry-After" in responses["503"]["headers"]
    assert "X-Request-ID" in responses["504"]["headers"]
    assert "AggregateSource" in document["components"]["schemas"]


def test_an_aggregate_of_the_configuration_is_described_as_declared(tmp_path: Path) -> None:
    declared = {
        "aggregates": {
            "venue-overview": {
                "path": "/venues/{venueId}/overview/{day}",
                "auth": "optional",
                "timeout_ms": 3000,
                "sources": {
                    "venue": {
                        "service": "venue",
                        "path": "/api/v1/venues/{venueId}",
                        "required": True,
                    },
                    "events": {
                        "service": "event",
                        "path": "/api/v1/events?venueId={venueId}&day={day}",
                        "timeout_ms": 800,
                        "fallback": {"items": []},
                    },
                },
            },
            "dashboard": None,
        }
    }
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(declared))
    document = build_document(load(str(path), ENV))

    validate(document)
    paths = document["paths"]
    assert "/api/v1/aggregate/dashboard" not in paths
    operation = paths["/api/v1/aggregate/venues/{venueId}/overview/{day}"]["get"]
    assert [p["name"] for p in operation["parameters"]] == ["venueId", "day"]
    assert operation["security"] == [{}, {"bearerAuth": []}, {"cookieAuth": []}]
    assert '(after 800 ms or a failure: `{"items":[]}`)' in operation["description"]
    assert operation["x-gateway"]["timeout_ms"] == 3000


def test_webhooks_show_their_own_limit_instead_of_the_global_one(document: dict[str, Any]) -> None:
    facts = document["paths"]["/api/v1/webhooks/{path}"]["post"]["x-gateway"]
    assert [limit["name"] for limit in facts["rate_limits"]] == ["user", "webhooks_address"]
    assert facts["rate_limits"][1] == {
        "name": "webhooks_address",
        "max": 1000,
        "window_ms": 60000,
        "key": ["ip"],
    }

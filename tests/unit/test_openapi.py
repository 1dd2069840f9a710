"""The OpenAPI document: valid OpenAPI 3.1, and true to the compiled configuration."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from openapi_spec_validator import validate

from api_gateway.config.loader import load
from api_gateway.docs.components import ERRORS
from api_gateway.docs.openapi import aggregate_paths, build_document
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
        "/metrics",
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


def test_aggregates_are_described_when_configured(document: dict[str, Any]) -> None:
    class Aggregate:
        path, methods, public = "/dashboard", ("GET",), False

    paths = aggregate_paths([Aggregate()])
    assert paths["/api/v1/dashboard"]["get"]["security"] == [{"bearerAuth": []}]
    validate({**document, "paths": {**document["paths"], **paths}})


def test_webhooks_show_their_own_limit_instead_of_the_global_one(document: dict[str, Any]) -> None:
    facts = document["paths"]["/api/v1/webhooks/{path}"]["post"]["x-gateway"]
    assert [limit["name"] for limit in facts["rate_limits"]] == ["user", "webhooks_address"]
    assert facts["rate_limits"][1] == {
        "name": "webhooks_address",
        "max": 1000,
        "window_ms": 60000,
        "key": ["ip"],
    }

"""The endpoint schemas' validator (the JSON Schema subset the shipped schemas use), endpoint
path templates, and the configuration that loads both: every rejection names its key."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from api_gateway.config.endpoint_validation import SHIPPED
from api_gateway.config.loader import build, default_document
from api_gateway.config.settings import ConfigError, GatewayConfig
from api_gateway.json_schema import MAX_ERRORS, SchemaError, compile_schema
from api_gateway.path_templates import PathTemplate, template_error


def errors(schema: dict[str, Any], value: object) -> dict[str, str]:
    found: list[dict[str, str]] = []
    compile_schema(schema).check(value, "body", found)
    return {e["field"]: e["message"] for e in found}


def test_types_follow_json_not_python() -> None:
    integer = {"type": "integer"}
    assert errors(integer, 3) == {}
    assert errors(integer, 3.0) == {}  # JSON has one number type: 3.0 is 3
    assert errors(integer, 3.5) == {"body": "must be an integer"}
    assert errors(integer, True) == {"body": "must be an integer"}
    assert errors({"type": "number"}, 2) == {}
    assert errors({"type": "boolean"}, 1) == {"body": "must be true or false"}
    assert errors({"type": ["string", "null"]}, None) == {}
    assert errors({"type": ["string", "null"]}, 1) == {"body": "must be null or a string"}
    assert errors({"enum": [1, "a"]}, True) == {"body": "must be one of 1, a"}
    assert errors({"const": True}, True) == {}
    assert errors({"const": True}, 1) == {"body": "must be one of true"}


def test_bounds_and_formats() -> None:
    text = {"type": "string", "minLength": 2, "maxLength": 3, "pattern": "^[a-z]+$"}
    assert errors(text, "ab") == {}
    assert errors(text, "a") == {"body": "must be at least 2 characters long"}
    assert errors(text, "abcd") == {"body": "must be at most 3 characters long"}
    assert errors(text, "AB") == {"body": "must match ^[a-z]+$"}
    assert errors({"type": "string", "minLength": 1}, "") == {"body": "must not be empty"}
    positive = {"type": "number", "exclusiveMinimum": 0, "maximum": 10}
    assert errors(positive, 0) == {"body": "must be greater than 0"}
    assert errors(positive, 10.5) == {"body": "must be at most 10"}
    assert errors({"minimum": 1, "exclusiveMaximum": 2}, 2) == {"body": "must be less than 2"}
    uuid = {"type": "string", "format": "uuid"}
    assert errors(uuid, "3F2B8C1E-9D4A-4C6B-8E2F-1A2B3C4D5E6F") == {}
    for bad in ("3f2b8c1e9d4a4c6b8e2f1a2b3c4d5e6f", "3f2b8c1e-9d4a-4c6b-8e2f-1a2b3c4d5e6", "x"):
        assert errors(uuid, bad) == {"body": "must be a UUID"}
    email = {"format": "email"}
    assert errors(email, "fan+1@mail.example.com") == {}
    for bad in ("fan@localhost", "fan@@x.com", "fan x@y.com", "@y.com", "fan@y.com\n"):
        assert errors(email, bad) == {"body": "must be an email address"}
    moment = {"format": "date-time"}
    assert errors(moment, "2027-01-01T10:00:00.5+02:00") == {}
    assert errors(moment, "2027-01-01") == {}
    assert errors(moment, "2027-13-01") == {"body": "must be an ISO 8601 date-time"}


def test_objects_and_arrays_name_each_field() -> None:
    schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["lines", "id"],
        "properties": {
            "id": {"type": "string"},
            "lines": {
                "type": "array",
                "minItems": 1,
                "maxItems": 3,
                "items": {"type": "object", "properties": {"n": {"type": "integer"}}},
            },
            "free": {"type": "object"},
        },
    }
    assert errors(schema, {"id": "a", "lines": [{"n": 1, "extra": 2}], "free": {"x": 1}}) == {}
    assert errors(schema, {"lines": [{"n": "1"}, {"n": 2.5}], "who": 1}) == {
        "body.id": "is required",
        "body.lines.0.n": "must be an integer",
        "body.lines.1.n": "must be an integer",
        "body.who": "is not allowed",
    }
    assert errors(schema, {"id": "a", "lines": []}) == {"body.lines": "must hold at least 1 items"}
    assert errors(schema, [1]) == {"body": "must be an object"}


def test_the_errors_of_one_body_are_capped() -> None:
    schema = {"type": "array", "items": {"type": "string"}}
    assert len(errors(schema, list(range(1000)))) == MAX_ERRORS
    closed = {"type": "object", "additionalProperties": False}
    named = errors(closed, {"k" * 500: 1})
    assert list(named) == ["body." + "k" * 64 + "..."]


@pytest.mark.parametrize(
    ("schema", "where"),
    [
        ({"type": "object", "oneOf": []}, "#/oneOf"),
        ({"properties": {"a": {"type": "text"}}}, "#/properties/a/type"),
        ({"items": {"format": "ipv4"}}, "#/items/format"),
        ({"minLength": -1}, "#/minLength"),
        ({"maximum": "10"}, "#/maximum"),
        ({"pattern": "("}, "#/pattern"),
        ({"additionalProperties": {"type": "string"}}, "#/additionalProperties"),
        ({"required": "id"}, "#/required"),
        ({"enum": []}, "#/enum"),
        ([], "#"),
    ],
)
def test_what_the_validator_cannot_honour_is_refused(schema: Any, where: str) -> None:
    with pytest.raises(SchemaError) as raised:
        compile_schema(schema)
    assert raised.value.where == where


def test_templates_match_by_shape() -> None:
    refund = PathTemplate("/{id}/refund")
    assert refund.names == {"id": 1}
    assert refund.matches("/abc/refund")
    assert not refund.matches("//refund")
    assert not refund.matches("/abc/refund/x")
    assert not refund.matches("/abc/other")
    assert template_error("/{id}/refund") is None
    assert template_error("/x{id}/refund") is not None
    assert template_error("/{id}/{id}") is not None
    assert template_error("/{1d}") is not None


def config_with(endpoint: dict[str, Any]) -> GatewayConfig:
    document = copy.deepcopy(default_document())
    document["jwt"]["access_secret"] = document["jwt"]["refresh_secret"] = "s" * 32
    document["routes"]["/marketplace"]["endpoints"] = [endpoint]
    return build(document)


KEY = "routes./marketplace.endpoints[0]"


@pytest.mark.parametrize(
    ("validation", "key", "words"),
    [
        ({"body": "nowhere.json"}, f"{KEY}.validation.body", "cannot read the schema"),
        ({"body": {"type": "object", "if": {}}}, f"{KEY}.validation.body", "#/if"),
        ({"body": 5}, f"{KEY}.validation.body", "schema file name"),
        ({"params": {"slug": {"type": "string"}}}, f"{KEY}.validation.params.slug", "no param"),
        ({"params": {"id": {"format": "ip"}}}, f"{KEY}.validation.params.id", "#/format"),
        ({"query": {"q": {"type": "text"}}}, f"{KEY}.validation.query.q.type", "must be one"),
        ({"headers": {}}, f"{KEY}.validation.headers", "unknown setting"),
    ],
)
def test_bad_endpoint_validation_names_its_key(
    validation: dict[str, Any], key: str, words: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        config_with({"path": "/{id}/x", "methods": ["POST"], "validation": validation})
    assert raised.value.key == key
    assert words in str(raised.value)


def test_a_schema_file_that_is_not_json_names_the_key(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("{nope")
    with pytest.raises(ConfigError) as raised:
        config_with({"path": "/x", "methods": ["POST"], "validation": {"body": str(broken)}})
    assert raised.value.key == f"{KEY}.validation.body"
    assert "is not JSON" in str(raised.value)


def test_a_template_must_be_whole_segments() -> None:
    with pytest.raises(ConfigError) as raised:
        config_with({"path": "/x{id}", "methods": ["POST"]})
    assert raised.value.key == f"{KEY}.path"


def test_every_shipped_schema_compiles_and_is_used() -> None:
    config = config_with({"path": "/listings", "methods": ["POST"]})
    used = {
        json.dumps(e.validation.body_document, sort_keys=True)
        for route in config.routes
        for e in route.endpoints
        if e.validation is not None and e.validation.body_document is not None
    }
    shipped = sorted(SHIPPED.glob("*.json"))
    assert len(shipped) == 13
    for path in shipped:
        document = json.loads(path.read_text())
        compile_schema(document)
        assert document["additionalProperties"] is False, path.name
        if path.name != "create-listing.json":  # replaced in this configuration
            assert json.dumps(document, sort_keys=True) in used, path.name

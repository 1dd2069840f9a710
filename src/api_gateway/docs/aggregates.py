"""Aggregate endpoints as OpenAPI path items: their path templates with the parameters, the
token they need, what they combine, and every answer (the merged document, or a problem that
carries each source's outcome)."""

from __future__ import annotations

import orjson

from api_gateway.config.aggregates import AggregateConfig, SourceConfig
from api_gateway.config.settings import GatewayConfig
from api_gateway.docs.components import (
    Json,
    error_refs,
    limit_facts,
    operation_id,
    problem_response,
    ref,
)
from api_gateway.pipeline import AGGREGATE_BASE

TAG: Json = {
    "name": "aggregates",
    "description": "Answered by the gateway from several services at once (README: Aggregation).",
}
# The problems that carry the sources' outcomes under `meta` when a source caused them.
WITH_META: dict[str, str] = {
    "403": "A required source's own 403, or a venue the request or a source's path names "
    "belongs to another tenant.",
    "404": "A required source's own 404 (an unknown id).",
    "502": "A required source refused, reset, answered a 5xx or invalid JSON, or a value its "
    "path needs is missing.",
    "503": "A required source's circuit is open (with `Retry-After`), or a venue lookup failed.",
    "504": "A required source, or the whole aggregate, missed its deadline.",
}
SOURCE_META: Json = {
    "type": "object",
    "required": ["status"],
    "properties": {
        "status": {"type": "string", "enum": ["ok", "fallback", "failed", "skipped"]},
        "duration_ms": {"type": "number"},
        "error": {"type": "string", "description": "Why the source fell back or failed."},
    },
}


def aggregate_components() -> Json:
    """Schemas shared by every aggregate: each source's outcome, and the failure problem."""
    return {
        "AggregateSource": SOURCE_META,
        "AggregateProblem": {
            "allOf": [
                ref("schemas", "Problem"),
                {
                    "type": "object",
                    "properties": {"meta": _meta_schema(None)},
                    "description": "`meta`: every source's outcome, when a source failed.",
                },
            ]
        },
    }


def aggregate_paths(config: GatewayConfig) -> Json:
    return {
        AGGREGATE_BASE + aggregate.path.text: {"get": _operation(config, aggregate)}
        for aggregate in config.aggregates
    }


def _operation(config: GatewayConfig, aggregate: AggregateConfig) -> Json:
    path = AGGREGATE_BASE + aggregate.path.text
    responses = error_refs(["400", "401", "405", "413", "429"])
    for status, description in WITH_META.items():
        responses[status] = problem_response(status, description, "AggregateProblem")
    security: list[Json] = [{"bearerAuth": []}, {"cookieAuth": []}]
    if not aggregate.auth_required:
        security = [{}, *security]  # a token is verified when one is sent
    operation: Json = {
        "operationId": operation_id("GET", path),
        "tags": ["aggregates"],
        "summary": f"Aggregate {aggregate.name}: "
        + ", ".join(source.key for source in aggregate.sources),
        "description": describe(aggregate),
        "security": security,
        "responses": {
            "200": {
                "description": "Every required source answered; `meta` says how each did.",
                "headers": {"Cache-Control": {"schema": {"type": "string", "const": "no-store"}}},
                "content": {"application/json": {"schema": _result_schema(aggregate)}},
            },
            **dict(sorted(responses.items())),
        },
        "x-gateway": {
            "aggregate": aggregate.name,
            "timeout_ms": aggregate.timeout_ms,
            "rate_limits": [
                limit_facts(name, config.rate_limits[name])
                for name in ("global", "user")
                if name in config.rate_limits
            ],
            "sources": [_source_facts(source) for source in aggregate.sources],
        },
    }
    parameters = [
        {"name": v.root, "in": "path", "required": True, "schema": {"type": "string"}}
        for v in aggregate.path.variables
    ]
    if parameters:
        operation["parameters"] = parameters
    return operation


def describe(aggregate: AggregateConfig) -> str:
    """What the aggregate combines, one line per source, and its deadline."""
    lines = [
        f"Combines {len(aggregate.sources)} service calls under one {aggregate.timeout_ms} ms "
        "deadline, each as soon as the answers its path needs are in:"
    ]
    for source in aggregate.sources:
        call = f"`{source.key}`: {source.service}-service `GET {source.path.text}`"
        if source.required:
            lines.append(f"- {call}, required (its failure fails the aggregate)")
        else:
            lines.append(
                f"- {call}, optional (after {source.timeout_ms} ms or a failure: "
                f"`{orjson.dumps(source.fallback).decode()}`)"
            )
    return "\n".join(lines)


def _source_facts(source: SourceConfig) -> Json:
    facts: Json = {
        "key": source.key,
        "service": source.service,
        "path": source.path.text,
        "required": source.required,
    }
    if not source.required:
        facts |= {"timeout_ms": source.timeout_ms, "fallback": source.fallback}
    return facts


def _meta_schema(aggregate: AggregateConfig | None) -> Json:
    sources: Json = {"type": "object", "additionalProperties": ref("schemas", "AggregateSource")}
    if aggregate is not None:
        keys = [source.key for source in aggregate.sources]
        sources = {
            "type": "object",
            "required": keys,
            "properties": {key: ref("schemas", "AggregateSource") for key in keys},
        }
    return {
        "type": "object",
        "required": ["sources", "complete"],
        "properties": {
            "sources": sources,
            "complete": {"type": "boolean", "description": "Every source answered `ok`."},
        },
    }


def _result_schema(aggregate: AggregateConfig) -> Json:
    data = {
        source.key: {"description": f"{source.service}-service's answer"}
        if source.required
        else {"description": f"{source.service}-service's answer, or the fallback"}
        for source in aggregate.sources
    }
    return {
        "type": "object",
        "required": ["data", "meta"],
        "properties": {
            "data": {
                "type": "object",
                "required": [s.key for s in aggregate.sources if s.required],
                "properties": data,
            },
            "meta": _meta_schema(aggregate),
        },
    }

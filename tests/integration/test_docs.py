"""The documentation endpoints: the OpenAPI document and a page that works offline."""

from __future__ import annotations

import re

from support.gateway import Fleet, GatewayProcess

EXTERNAL_URL = re.compile(rb"https?://")
ASSET_REFERENCE = re.compile(rb'(?:src|href)="([^"]+)"')


def test_the_openapi_document_is_served_publicly(gateway: GatewayProcess, services: Fleet) -> None:
    response = gateway.get("/docs/openapi.json")

    assert response.status == 200
    assert response.header("content-type") == "application/json"
    assert response.json()["openapi"] == "3.1.0"
    assert response.header("x-request-id")
    assert response.header("content-security-policy")
    assert services.total_requests() == 0


def test_the_page_and_every_asset_it_references_are_served_without_external_urls(
    gateway: GatewayProcess,
) -> None:
    page = gateway.get("/docs")
    assert page.status == 200
    assert (page.header("content-type") or "").startswith("text/html")
    references = ASSET_REFERENCE.findall(page.body)
    assert b"/docs/docs.js" in references

    # The page's own files; the document it links to is data (problem type URIs are names).
    for reference in (r for r in references if not r.endswith(b".json")):
        asset = gateway.get(reference.decode())
        assert asset.status == 200, reference
        assert not EXTERNAL_URL.search(asset.body), reference
    assert not EXTERNAL_URL.search(page.body)


def test_the_script_fetches_the_document_from_the_gateway(gateway: GatewayProcess) -> None:
    script = gateway.get("/docs/docs.js")

    assert (script.header("content-type") or "").startswith("text/javascript")
    assert b'fetch("/docs/openapi.json")' in script.body


def test_the_default_csp_allows_the_page_script(gateway: GatewayProcess) -> None:
    page = gateway.get("/docs")

    csp = page.header("content-security-policy") or ""
    assert "script-src 'self'" in csp
    assert b"<script>" not in page.body  # nothing inline: only same-origin script files


def test_the_served_document_lists_the_aggregates_and_no_admin_path(
    gateway: GatewayProcess,
) -> None:
    paths = gateway.get("/docs/openapi.json").json()["paths"]

    assert "/api/v1/aggregate/events/{eventId}" in paths
    assert "/api/v1/aggregate/dashboard" in paths
    assert "/metrics" not in paths
    assert set(
        paths["/health"]["get"]["responses"]["200"]["content"]["application/json"]["schema"][
            "properties"
        ]
    ) == {"status", "uptime"}

"""Serves the OpenAPI document and the offline documentation page, all bytes made at start-up.

The page's script and style are files of their own under ``/docs/``, so the default CSP
(``script-src 'self'``) lets them run: nothing inline, nothing from another host.
"""

from __future__ import annotations

from importlib.resources import files

import orjson

from api_gateway.config.settings import GatewayConfig
from api_gateway.docs.openapi import build_document
from api_gateway.types import Handler, Request, Response

ASSETS = files("api_gateway.docs") / "assets"
# Revalidated every time: the document changes with the configuration of the gateway answering.
NO_CACHE = (b"cache-control", b"no-cache")
PAGES = {
    "/docs": ("index.html", b"text/html; charset=utf-8"),
    "/docs/docs.js": ("docs.js", b"text/javascript; charset=utf-8"),
    "/docs/docs.css": ("docs.css", b"text/css; charset=utf-8"),
}


def _handler(content_type: bytes, body: bytes) -> Handler:
    async def serve(request: Request) -> Response:
        return Response(200, [(b"content-type", content_type), NO_CACHE], body)

    return serve


class DocsSite:
    def __init__(self, config: GatewayConfig) -> None:
        self.document = orjson.dumps(build_document(config))

    def endpoints(self) -> dict[str, Handler]:
        handlers = {
            path: _handler(content_type, (ASSETS / name).read_bytes())
            for path, (name, content_type) in PAGES.items()
        }
        handlers["/docs/"] = handlers["/docs"]
        handlers["/docs/openapi.json"] = _handler(b"application/json", self.document)
        return handlers

"""API documentation: the OpenAPI 3.1 document and the page that renders it offline."""

from api_gateway.docs.site import DocsSite

__all__ = ["DocsSite"]

"""Request-path policies: small classes with ``__call__(self, request, call_next)`` returning the
awaitable response (see ``api_gateway.types.Policy``).

Which policies a route gets, and in which order, is decided in ``api_gateway.pipeline`` alone.
"""

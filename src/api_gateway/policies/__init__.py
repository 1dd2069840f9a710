"""Request-path policies: small classes with ``async def __call__(self, request, call_next)``.

Which policies a route gets, and in which order, is decided in ``api_gateway.pipeline`` alone.
"""

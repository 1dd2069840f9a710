"""api-gateway: the single entry point of the TicketToken platform."""

from api_gateway import compiled

compiled.activate()  # first: the compiled modules are found before any other is imported

__version__ = "0.1.0"
__all__ = ["__version__", "compiled"]

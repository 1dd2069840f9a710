"""api-gateway: the single entry point of the TicketToken platform."""

from api_gateway import compiled

__version__ = "0.1.0"
__all__ = ["__version__", "compiled"]

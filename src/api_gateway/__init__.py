"""api-gateway: the single entry point of the TicketToken platform."""

__version__ = "0.1.0"
__all__ = ["__version__"]

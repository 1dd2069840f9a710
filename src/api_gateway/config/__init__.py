"""Configuration: typed frozen settings built once from defaults, YAML and the environment."""

from api_gateway.config.loader import load
from api_gateway.config.settings import ConfigError, GatewayConfig

__all__ = ["ConfigError", "GatewayConfig", "load"]

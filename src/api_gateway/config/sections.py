"""Reading one mapping of the configuration document, naming the dotted key in every complaint."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from api_gateway.config.settings import ConfigError


def split_list(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


class Section:
    """Reads one mapping of the document, naming the dotted key in every complaint."""

    def __init__(self, data: Any, path: str) -> None:
        if not isinstance(data, Mapping):
            raise ConfigError(path, "must be a mapping")
        self.data, self.path, self.seen = data, path, set[str]()

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def raw(self, name: str, default: Any = ...) -> Any:
        self.seen.add(name)
        if name not in self.data:
            if default is ...:
                raise ConfigError(self.key(name), "is required")
            return default
        return self.data[name]

    def integer(self, name: str, minimum: int = 0, default: Any = ...) -> int:
        value = self.raw(name, default)
        if isinstance(value, str) and re.fullmatch(r"\s*-?[0-9]+\s*", value):
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(self.key(name), f"must be an integer, got {value!r}")
        if value < minimum:
            raise ConfigError(self.key(name), f"must be at least {minimum}, got {value}")
        return value

    def percent(self, name: str, minimum: int = 0) -> int:
        value = self.integer(name, minimum)
        if value > 100:
            raise ConfigError(self.key(name), "must be at most 100")
        return value

    def text(self, name: str, default: Any = ...) -> str:
        value = self.raw(name, default)
        if not isinstance(value, str) or not value:
            raise ConfigError(self.key(name), f"must be a non-empty string, got {value!r}")
        return value

    def flag(self, name: str, default: Any = ...) -> bool:
        value = self.raw(name, default)
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
            return value.lower() in ("true", "1")
        if not isinstance(value, bool):
            raise ConfigError(self.key(name), f"must be true or false, got {value!r}")
        return value

    def texts(self, name: str, default: Any = ...) -> tuple[str, ...]:
        value = self.raw(name, default)
        if isinstance(value, str):
            value = split_list(value)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(self.key(name), "must be a list of strings")
        return tuple(value)

    def section(self, name: str) -> Section:
        return Section(self.raw(name), self.key(name))

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.seen)
        if unknown:
            raise ConfigError(self.key(str(unknown[0])), "unknown setting")

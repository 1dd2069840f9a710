"""A service's side of the Redis registry: register and deregister as the README tells services
to (redis-py and the documented script), and bounded polling for what a gateway then does."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import redis

from api_gateway.upstream.registry import REGISTER

PREFIX = "gateway:registry:"
POLL_S = 0.05
T = TypeVar("T")


class ServiceRegistration:
    """Registers instances of services in one Redis, like a service's heartbeat would."""

    def __init__(self, redis_url: str, prefix: str = PREFIX) -> None:
        self.client = redis.Redis.from_url(redis_url, socket_timeout=2)
        self.prefix = prefix

    def key(self, service: str) -> str:
        return f"{self.prefix}{{{service}}}"

    def register(self, service: str, url: str, ttl_ms: int = 30_000) -> None:
        self.client.eval(REGISTER.source, 1, self.key(service), url, ttl_ms)

    def deregister(self, service: str, url: str) -> None:
        self.client.zrem(self.key(service), url)

    def close(self) -> None:
        self.client.close()


def wait_for(probe: Callable[[], T], done: Callable[[T], bool], timeout_s: float = 5.0) -> T:
    """Call ``probe`` until ``done`` says yes about its result; the last result either way."""
    deadline = time.monotonic() + timeout_s
    result = probe()
    while not done(result) and time.monotonic() < deadline:
        time.sleep(POLL_S)
        result = probe()
    return result

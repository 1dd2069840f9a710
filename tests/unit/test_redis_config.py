"""The redis section: url, cluster, timeout_ms; REDIS_URL and REDIS_CLUSTER; which store opens."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from api_gateway.config.loader import load
from api_gateway.config.settings import ConfigError, GatewayConfig
from api_gateway.stores.cluster import ClusterStore, open_shared
from api_gateway.stores.redis import RedisStore

ENV = {"JWT_SECRET": "a" * 32}


def config(env: dict[str, str] | None = None) -> GatewayConfig:
    return load(None, {**ENV, **(env or {})})


def config_file(tmp_path: Path, redis: dict[str, object]) -> GatewayConfig:
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump({"redis": redis}))
    return load(str(path), ENV)


def test_defaults_bound_every_call_at_50_ms_on_one_server() -> None:
    seed = config()
    assert (seed.redis_url, seed.redis_cluster, seed.redis_timeout_ms) == (None, False, 50)


def test_a_cluster_by_setting_or_by_url(tmp_path: Path) -> None:
    by_env = config({"REDIS_URL": "redis://10.0.0.1:7000", "REDIS_CLUSTER": "true"})
    assert by_env.redis_cluster
    assert isinstance(open_shared(by_env), ClusterStore)
    by_url = config({"REDIS_URL": "redis+cluster://10.0.0.1:7000,10.0.0.2:7000"})
    assert isinstance(open_shared(by_url), ClusterStore)
    assert isinstance(open_shared(config({"REDIS_URL": "redis://10.0.0.1"})), RedisStore)
    assert config_file(tmp_path, {"timeout_ms": 200}).redis_timeout_ms == 200


@pytest.mark.parametrize(
    ("redis", "key"),
    [
        ({"url": "redis+cluster://h:1/2"}, "redis.url"),
        ({"url": "unix:///tmp/r.sock", "cluster": True}, "redis.url"),
        ({"timeout_ms": 0}, "redis.timeout_ms"),
        ({"cluster": "maybe"}, "redis.cluster"),
    ],
)
def test_bad_redis_settings_are_named(tmp_path: Path, redis: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as error:
        config_file(tmp_path, redis)
    assert error.value.key == key

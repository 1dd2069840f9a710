"""Redis Cluster arithmetic: key slots with hash tags, redirect replies, cluster URLs."""

from __future__ import annotations

import pytest

from api_gateway.resp.cluster import slot_table
from api_gateway.resp.protocol import Reply
from api_gateway.stores.redis import rate_limit_tag
from api_gateway.stores.slots import ClusterTarget, crc16, key_slot, parse_redirect
from api_gateway.upstream.registry import registry_key


def test_crc16_is_xmodem() -> None:
    assert crc16(b"123456789") == 0x31C3
    assert crc16(b"") == 0


@pytest.mark.parametrize(
    ("key", "slot"),
    [("foo", 12182), ("bar", 5061), ("123456789", 0x31C3 % 16384), ("", 0)],
)
def test_key_slots_match_redis(key: str, slot: int) -> None:
    assert key_slot(key) == slot  # values from CLUSTER KEYSLOT


def test_keys_sharing_a_hash_tag_share_a_slot() -> None:
    assert key_slot("{user1000}.following") == key_slot("{user1000}.followers")
    assert key_slot("{user1000}.following") == key_slot("user1000")
    assert key_slot("foo{}{bar}") == crc16(b"foo{}{bar}") % 16384  # an empty tag does not count
    assert key_slot("foo{{bar}}zap") == key_slot("{bar")  # the tag ends at the first }
    assert key_slot("foo{bar}{zap}") == key_slot("bar")


@pytest.mark.parametrize("key", ["global:ip:10.0.0.1", "a}b", "}", "%7D", "", "{x}", "ü{"])
def test_a_limits_two_redis_keys_always_share_one_slot(key: str) -> None:
    tag = rate_limit_tag(key)
    assert key_slot(b"gw:rl:{%s}" % tag) == key_slot(b"gw:rl:block:{%s}" % tag)


def test_escaping_keeps_limit_keys_apart() -> None:
    keys = ["a}b", "a%7Db", "a%b", "a%25b", "", "%"]
    assert len({rate_limit_tag(k) for k in keys}) == len(keys)


def test_registry_keys_are_tagged_by_service() -> None:
    assert key_slot(registry_key("gateway:registry:", "ticket")) == key_slot("ticket")


def test_redirect_replies() -> None:
    moved = parse_redirect("MOVED 3999 127.0.0.1:6381")
    assert moved is not None and (moved.ask, moved.slot, moved.address) == (
        False,
        3999,
        "127.0.0.1:6381",
    )
    ask = parse_redirect("ASK 12 10.0.0.2:7000")
    assert ask is not None and (ask.ask, ask.slot, ask.address) == (True, 12, "10.0.0.2:7000")
    ipv6 = parse_redirect("MOVED 1 ::1:7000")
    assert ipv6 is not None and ipv6.address == "[::1]:7000"
    for other in ("ERR unknown command", "MOVED x 1.2.3.4:5", "MOVED 1", "ASK 1 host", ""):
        assert parse_redirect(other) is None


def test_cluster_urls() -> None:
    target = ClusterTarget.parse("redis+cluster://:s3cret@10.0.0.1:7000,10.0.0.2,[::1]:7002")
    assert target.seeds == ("10.0.0.1:7000", "10.0.0.2:6379", "[::1]:7002")
    assert target.node_url("10.0.0.3:7001") == "redis://:s3cret@10.0.0.3:7001"
    assert ClusterTarget.parse("rediss+cluster://h:1/0").node_url("h:1") == "rediss://h:1"
    assert ClusterTarget.parse("redis://h:1").seeds == ("h:1",)  # with redis.cluster: true
    for bad in ("redis+cluster://h:1/3", "unix:///tmp/r.sock", "redis+cluster://", "h:1"):
        with pytest.raises(ValueError):
            ClusterTarget.parse(bad)


def test_slot_table_from_cluster_slots() -> None:
    reply: Reply = [
        [0, 5460, [b"127.0.0.1", 7000, b"id1"]],
        [5461, 10922, [b"", 7001, b"id2"], [b"127.0.0.1", 7004, b"id5"]],
        [10923, 16383, [b"::1", 7002, b"id3"]],
    ]
    owners = slot_table(reply, "10.0.0.9:7001")
    assert (owners[0], owners[5460], owners[5461], owners[16383]) == (
        "127.0.0.1:7000",
        "127.0.0.1:7000",
        "10.0.0.9:7001",
        "[::1]:7002",
    )

"""The ``api-gateway apikey`` actions: create, list, revoke, rotate.

A new key is printed once, alone on stdout (so ``KEY=$(api-gateway apikey create ...)`` works);
what was done, with the key's id, goes to stderr. Nothing prints a key's hash, and ``list``
never shows a key: it cannot, only the hash is stored.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

from api_gateway.apikeys.format import ID_SHAPE, digest, new_id, new_key
from api_gateway.apikeys.records import MAX_NAME_LENGTH, TENANT_SHAPE, KeyRecord, when
from api_gateway.apikeys.store import KeyStore, open_key_store
from api_gateway.config.auth import parse_rate
from api_gateway.config.settings import GatewayConfig
from api_gateway.stores import StoreUnavailable
from api_gateway.tokens import parse_ttl

Clock = Callable[[], float]
LIST_COLUMNS = (
    "ID",
    "TENANT",
    "NAME",
    "ROUTES",
    "RATE",
    "CREATED",
    "EXPIRES",
    "LAST USED",
    "STATUS",
)


class CommandError(Exception):
    """The command cannot do what was asked; the message says why, on one line."""


def run(config: GatewayConfig, args: argparse.Namespace) -> int:
    """Run one action against the configured store; the exit status."""

    async def act() -> None:
        store = open_key_store(config, writer=True)
        try:
            await ACTIONS[args.action](store, config, args, time.time)
        finally:
            await store.close()

    try:
        asyncio.run(act())
    except (CommandError, StoreUnavailable) as exc:
        print(f"api-gateway: {exc}", file=sys.stderr)
        return 1
    return 0


async def create(
    store: KeyStore, config: GatewayConfig, args: argparse.Namespace, now: Clock
) -> None:
    if not TENANT_SHAPE.fullmatch(args.tenant):
        raise CommandError("--tenant must be 1-128 letters, digits or _.:@-")
    name = args.name.strip()
    if not name or len(name) > MAX_NAME_LENGTH or not name.isprintable():
        raise CommandError(f"--name must be 1-{MAX_NAME_LENGTH} printable characters")
    routes = key_routes(config, args.routes or "")
    rate = ""
    if args.rate_limit:
        try:
            parse_rate(args.rate_limit)
        except ValueError as exc:
            raise CommandError(f"--rate-limit: {exc}") from None
        rate = args.rate_limit.strip()
    created = now()
    expires = created + duration("--expires", args.expires) if args.expires else 0.0
    key_id = await unused_id(store)
    key = new_key(key_id)
    record = KeyRecord(key_id, args.tenant, name, routes, rate, created, expires)
    await store.put(replace(record, hash=digest(pepper(config), key.encode())))
    print(key)
    print(
        f"created API key {key_id} for tenant {args.tenant}; the key above is not shown again",
        file=sys.stderr,
    )


async def list_keys(
    store: KeyStore, config: GatewayConfig, args: argparse.Namespace, now: Clock
) -> None:
    default = config.api_keys.default_rate_limit
    rows = [LIST_COLUMNS]
    for r in await store.records():
        rows.append((
            r.id, r.tenant, r.name, ",".join(r.routes) or "*", r.rate or f"{default} (default)",
            when(r.created_at), when(r.expires_at), when(r.last_used), r.status(now()),
        ))  # fmt: skip
    print_table(rows)


async def revoke(
    store: KeyStore, config: GatewayConfig, args: argparse.Namespace, now: Clock
) -> None:
    record = await existing(store, args.id)
    if record.revoked_at:
        print(
            f"API key {record.id} was already revoked at {when(record.revoked_at)}", file=sys.stderr
        )
        return
    await store.put(replace(record, revoked_at=now()))
    print(
        f"revoked API key {record.id}; every gateway refuses it within "
        f"{config.api_keys.recheck_ms / 1000:g} s",
        file=sys.stderr,
    )


async def rotate(
    store: KeyStore, config: GatewayConfig, args: argparse.Namespace, now: Clock
) -> None:
    record = await existing(store, args.id)
    moment = now()
    if record.status(moment) != "active":
        raise CommandError(f"API key {record.id} is {record.status(moment)}: create a new one")
    grace = duration("--grace", args.grace, allow_zero=True)
    key = new_key(record.id)
    await store.put(record.rotated(digest(pepper(config), key.encode()), moment, grace))
    print(key)
    print(
        f"rotated API key {record.id}; the previous key works until {when(moment + grace)}",
        file=sys.stderr,
    )


ACTIONS = {"create": create, "list": list_keys, "revoke": revoke, "rotate": rotate}


def key_routes(config: GatewayConfig, text: str) -> tuple[str, ...]:
    """``--routes``: configured routes that accept keys, by their canonical prefix."""
    accepting = {r.prefix: r for r in config.routes if "api_key" in r.auth}
    routes = []
    for entry in [part.strip() for part in text.split(",")]:
        if not entry:
            continue
        prefix = "/" + entry.strip("/").removeprefix("api/v1/")
        route = accepting.get(prefix)
        if route is None:
            raise CommandError(
                f"--routes: {entry} is not a route that accepts API keys "
                f"(those that do: {', '.join(sorted(accepting)) or 'none'})"
            )
        routes.append(route.alias_of or route.prefix)
    return tuple(dict.fromkeys(routes))


def duration(option: str, text: str, allow_zero: bool = False) -> float:
    try:
        seconds = parse_ttl(text)
    except ValueError as exc:
        raise CommandError(f"{option}: {exc}") from None
    if seconds <= 0 and not allow_zero:
        raise CommandError(f"{option} must be longer than 0 s")
    return float(seconds)


def pepper(config: GatewayConfig) -> bytes:
    return config.api_keys.pepper.encode()


async def unused_id(store: KeyStore) -> str:
    for _ in range(5):  # 62**12 ids: a collision is astronomically rare, never silent
        key_id = new_id()
        if await store.get(key_id) is None:
            return key_id
    raise CommandError("could not find an unused key id")


async def existing(store: KeyStore, key_id: str) -> KeyRecord:
    record = await store.get(key_id) if ID_SHAPE.fullmatch(key_id) else None
    if record is None:
        raise CommandError(f"no API key has the id {key_id!r} (see: api-gateway apikey list)")
    return record


def print_table(rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )

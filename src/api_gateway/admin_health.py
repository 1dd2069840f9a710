"""The admin API's /health: every worker's state document merged into the gateway's.

Pure: state documents in (``operations.Operations.state``), one document out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from api_gateway.observability.route_window import figures, merge
from api_gateway.operations import parse_deltas

# The most alarming state wins the merged view.
BREAKER_ORDER = {"OPEN": 2, "HALF_OPEN": 1, "CLOSED": 0}


def merged_health(
    states: Sequence[Mapping[str, Any]],
    version: str,
    generation: Mapping[str, object],
    readiness: Mapping[str, object] | None = None,
) -> dict[str, object]:
    workers = [
        {key: state.get(key) for key in ("pid", "slot", "uptime", "rss", "in_flight", "offset")}
        for state in states
    ]
    workers.sort(key=lambda w: str(w.get("slot")))
    document: dict[str, object] = {
        "status": "healthy",
        "uptime": max((_number(s.get("uptime")) for s in states), default=0.0),
        "version": version,
        "worker_count": len(states),
        "workers": workers,
        "log_level": states[0].get("log_level") if states else None,
        "services": merged_services(states),
        "store": merged_store(states),
        "config": dict(generation),
        "routes": merged_routes(states),
    }
    if readiness is not None:
        document["readiness"] = dict(readiness)
    return document


def merged_services(states: Sequence[Mapping[str, Any]]) -> dict[str, object]:
    services: dict[str, dict[str, Any]] = {}
    for state in states:
        pid = str(state.get("pid"))
        for name, instances in _mapping(state.get("instances")).items():
            entry = services.setdefault(name, {"breaker": {"workers": {}}, "instances": {}})
            for instance in instances if isinstance(instances, list) else []:
                if not isinstance(instance, dict):
                    continue
                merged = entry["instances"].setdefault(
                    instance.get("instance"),
                    {"instance": instance.get("instance"), "healthy": True, "ejected": False,
                     "operator_ejected": False, "in_flight": 0, "ejections": 0, "workers": 0},
                )  # fmt: skip
                merged["healthy"] = merged["healthy"] and bool(instance.get("healthy"))
                merged["ejected"] = merged["ejected"] or bool(instance.get("ejected"))
                merged["operator_ejected"] = merged["operator_ejected"] or bool(
                    instance.get("operator_ejected")
                )
                merged["in_flight"] += int(_number(instance.get("in_flight")))
                merged["ejections"] += int(_number(instance.get("ejections")))
                merged["workers"] += 1
        for label, breaker in _mapping(state.get("breakers")).items():
            name = label.removesuffix("-service")
            entry = services.setdefault(name, {"breaker": {"workers": {}}, "instances": {}})
            entry["label"] = label
            if isinstance(breaker, dict):
                merged_breaker = entry["breaker"]
                merged_breaker["workers"][pid] = breaker.get("state")
                events = merged_breaker.setdefault("events", {})
                for event, count in _mapping(breaker.get("events")).items():
                    events[event] = events.get(event, 0) + int(_number(count))
    for entry in services.values():
        states_seen = [s for s in entry["breaker"]["workers"].values() if isinstance(s, str)]
        entry["breaker"]["state"] = max(
            states_seen, key=lambda s: BREAKER_ORDER.get(s, 0), default="CLOSED"
        )
        entry["instances"] = list(entry["instances"].values())
    return dict(sorted(services.items()))


def merged_store(states: Sequence[Mapping[str, Any]]) -> dict[str, object]:
    stores = [_mapping(s.get("store")) for s in states]
    if not stores:
        return {}
    degraded = [s for s in stores if s.get("degraded")]
    merged = dict(stores[0])
    merged["degraded"] = bool(degraded)
    merged["degraded_workers"] = len(degraded)
    if degraded:
        merged["reason"] = degraded[0].get("reason", "")
    return merged


def merged_routes(states: Sequence[Mapping[str, Any]]) -> dict[str, object]:
    bounds: list[float] = []
    for state in states:
        found = state.get("bounds_ms")
        if isinstance(found, list) and len(found) > len(bounds):
            bounds = [float(b) for b in found]
    merged = merge(parse_deltas(state.get("routes")) for state in states)
    return {
        route: figures(rate, delta, bounds).document()
        for route, (rate, delta) in sorted(merged.items())
    }


def _mapping(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _number(value: object) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0

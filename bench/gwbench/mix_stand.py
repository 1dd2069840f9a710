"""The production mix's servers: upstream nginx, nginx proxy_pass, a private Redis, the OTLP sink
and the gateways under test, each started once, pinned, checked, and stopped by PID at the end."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path

import psutil

from gwbench import mix_traffic as traffic
from gwbench.load import REPORT_LUA
from gwbench.procs import Processes, Service
from gwbench.redis_server import redis_answers, start_redis
from gwbench.servers import (
    Layout,
    ServerFailed,
    free_ports,
    http_get,
    proxy_conf,
    require_ready,
    start_gateway,
    start_nginx,
    upstream_conf,
)

BENCH = Path(__file__).resolve().parents[1]
GATEWAY_READY_S = 30.0
# X-Forwarded-For from the load generator (127.0.0.1) is believed: every user has its own address.
TRUSTED = {"TRUSTED_PROXIES": "127.0.0.1/32"}


class Stand:
    def __init__(self, work: Path, repo: Path, pin: bool, redis_url: str | None) -> None:
        proxy, load = ("0", "1") if pin else (None, None)
        self.layout = Layout(work, repo, proxy, load)
        self.procs = Processes()
        self.servers: dict[str, Service] = {}
        self.failures: dict[str, str] = {}
        self.interpreted: list[str] = []  # gateways that found no up-to-date compiled build
        self.redis_url = redis_url
        self.layout.prepare()
        self.mix_dir = work / "mix-traffic"
        self.mix_dir.mkdir(parents=True, exist_ok=True)
        self.lua = self.mix_dir / "mix.lua"
        self.lua.write_text((BENCH / "mix.lua").read_text() + REPORT_LUA)
        self.variants = traffic.write_variants(self.mix_dir / "variants.lua")

    def start_upstreams(self, nginx: str) -> None:
        """The upstream nginx (core 1) and the reference nginx proxy_pass (core 0)."""
        layout = self.layout
        up_port, proxy_port = free_ports(2)
        conf = upstream_conf(layout, up_port)
        self.servers["upstream"] = start_nginx(
            self.procs, layout, nginx, "upstream", conf, up_port, layout.load_cpus
        )
        conf = proxy_conf(layout, proxy_port, up_port, up_port)
        self.servers["nginx"] = start_nginx(
            self.procs, layout, nginx, "proxy", conf, proxy_port, layout.proxy_cpus
        )
        self.check("upstream", cache_expected=False)
        self.check("nginx", cache_expected=False)

    def start_redis(self) -> str | None:
        if self.redis_url is None:
            service, self.redis_url = start_redis(self.procs, self.layout)
            if service is not None:
                self.servers["redis"] = service
        return self.redis_url if redis_answers(self.redis_url) else None

    def start_sink(self) -> Service:
        port = free_ports(1)[0]
        argv = [sys.executable, str(Path(__file__).with_name("otlp_sink.py")), "--port", str(port)]
        layout = self.layout
        sink = self.procs.start(
            "otlp-sink",
            argv,
            log_path=layout.logs / "otlp-sink.log",
            port=port,
            cpus=layout.load_cpus,
        )
        require_ready(sink, "/stats", timeout=10)
        self.servers["otlp-sink"] = sink
        return sink

    def start_gateway(
        self, name: str, extra: Mapping[str, str], redis_url: str | None = None
    ) -> Service | None:
        upstream = self.servers["upstream"].port
        try:
            service = start_gateway(
                self.procs,
                self.layout,
                name,
                workers=1,
                upstream_port=upstream,
                files_port=upstream,
                redis_url=redis_url,
                cpus=self.layout.proxy_cpus,
                extra_env={**TRUSTED, **extra},
            )
        except OSError as exc:
            self.failures[name] = f"cannot start api-gateway: {exc}"
            return None
        self.servers[name] = service
        return service

    def await_gateways(self, names: list[str]) -> None:
        """Ready, and every request kind answers as the benchmark expects; else the case fails."""
        for name in names:
            service = self.servers.get(name)
            if service is None:
                continue
            try:
                require_ready(service, "/live", GATEWAY_READY_S)
                self.check(name, cache_expected=True)
            except ServerFailed as exc:
                self.failures[name] = str(exc)
                self.procs.stop(self.servers.pop(name))
            else:
                service.snapshot_tree()  # after the first requests: workers have forked
                if "running interpreted" in service.log_tail(64 * 1024):
                    self.interpreted.append(name)

    def check(self, name: str, cache_expected: bool) -> None:
        problems = traffic.check_kinds(self.servers[name].port, 0, cache_expected)
        if problems:
            raise ServerFailed(f"{name}: " + "; ".join(problems))

    def load_side(self, target: str) -> list[psutil.Process]:
        """What runs on the load side's core for this target: the upstream, and the private
        Redis or the OTLP sink when the target uses them."""
        found = list(self.servers["upstream"].tree)
        for backing, used in (("redis", "redis" in target), ("otlp-sink", "trace" in target)):
            if used and backing in self.servers:
                found += self.servers[backing].tree
        return found

    def notes(self) -> list[str]:
        found = []
        if self.interpreted:
            found.append(
                f"**Interpreted**: {', '.join(self.interpreted)} ran without an up-to-date "
                "compiled build (`make compiled`): their CPU figures are not the gateway's."
            )
        sink = self.servers.get("otlp-sink")
        if sink is None:
            return found
        try:
            status, body = http_get(sink.port, "/stats")
            stats = json.loads(body) if status == 200 else {}
        except (OSError, ValueError):
            stats = {}
        return [
            *found,
            f"OTLP sink received {stats.get('exports', '?')} exports, "
            f"{stats.get('bytes', 0) / 1048576:.1f} MiB of spans in all (warm-ups included).",
        ]

"""The servers around and under test: nginx upstream, nginx reference proxy, origin, gateway.

Every server listens on 127.0.0.1 on a free port and writes its logs under ``bench/.work/``.
"""

from __future__ import annotations

import http.client
import os
import socket
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import jwt

from gwbench.procs import Processes, Service, free_port, wait_until

SMALL_BODY = '{"id":"bench","status":"ok","price":4200,"currency":"USD","seats":["A1","A2"]}'
BIG_BODY_BYTES = 16 * 1024
JWT_SECRET = "bench-secret-bench-secret-bench-secret!!"
TICKET_PATH = "/api/v1/tickets/bench"
BIG_PATH = "/api/v1/tickets/big"  # the upstream answers paths ending in /big with 16 KiB
UPLOAD_PATH = "/api/v1/files/upload"
DOWNLOAD_PREFIX = "/api/v1/files/download/"  # + size in bytes
SERVICES = (
    "auth",
    "venue",
    "event",
    "ticket",
    "payment",
    "marketplace",
    "analytics",
    "notification",
    "integration",
    "compliance",
    "queue",
    "search",
    "file",
    "monitoring",
    "blockchain",
    "order",
    "minting",
    "transfer",
    "scanning",
)


@dataclass(frozen=True)
class Layout:
    """Where generated files go, and the pinning plan."""

    work: Path
    repo: Path
    proxy_cpus: str | None = "0"
    load_cpus: str | None = "1"

    @property
    def logs(self) -> Path:
        return self.work / "logs"

    def prepare(self) -> None:
        for directory in (self.work, self.logs, self.work / "www", self.work / "nginx-temp"):
            directory.mkdir(parents=True, exist_ok=True)
        for old in self.logs.glob("*.log"):  # the logs describe the latest run only
            old.unlink()
        big = self.work / "www" / "big.json"
        filler = "x" * (BIG_BODY_BYTES - len('{"data":""}'))
        big.write_text('{"data":"' + filler + '"}')


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def mint_token(sub: str = "bench-user", tenant: str = "bench-tenant", ttl_s: int = 3600) -> str:
    claims = {
        "sub": sub,
        "tenant_id": tenant,
        "role": "user",
        "iss": "tickettoken-api",
        "exp": int(time.time()) + ttl_s,
    }
    return jwt.encode(claims, JWT_SECRET, algorithm="HS256")


def http_get(
    port: int, path: str, headers: dict[str, str] | None = None, timeout: float = 2.0
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def answers(port: int, path: str) -> bool:
    try:
        return http_get(port, path, timeout=0.5)[0] == 200
    except OSError:
        return False


def nginx_prelude(layout: Layout, name: str) -> str:
    temp = layout.work / "nginx-temp" / name
    temp.mkdir(parents=True, exist_ok=True)
    user = "user root;\n" if os.geteuid() == 0 else ""
    temps = "\n".join(
        f"    {kind}_temp_path {temp / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""{user}worker_processes 1;
daemon off;
master_process on;
pid {layout.work / (name + ".pid")};
error_log {layout.logs / (name + ".error.log")} warn;
worker_rlimit_nofile 65536;
events {{ worker_connections 16384; multi_accept on; }}
http {{
    access_log off;
{temps}
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    sendfile on;
    tcp_nopush on;
    open_file_cache max=16;
"""


def upstream_conf(layout: Layout, port: int) -> str:
    return (
        nginx_prelude(layout, "upstream")
        + f"""    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            default_type application/json;
            return 200 '{SMALL_BODY}';
        }}
        location /api/v1/events/ {{
            # the catalogue: shareable, so the gateway's response cache keeps it (mix bench)
            default_type application/json;
            add_header Cache-Control "public, max-age=300";
            return 200 '{SMALL_BODY}';
        }}
        location ~ /big$ {{
            default_type application/json;
            root {layout.work / "www"};
            try_files /big.json =404;
        }}
    }}
}}
"""
    )


def proxy_conf(layout: Layout, port: int, upstream_port: int, files_port: int) -> str:
    return (
        nginx_prelude(layout, "proxy")
        + f"""    upstream app {{
        server 127.0.0.1:{upstream_port};
        keepalive 64;
        keepalive_requests 100000000;
    }}
    upstream files {{
        server 127.0.0.1:{files_port};
        keepalive 8;
    }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
        location /api/v1/files/ {{
            proxy_pass http://files;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            client_max_body_size 0;
            proxy_request_buffering off;
            proxy_max_temp_file_size 0;
        }}
    }}
}}
"""
    )


def start_nginx(
    procs: Processes, layout: Layout, nginx: str, name: str, conf: str, port: int, cpus: str | None
) -> Service:
    path = layout.work / f"{name}.nginx.conf"
    path.write_text(conf)
    argv = [
        nginx,
        "-p",
        str(layout.work),
        "-e",
        str(layout.logs / f"{name}.error.log"),
        "-c",
        str(path),
    ]
    service = procs.start(name, argv, log_path=layout.logs / f"{name}.log", port=port, cpus=cpus)
    require_ready(service, "/", timeout=10)
    return service


def start_origin(procs: Processes, layout: Layout) -> Service:
    """The file service stand-in: discards uploads, streams zeros for downloads."""
    port = free_port()
    script = Path(__file__).with_name("origin.py")
    argv = [sys.executable, str(script), "--port", str(port)]
    service = procs.start(
        "origin", argv, log_path=layout.logs / "origin.log", port=port, cpus=layout.load_cpus
    )
    require_ready(service, DOWNLOAD_PREFIX + "1", timeout=10)
    return service


def gateway_env(
    upstream_port: int,
    files_port: int,
    redis_url: str | None,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.endswith("_SERVICE_URL")}
    env.pop("REDIS_URL", None)
    env.update(
        {
            "JWT_SECRET": JWT_SECRET,
            "RATE_LIMIT_MAX": "100000000",
            "RATE_LIMIT_USER_MAX": "100000000",
            "RATE_LIMIT_WINDOW_MS": "60000",
            "LOG_LEVEL": "info",
            "ADMIN_PORT": "0",  # ephemeral: gateways started together never collide
        }
    )
    for service in SERVICES:  # every service points at the fast upstream; none is unresolvable
        env[f"{service.upper()}_SERVICE_URL"] = f"http://127.0.0.1:{upstream_port}"
    env["FILE_SERVICE_URL"] = f"http://127.0.0.1:{files_port}"
    if redis_url:
        env["REDIS_URL"] = redis_url
    env.update(extra or {})
    return env


def gateway_command(layout: Layout) -> str:
    return str(layout.repo / ".venv" / "bin" / "api-gateway")


def start_gateway(
    procs: Processes,
    layout: Layout,
    name: str,
    *,
    workers: int,
    upstream_port: int,
    files_port: int,
    redis_url: str | None = None,
    cpus: str | None = None,
    extra_env: Mapping[str, str] | None = None,
) -> Service:
    port = free_port()
    argv = [gateway_command(layout), "serve", "--host", "127.0.0.1", "--port", str(port)]
    if workers != 1:
        argv += ["--workers", str(workers)]
    env = gateway_env(upstream_port, files_port, redis_url, extra_env)
    return procs.start(
        name, argv, log_path=layout.logs / f"{name}.log", port=port, cpus=cpus, env=env
    )


def require_ready(service: Service, path: str, timeout: float) -> None:
    """Wait until ``GET path`` answers 200; raise with the log's tail when it never does."""
    ready = wait_until(lambda: not service.alive() or answers(service.port, path), timeout)
    if ready and service.alive():
        service.snapshot_tree()
        return
    state = f"exited with {service.popen.returncode}" if not service.alive() else "not ready"
    raise ServerFailed(
        f"{service.name} {state} after {timeout:.0f} s; log tail:\n{service.log_tail()}"
    )


class ServerFailed(RuntimeError):
    """A server under test did not start or answer as expected."""

"""Finds (or apt-get installs) nginx, wrk, curl and taskset; reports versions and the machine."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

# executable -> Debian package that provides it
PACKAGES = {"nginx": "nginx", "wrk": "wrk", "curl": "curl", "taskset": "util-linux"}
SBIN_DIRS = ("/usr/sbin", "/sbin", "/usr/local/sbin")
POLICY_RC_D = Path("/usr/sbin/policy-rc.d")


@dataclass(frozen=True)
class Tools:
    nginx: str
    wrk: str
    curl: str
    taskset: str | None


def which(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for directory in SBIN_DIRS:  # nginx lives in /usr/sbin, often not on a user's PATH
        candidate = Path(directory) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def ensure_tools() -> Tools:
    """Return the tool paths, installing missing ones from the system packages first."""
    missing = [name for name in PACKAGES if which(name) is None]
    if missing:
        apt_install(sorted({PACKAGES[name] for name in missing}))
    paths = {name: which(name) for name in PACKAGES}
    absent = [name for name in ("nginx", "wrk", "curl") if paths[name] is None]
    if absent:
        raise SystemExit(f"bench: could not find or install {', '.join(absent)}")
    return Tools(str(paths["nginx"]), str(paths["wrk"]), str(paths["curl"]), paths["taskset"])


def apt_install(packages: list[str]) -> None:
    """``apt-get install -y`` without prompts and without starting the services it installs."""
    prefix: list[str] = []
    if os.geteuid() != 0:
        if shutil.which("sudo") is None:
            raise SystemExit(f"bench: need root to install {packages}: apt-get install {packages}")
        prefix = ["sudo", "-n", "--preserve-env=DEBIAN_FRONTEND"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = [
        *prefix,
        "apt-get",
        "install",
        "-y",
        "-q",
        "--no-install-recommends",
        "-o",
        "Dpkg::Options::=--force-confdef",
        "-o",
        "Dpkg::Options::=--force-confold",
        *packages,
    ]
    print(f"bench: installing {' '.join(packages)} with apt-get", flush=True)
    created_policy = block_service_start(prefix)
    try:
        if subprocess.run(install, env=env, check=False).returncode != 0:
            subprocess.run([*prefix, "apt-get", "update", "-q"], env=env, check=True)
            subprocess.run(install, env=env, check=True)
    finally:
        if created_policy:
            subprocess.run([*prefix, "rm", "-f", str(POLICY_RC_D)], check=False)


def block_service_start(prefix: list[str]) -> bool:
    """Install a temporary policy-rc.d so the nginx package does not start a system nginx."""
    if POLICY_RC_D.exists():
        return False
    script = "#!/bin/sh\nexit 101\n"
    command = [*prefix, "sh", "-c", f"printf '{script}' > {POLICY_RC_D} && chmod +x {POLICY_RC_D}"]
    return subprocess.run(command, check=False).returncode == 0


def first_line(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    text = (done.stdout + done.stderr).strip()
    return text.splitlines()[0] if text else "unknown"


def package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def git_revision(repo: Path) -> str:
    sha = first_line(["git", "-C", str(repo), "rev-parse", "--short=12", "HEAD"])
    dirty = subprocess.run(
        ["git", "-C", str(repo), "status", "--porcelain", "--", "src"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return f"{sha} (src has uncommitted changes)" if dirty else sha


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def describe(tools: Tools, repo: Path) -> dict[str, str]:
    """Versions and machine facts for the report header."""
    return {
        "python": sys.version.split()[0],
        "uvloop": package_version("uvloop"),
        "httptools": package_version("httptools"),
        "api-gateway": f"{package_version('api-gateway')} @ {git_revision(repo)}",
        "nginx": first_line([tools.nginx, "-v"]).replace("nginx version: ", ""),
        "wrk": first_line([tools.wrk, "--version"]).split(" Copyright")[0],
        "curl": first_line([tools.curl, "--version"]).split(" (")[0],
        "cpu": cpu_model(),
        "cores": str(os.cpu_count()),
        "kernel": platform.release(),
    }

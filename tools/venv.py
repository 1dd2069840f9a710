"""Make sure ``.venv`` is a working virtual environment with this checkout installed.

    python3 tools/venv.py .venv        # `make` runs it before anything uses .venv

A first run that failed or was interrupted, a ``.venv`` made with another Python, or one where
the package was never installed would break every later ``make``: this finds such a ``.venv``
and rebuilds or completes it, saying in one line what it does. ``.venv/.installed`` records what
was installed (the hash of pyproject.toml and constraints.txt), written only once ``pip`` has
succeeded, so an install that did not finish is done again.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PINNED = ("pyproject.toml", "constraints.txt")
PROBE = (
    "import importlib.util, sys; spec = importlib.util.find_spec('api_gateway'); "
    "print('%d.%d' % sys.version_info[:2], spec.origin if spec else '')"
)
PYTHON_VERSION = ".".join(map(str, sys.version_info[:2]))
PROBE_TIMEOUT_S = 60
INSTALL_TIMEOUT_S = 1800


def pinned_digest() -> str:
    digest = hashlib.sha256()
    for name in PINNED:
        digest.update((REPO / name).read_bytes())
    return digest.hexdigest()


def run(command: list[str], timeout_s: float) -> subprocess.CompletedProcess[str]:
    # Without PYTHONPATH: `PYTHONPATH=src` would make a venv without the package look installed.
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    try:
        return subprocess.run(
            command, capture_output=True, text=True, timeout=timeout_s, check=False, env=env
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return subprocess.CompletedProcess(command, 1, "", str(exc))


def broken(venv: Path) -> str | None:
    """Why ``venv`` must be made again from scratch, or None if its Python and pip work."""
    python = venv / "bin" / "python"
    if not python.exists():
        return "it has no bin/python (an interrupted `python -m venv`, or a Python that is gone?)"
    probe = run([str(python), "-c", PROBE], PROBE_TIMEOUT_S)
    if probe.returncode != 0:
        return "its bin/python does not run (made with a Python that is gone?)"
    version, wanted = probe.stdout.split()[0], PYTHON_VERSION
    if version != wanted:
        return f"it was made with Python {version}, not {wanted}"
    if run([str(python), "-m", "pip", "--version"], PROBE_TIMEOUT_S).returncode != 0:
        return "its pip does not run (an interrupted `python -m venv`?)"
    return None


def incomplete(venv: Path, stamp: Path) -> str | None:
    """Why the package must be installed (again) into a working ``venv``, or None."""
    if not stamp.exists():
        return "the package was never installed completely"
    if stamp.read_text().strip() != pinned_digest():
        return "pyproject.toml or constraints.txt changed"
    probe = run([str(venv / "bin" / "python"), "-c", PROBE], PROBE_TIMEOUT_S)
    if probe.returncode != 0:
        return "its bin/python does not run"
    origin = probe.stdout.split()[1:]
    if origin != [str(REPO / "src" / "api_gateway" / "__init__.py")]:
        return "it does not have this checkout installed"
    if not (venv / "bin" / "api-gateway").exists():
        return "the api-gateway command is missing"
    return None


def main(argv: list[str]) -> int:
    venv = Path(argv[0]) if argv else REPO / ".venv"
    stamp = venv / ".installed"
    if not venv.exists():
        print(f"creating {venv} (Python {sys.version.split()[0]}) and installing the package")
    else:
        reason = incomplete(venv, stamp)
        if reason is None:
            return 0
        why_rebuild = broken(venv)
        if why_rebuild is None:
            print(f"installing the pinned dependencies into {venv}: {reason}")
        else:
            print(f"making {venv} again: {why_rebuild}")
            shutil.rmtree(venv)
    if not venv.exists():
        made = run([sys.executable, "-m", "venv", str(venv)], INSTALL_TIMEOUT_S)
        if made.returncode != 0:
            shutil.rmtree(venv, ignore_errors=True)
            sys.stderr.write(made.stdout + made.stderr)
            print(
                f"could not create {venv} with {sys.executable} -m venv (Debian: "
                f"apt-get install python3.{sys.version_info[1]}-venv)",
                file=sys.stderr,
            )
            return 1
    stamp.unlink(missing_ok=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    installed = subprocess.run(
        [*pip, "-c", str(REPO / "constraints.txt"), "-e", f"{REPO}[dev]"],
        timeout=INSTALL_TIMEOUT_S,
        check=False,
    )
    if installed.returncode != 0:
        print(f"pip could not install the package into {venv} (see above); `make` tries again")
        return 1
    stamp.write_text(pinned_digest() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""The set-up a new user runs: a missing prerequisite is named in one line with how to install
it, and a half-made ``.venv`` is found (``tools/venv.py``) and said why it is made again or
completed. The venvs here are built without pip (a second each); nothing is installed.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
COMMAND_TIMEOUT_S = 60


def venv_tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("venv_tool", REPO / "tools" / "venv.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def prerequisites(python: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", "-s", "prerequisites", f"PYTHON={python}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )


def script(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + text + "\n")
    path.chmod(0o755)
    return path


def test_a_missing_python_is_one_line_with_how_to_install_it() -> None:
    done = prerequisites("python3.11-not-installed-here")

    assert done.returncode != 0
    assert done.stdout.strip().splitlines() == [
        "python3.11-not-installed-here not found: install Python 3.11 (apt-get install python3.11"
        " python3.11-dev python3.11-venv), or make ... PYTHON=/path/to/python3.11"
    ]


def test_another_python_is_named_with_its_version(tmp_path: Path) -> None:
    other = script(tmp_path / "python3", 'case "$2" in *platform*) echo 3.12.1;; *) exit 1;; esac')

    done = prerequisites(str(other))

    assert done.returncode != 0
    (line,) = done.stdout.strip().splitlines()
    assert line.startswith(f"{other} is not Python 3.11 (it is 3.12.1): apt-get install python3.11")


def test_the_real_set_up_passes_the_check() -> None:
    done = prerequisites(sys.executable)

    assert done.returncode == 0, done.stdout + done.stderr


def test_a_venv_without_its_python_is_made_again(tmp_path: Path) -> None:
    (tmp_path / "venv" / "bin").mkdir(parents=True)

    assert "has no bin/python" in venv_tool().broken(tmp_path / "venv")


def test_a_venv_of_another_python_is_made_again(tmp_path: Path) -> None:
    script(tmp_path / "venv" / "bin" / "python", 'echo "3.12 "')

    reason = venv_tool().broken(tmp_path / "venv")

    wanted = f"{sys.version_info[0]}.{sys.version_info[1]}"
    assert reason == f"it was made with Python 3.12, not {wanted}"


def test_an_interrupted_venv_without_pip_is_made_again(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)

    assert venv_tool().broken(venv) == "its pip does not run (an interrupted `python -m venv`?)"


def test_a_venv_never_installed_or_installed_from_other_pins_is_completed(tmp_path: Path) -> None:
    tool = venv_tool()
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)

    never = tool.incomplete(venv, venv / ".installed")
    (venv / ".installed").write_text("0" * 64 + "\n")
    changed = tool.incomplete(venv, venv / ".installed")
    (venv / ".installed").write_text(tool.pinned_digest() + "\n")
    elsewhere = tool.incomplete(venv, venv / ".installed")

    assert never == "the package was never installed completely"
    assert changed == "pyproject.toml or constraints.txt changed"
    assert elsewhere == "it does not have this checkout installed"


@pytest.mark.skipif(
    not (REPO / ".venv" / ".installed").exists(), reason="runs where `make` made .venv"
)
def test_the_venv_make_made_is_complete() -> None:
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, str(REPO / "tools" / "venv.py"), str(REPO / ".venv")],
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        env=env,
        check=False,
    )

    assert done.returncode == 0 and done.stdout == "", done.stdout + done.stderr

"""The build backend: setuptools', with the request path compiled into the wheel.

``pyproject.toml`` names it (``backend-path = ["tools"]``), so ``pip install .``, ``pip wheel .``
and ``python -m build`` (``make dist``) build a wheel that carries the compiled request path:

- The wheel is built from a copy of the sources: ``tools/compile.py``'s ``compile_package`` (the
  same code ``make compiled`` runs) compiles the copy into ``api_gateway/_compiled/`` with its
  manifest of SHA-256 digests, so the installed package uses the compiled modules only if the
  installed sources match them. The checkout is left as it was.
- With the build in it the wheel is a platform wheel (``setup.py``: cp311, this platform).
- Without a C compiler or the Python headers (or with ``API_GATEWAY_COMPILE=0``) the wheel is
  pure Python: one warning line says what is missing and how to install it, and the wheel
  carries that line in ``_compiled/not-built.txt``, which the gateway repeats on stderr at
  start-up and in ``--version``.
- mypyc type-checks the sources against the packages they import and compiles to their types,
  so compiling asks the build environment for the runtime dependencies and mypy (pinned like the
  dev extra) as well; without a compiler none of them is fetched. ``PIP_CONSTRAINT`` pins what
  they pull in.

The sdist and the editable install (``pip install -e .``, what ``make`` uses; ``make compiled``
compiles in place) are setuptools' own.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import tomllib
from pathlib import Path

import compile as compile_tool  # tools/compile.py (backend-path)
from setuptools import build_meta

ConfigSettings = dict[str, str | list[str]] | None

get_requires_for_build_sdist = build_meta.get_requires_for_build_sdist
build_sdist = build_meta.build_sdist
get_requires_for_build_editable = build_meta.get_requires_for_build_editable
prepare_metadata_for_build_editable = build_meta.prepare_metadata_for_build_editable
build_editable = build_meta.build_editable
prepare_metadata_for_build_wheel = build_meta.prepare_metadata_for_build_wheel

# What a wheel needs to build, copied to a scratch directory (setuptools builds in its cwd).
PROJECT_FILES = ("pyproject.toml", "setup.py", "README.md")
NOT_COPIED = shutil.ignore_patterns(compile_tool.BUILD_DIR, "__pycache__", "*.egg-info")


def not_compiling_because() -> str | None:
    """Why this wheel will be pure Python (one line, with how to fix it), or None."""
    if os.environ.get("API_GATEWAY_COMPILE") == "0":
        return "API_GATEWAY_COMPILE=0 was set at build time: unset it"
    return compile_tool.missing_prerequisite()


def compile_requirements(root: Path) -> list[str]:
    """mypy as the dev extra pins it, its stubs, and every runtime dependency."""
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    typing = [
        requirement
        for requirement in project["optional-dependencies"]["dev"]
        if requirement.startswith(("mypy==", "types-"))
    ]
    return [*typing, *project["dependencies"]]


def get_requires_for_build_wheel(config_settings: ConfigSettings = None) -> list[str]:
    requires = list(build_meta.get_requires_for_build_wheel(config_settings))
    if not_compiling_because() is None:
        requires += compile_requirements(Path.cwd())
    return requires


def build_wheel(
    wheel_directory: str,
    config_settings: ConfigSettings = None,
    metadata_directory: str | None = None,
) -> str:
    root = Path.cwd()
    wheel_directory = os.path.abspath(wheel_directory)
    if metadata_directory is not None:
        metadata_directory = os.path.abspath(metadata_directory)
    missing = not_compiling_because()
    with tempfile.TemporaryDirectory(prefix="api-gateway-wheel-") as scratch:
        copy = Path(scratch) / "project"
        copy.mkdir()
        for name in PROJECT_FILES:
            shutil.copy2(root / name, copy / name)
        shutil.copytree(root / "src", copy / "src", ignore=NOT_COPIED)
        if missing is None:
            compile_tool.compile_package(copy)
        else:
            print(
                "api-gateway: WARNING: building a pure-Python wheel, which runs interpreted "
                f"(about 0.7x the compiled throughput): {missing}, then build again",
                file=sys.stderr,
                flush=True,
            )
            build = copy / compile_tool.PACKAGE_PATH / compile_tool.BUILD_DIR
            build.mkdir()
            (build / "not-built.txt").write_text(missing + "\n")
        os.chdir(copy)
        try:
            return build_meta.build_wheel(wheel_directory, config_settings, metadata_directory)
        finally:
            os.chdir(root)

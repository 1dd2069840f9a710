"""Compile the request path to C with mypyc, next to the sources it was built from.

    .venv/bin/python tools/compile.py          # `make compiled` runs it when a source changes
    python3 tools/compile.py --check           # is a C compiler there, and the Python headers?

Writes ``src/api_gateway/_compiled/``: one extension module per compiled module, mypyc's shared
runtime, and ``manifest.json`` with the SHA-256 of every source file of the package. At import,
``api_gateway.compiled`` loads these modules only if every source still has the recorded hash;
after any edit the gateway runs interpreted until the next build, so a stale build can never
shadow a change. The build backend (``tools/build_backend.py``: ``pip install .``, ``make
dist``) calls ``compile_package`` on its copy of the sources, so the wheel carries the same build.

Interpreted on purpose: start-up code (configuration, CLI, demo, supervisor, docs) gains nothing
from compiling, and a few modules use what mypyc does not compile (async generators, class
bodies that assign several names at once, classes nested in functions).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parent.parent
PACKAGE_PATH = Path("src") / "api_gateway"
BUILD_DIR = "_compiled"

INTERPRETED_TREES = ("config", "docs", "keeper")  # keeper: its own process, off the request path
INTERPRETED = {
    "__init__.py",
    "__main__.py",
    "compiled.py",  # decides whether the compiled modules are used at all
    "cli.py",
    "demo.py",
    "supervisor.py",
    "serve.py",
    "errors.py",  # class bodies assign status, slug and title in one statement
    "http/body.py",  # async generators
    "cache/replay.py",  # an async generator
    "observability/logging.py",  # assigns to logging.Formatter's class variables
    "observability/exporters.py",  # start-up and scrape time only
    "observability/process.py",  # scrape time only
    "aggregation/results.py",  # mypyc cannot resolve a dataclass field annotated `object`
    # The admin listener and what feeds it: off the request path (timers, the admin port).
    "admin_api.py",
    "admin_health.py",
    "config_view.py",
    "journal.py",
    "operations.py",
    "status_page.py",
    "observability/route_window.py",
}


def compiled_sources(package: Path) -> list[Path]:
    chosen = []
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(package).as_posix()
        if relative in INTERPRETED or relative.endswith("/__init__.py"):
            continue
        if relative.split("/", 1)[0] in (*INTERPRETED_TREES, BUILD_DIR):
            continue
        chosen.append(path)
    return chosen


def missing_prerequisite() -> str | None:
    """What the compile needs and this machine lacks, with how to install it (one line), or
    None. Asked before anything is built: by `make`, and by the build backend, which builds a
    pure-Python wheel instead."""
    compiler = (os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None:
        return f"no C compiler (`{compiler}` not found): apt-get install gcc"
    include = Path(sysconfig.get_paths()["include"])
    if not (include / "Python.h").exists():
        version = sysconfig.get_python_version()
        return (
            f"no Python headers ({include}/Python.h not found): apt-get install python{version}-dev"
        )
    return None


def digests_module(package: Path) -> ModuleType:
    """``api_gateway/compiled.py`` itself, loaded by path: the digests the gateway checks at
    import are computed by the same code, without importing the package (which would activate
    whatever build is there, and is not installed where the build backend runs)."""
    spec = importlib.util.spec_from_file_location("_api_gateway_digests", package / "compiled.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build(root: Path, sources: list[Path], work: Path) -> Path:
    """Compile ``sources`` (under ``root``) into extension modules; returns the build lib."""
    from mypyc.build import mypycify
    from setuptools import setup

    build_lib, build_temp = work / "lib", work / "temp"
    os.chdir(root)  # mypy names modules from the paths it is given, relative to src/, and
    # reads its settings from pyproject.toml
    extensions = mypycify(
        [str(path.relative_to(root)) for path in sources],
        opt_level="3",
        multi_file=True,  # several C files, so `-j` compiles them in parallel
        target_dir=str(build_temp / "c"),
        group_name="api_gateway_compiled",
    )
    os.chdir(work)  # setup() would read the project's pyproject.toml as its own
    setup(
        name="api-gateway-compiled",
        ext_modules=extensions,
        script_args=[
            "--quiet",
            "build_ext",
            "--build-lib",
            str(build_lib),
            "--build-temp",
            str(build_temp),
            "--parallel",
            "2",
        ],
    )
    return build_lib


def module_name(path: Path, suffix: str) -> str:
    return path.as_posix().removesuffix(suffix).replace("/", ".")


def compile_package(root: Path) -> None:
    """Build ``root/src/api_gateway/_compiled`` from the sources under ``root``."""
    package = root / PACKAGE_PATH
    out = package / BUILD_DIR
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    sources = compiled_sources(package)
    digests = digests_module(package).source_digests(package)
    print("compiling the request path with mypyc (about two minutes)", flush=True)
    started = time.monotonic()
    here = Path.cwd()
    try:
        with tempfile.TemporaryDirectory(prefix="api-gateway-compile-") as work:
            build_lib = build(root, sources, Path(work))
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            modules = {}
            for built in sorted(build_lib.rglob(f"*{suffix}")):
                relative = built.relative_to(build_lib)
                target = out / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(built, target)
                modules[module_name(relative, suffix)] = relative.as_posix()
    finally:
        os.chdir(here)
    manifest = {"ext_suffix": suffix, "modules": modules, "sources": digests}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    took = time.monotonic() - started
    print(f"compiled {len(sources)} modules into {PACKAGE_PATH / BUILD_DIR} in {took:.0f} s")


def main(argv: list[str]) -> int:
    if argv == ["--check"]:
        missing = missing_prerequisite()
        if missing is not None:
            print(f"cannot compile the request path: {missing}", file=sys.stderr)
            return 1
        return 0
    compile_package(REPO)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Compile the request path to C with mypyc, next to the sources it was built from.

    .venv/bin/python tools/compile.py        # `make compiled` runs it when a source changes

Writes ``src/api_gateway/_compiled/``: one extension module per compiled module, mypyc's shared
runtime, and ``manifest.json`` with the SHA-256 of every source file of the package. At import,
``api_gateway.compiled`` loads these modules only if every source still has the recorded hash;
after any edit the gateway runs interpreted until the next build, so a stale build can never
shadow a change.

Interpreted on purpose: start-up code (configuration, CLI, demo, supervisor, docs) gains nothing
from compiling, and a few modules use what mypyc does not compile (async generators, class
bodies that assign several names at once, classes nested in functions).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import sysconfig
import tempfile
from pathlib import Path

from api_gateway.compiled import source_digests

REPO = Path(__file__).resolve().parent.parent
SRC = REPO / "src"
PACKAGE = SRC / "api_gateway"
OUT = PACKAGE / "_compiled"

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
    "policies/cache.py",  # async generators
    "observability/logging.py",  # assigns to logging.Formatter's class variables
    "observability/tracing.py",  # a class nested in a function
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


def compiled_sources() -> list[Path]:
    chosen = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative in INTERPRETED or relative.endswith("/__init__.py"):
            continue
        if relative.split("/", 1)[0] in INTERPRETED_TREES:
            continue
        chosen.append(path)
    return chosen


def build(sources: list[Path], build_lib: Path, build_temp: Path) -> None:
    from mypyc.build import mypycify
    from setuptools import setup

    relative = [str(path.relative_to(REPO)) for path in sources]
    extensions = mypycify(
        relative,
        opt_level="3",
        multi_file=True,  # several C files, so `-j` compiles them in parallel
        target_dir=str(build_temp / "c"),
        group_name="api_gateway_compiled",
    )
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


def module_name(path: Path, suffix: str) -> str:
    return path.as_posix().removesuffix(suffix).replace("/", ".")


def main() -> int:
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    sources = compiled_sources()
    digests = source_digests(PACKAGE)
    with tempfile.TemporaryDirectory(prefix="api-gateway-compile-") as work:
        build_lib, build_temp = Path(work) / "lib", Path(work) / "temp"
        os.chdir(REPO)  # mypy names modules from the paths it is given, relative to src/
        build(sources, build_lib, build_temp)
        shutil.rmtree(OUT, ignore_errors=True)
        OUT.mkdir()
        modules = {}
        for built in sorted(build_lib.rglob(f"*{suffix}")):
            relative = built.relative_to(build_lib)
            target = OUT / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(built, target)
            modules[module_name(relative, suffix)] = relative.as_posix()
    manifest = {"ext_suffix": suffix, "modules": modules, "sources": digests}
    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    print(f"compiled {len(sources)} modules into {OUT.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

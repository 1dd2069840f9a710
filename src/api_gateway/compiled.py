"""Use the request path compiled by ``tools/compile.py``, but only if it matches the sources.

The build records the SHA-256 of every source of the package. If any differs (a file edited
since the last build), or the build is missing or for another interpreter, the package runs
interpreted, exactly as written: a stale build never shadows a change. ``API_GATEWAY_COMPILED=0``
forces the interpreted modules.

Importing this module has no effect (``tools/compile.py`` loads it by path to record the
digests); the package's ``__init__`` calls ``activate()`` before any other module is imported.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import json
import os
import sys
import sysconfig
from collections.abc import Mapping, Sequence
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType

PACKAGE = Path(__file__).resolve().parent
BUILD_DIR = "_compiled"
MANIFEST = PACKAGE / BUILD_DIR / "manifest.json"
# Written instead of a build by a wheel built without a C compiler or the Python headers
# (tools/build_backend.py): one line saying what was missing and how to install it.
NOT_BUILT = PACKAGE / BUILD_DIR / "not-built.txt"
# What interpreted costs, measured by bench/run.py: said wherever it is said that we run so.
SLOWER = "about 0.7x the compiled throughput"


class CompiledFinder:
    """Finds the compiled modules (and mypyc's runtime) before the path-based finder does."""

    def __init__(self, files: Mapping[str, Path]) -> None:
        self.files = files

    def find_spec(
        self, fullname: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        file = self.files.get(fullname)
        if file is None:
            return None
        loader = importlib.machinery.ExtensionFileLoader(fullname, str(file))
        return importlib.util.spec_from_file_location(fullname, file, loader=loader)


def source_digests(package: Path) -> dict[str, str]:
    """Every source of the package, compiled or not: a compiled module may have inlined what it
    imported (constants, class layouts), so an edit to any of them makes the build stale."""
    build = package / BUILD_DIR
    return {
        path.relative_to(package).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(package.rglob("*.py"))
        if build not in path.parents
    }


def stale_reason(manifest: Mapping[str, object], package: Path) -> str | None:
    """Why the build must not be used, or None if it was built from exactly these sources."""
    if manifest.get("ext_suffix") != sysconfig.get_config_var("EXT_SUFFIX"):
        return "it was built for another interpreter"
    recorded = manifest.get("sources")
    if not isinstance(recorded, dict):
        return "its manifest lists no sources"
    current = source_digests(package)
    if current.keys() != recorded.keys():
        return "files were added or removed since it was built"
    for name, digest in current.items():
        if digest != recorded[name]:
            return f"{name} changed since it was built"
    return None


# Whether the compiled modules are in use, and why not (set once, by ``activate()``).
ACTIVE = False
REASON: str | None = None


def activate() -> None:
    """Use the compiled modules if a fresh build exists; else record why not (``--version``
    says it) and, where that is news to whoever runs the gateway, say it once on stderr."""
    global ACTIVE, REASON
    ACTIVE, REASON, warning = use_compiled_modules()
    if warning is not None:
        print(f"api-gateway: running interpreted{warning}", file=sys.stderr)


def use_compiled_modules() -> tuple[bool, str | None, str | None]:
    """Install the finder if a fresh build exists: (in use, why not, what to tell the user
    after "running interpreted")."""
    if os.environ.get("API_GATEWAY_COMPILED", "1") == "0":
        return False, "API_GATEWAY_COMPILED=0", None
    if not MANIFEST.exists():
        if NOT_BUILT.exists():
            missing = NOT_BUILT.read_text().strip()
            why = f"installed without the compiled build: {missing}"
            return False, why, f" ({SLOWER}): {why}, then reinstall"
        return False, "no compiled build: `make compiled` builds it", None
    manifest = json.loads(MANIFEST.read_text())
    reason = stale_reason(manifest, PACKAGE)
    if reason is not None:
        why = f"the compiled build is stale ({reason}); `make compiled` rebuilds it"
        return False, f"the compiled build is stale: {reason}", f": {why}"
    build = MANIFEST.parent
    files = {name: build / file for name, file in manifest["modules"].items()}
    sys.meta_path.insert(0, CompiledFinder(files))
    return True, None, None

"""Use the request path compiled by ``tools/compile.py``, but only if it matches the sources.

The build records the SHA-256 of every source of the package. If any differs (a file edited
since the last build), or the build is missing or for another interpreter, the package runs
interpreted, exactly as written: a stale build never shadows a change. ``API_GATEWAY_COMPILED=0``
forces the interpreted modules.
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


# Why the package runs interpreted (None while the compiled modules are in use).
REASON: str | None = None


def use_compiled_modules() -> bool:
    """Install the finder if a fresh build exists; say on stderr why a stale one is not used."""
    global REASON
    if os.environ.get("API_GATEWAY_COMPILED", "1") == "0":
        REASON = "API_GATEWAY_COMPILED=0"
        return False
    if not MANIFEST.exists():
        REASON = "no compiled build: `make compiled` builds it"
        return False
    manifest = json.loads(MANIFEST.read_text())
    reason = stale_reason(manifest, PACKAGE)
    if reason is not None:
        REASON = f"the compiled build is stale: {reason}"
        print(
            f"api-gateway: running interpreted: the compiled build is stale ({reason}); "
            "`make compiled` rebuilds it",
            file=sys.stderr,
        )
        return False
    build = MANIFEST.parent
    files = {name: build / file for name, file in manifest["modules"].items()}
    sys.meta_path.insert(0, CompiledFinder(files))
    return True


ACTIVE = use_compiled_modules()

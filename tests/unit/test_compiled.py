"""Whether a compiled build may be used: only when it was built from exactly these sources."""

from __future__ import annotations

import sysconfig
from pathlib import Path

from api_gateway.compiled import source_digests, stale_reason

EXT_SUFFIX = sysconfig.get_config_var("EXT_SUFFIX")


def package(root: Path) -> Path:
    (root / "policies").mkdir(parents=True)
    (root / "__init__.py").write_text('"""A package."""\n')
    (root / "pipeline.py").write_text("ORDER = 1\n")
    (root / "policies" / "auth.py").write_text("def verify() -> None: ...\n")
    return root


def manifest(root: Path, ext_suffix: str = EXT_SUFFIX) -> dict[str, object]:
    return {"ext_suffix": ext_suffix, "modules": {}, "sources": source_digests(root)}


def test_a_build_of_exactly_these_sources_is_used(tmp_path: Path) -> None:
    root = package(tmp_path)

    assert stale_reason(manifest(root), root) is None


def test_an_edit_to_any_source_makes_the_build_stale_and_names_the_file(tmp_path: Path) -> None:
    root = package(tmp_path)
    built = manifest(root)

    (root / "policies" / "auth.py").write_text("def verify() -> None: raise SystemExit\n")

    assert stale_reason(built, root) == "policies/auth.py changed since it was built"


def test_a_source_added_or_removed_since_the_build_makes_it_stale(tmp_path: Path) -> None:
    root = package(tmp_path)
    built = manifest(root)

    (root / "limits.py").write_text("MAX = 2\n")
    assert stale_reason(built, root) == "files were added or removed since it was built"

    (root / "limits.py").unlink()
    (root / "pipeline.py").unlink()
    assert stale_reason(built, root) == "files were added or removed since it was built"


def test_a_build_for_another_interpreter_is_not_used(tmp_path: Path) -> None:
    root = package(tmp_path)

    reason = stale_reason(manifest(root, ext_suffix=".cpython-312-x86_64-linux-gnu.so"), root)

    assert reason == "it was built for another interpreter"


def test_the_build_output_itself_is_not_a_source(tmp_path: Path) -> None:
    root = package(tmp_path)
    built = manifest(root)

    (root / "_compiled" / "api_gateway").mkdir(parents=True)
    (root / "_compiled" / "api_gateway" / "stray.py").write_text("")

    assert stale_reason(built, root) is None

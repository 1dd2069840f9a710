"""The wheel carries the compiled request path when there is one, and is then a platform wheel.

The build backend (tools/build_backend.py) compiles it into src/api_gateway/_compiled/ of its
copy of the sources before setuptools runs; everything else is in pyproject.toml.
"""

from pathlib import Path

from setuptools import Distribution, setup
from setuptools.command.build_py import build_py

BUILD = Path(__file__).resolve().parent / "src" / "api_gateway" / "_compiled"


class CompiledDistribution(Distribution):
    def has_ext_modules(self) -> bool:
        return (BUILD / "manifest.json").exists()  # tagged cp311 and this platform


class BuildPy(build_py):
    """Copies the compiled build or the line saying why there is none (``not-built.txt``) into
    the wheel: a directory of extension modules, not a package, so not package data."""

    def run(self) -> None:
        super().run()
        if BUILD.exists() and not self.editable_mode:
            self.copy_tree(str(BUILD), str(Path(self.build_lib) / "api_gateway" / BUILD.name))


setup(distclass=CompiledDistribution, cmdclass={"build_py": BuildPy})

"""Run an MLflow model inside its own environment: ``python runner.py predict|serve|info ...``.

This file is executed by path with the interpreter of the model's environment, where envbuild
itself is not installed, and the whole ``runtime/`` folder is copied into Docker images as plain
files. So the runtime uses only the standard library, keeps Python 3.8 syntax, and never imports
``envbuild``. Optional libraries of the model environment (mlflow, pandas, numpy, yaml) are
imported lazily, only where they are used.

The other files of this folder are loaded here as the submodules of a private package,
``_envbuild_runtime`` (see :func:`runtime_package`), not by their own names: the model's code
folder, or its dependencies (``openapi`` is a PyPI package), may use the same top-level names and
must get theirs. Their bytecode is read from ``__pycache__`` when valid but never written into
this folder (it may be read-only, or shared by several Pythons); with ``PYTHONPYCACHEPREFIX`` it
is cached there as usual.

The commands live in ``cli.py``; exit codes: 0 success, 2 bad input or usage, 5 the model failed
to load or to predict.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from types import ModuleType
from typing import Any, Sequence

PACKAGE = "_envbuild_runtime"
_HERE = os.path.dirname(os.path.abspath(__file__))


class _Loader(importlib.machinery.SourceFileLoader):
    """A source loader that writes no bytecode into the runtime folder."""

    def set_data(self, path: str, data: Any, *, _mode: int = 0o666) -> None:
        if os.path.abspath(path).startswith(_HERE + os.sep):
            return
        super().set_data(path, data, _mode=_mode)


class _Finder(importlib.abc.MetaPathFinder):
    """Finds ``_envbuild_runtime.NAME`` as ``NAME.py`` of this folder, and nothing else."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if not fullname.startswith(PACKAGE + "."):
            return None
        name = fullname[len(PACKAGE) + 1 :]
        file = os.path.join(_HERE, name + ".py")
        if "." in name or not os.path.isfile(file):
            return None
        return importlib.util.spec_from_file_location(
            fullname, file, loader=_Loader(fullname, file)
        )


def runtime_package() -> ModuleType:
    """The private package whose submodules are this folder's files (created once)."""
    package = sys.modules.get(PACKAGE)
    if package is None:
        package = ModuleType(PACKAGE, "envbuild's runtime, loaded by path")
        package.__path__ = [_HERE]
        package.__package__ = PACKAGE
        sys.modules[PACKAGE] = package
        sys.meta_path.insert(0, _Finder())
    return package


def runtime_module(name: str) -> ModuleType:
    """A file of this folder (``"backends"``), as a submodule of the private package."""
    runtime_package()
    return importlib.import_module(PACKAGE + "." + name)


def main(argv: Sequence[str] | None = None) -> int:
    # Running by path puts this folder first on sys.path; take it off so that model code importing
    # a module called `server` or `openapi` finds its own.
    if sys.path and os.path.abspath(sys.path[0] or os.curdir) == _HERE:
        del sys.path[0]
    code: int = runtime_module("cli").main(argv)
    return code


if __name__ == "__main__":
    sys.exit(main())

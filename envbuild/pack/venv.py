"""Packing the ``venv`` kind: the base interpreter and the environment's packages, as one prefix.

A virtualenv is not relocatable across machines by itself: ``pyvenv.cfg`` names its base
interpreter by absolute path, and the base is not on the other machine. So the archive is not a
venv: it is the base interpreter (relocated, ``interpreter.py``) with the environment's
``site-packages`` in its own ``site-packages``. Python then needs no ``pyvenv.cfg`` and finds
everything from the executable's place. The environment's console scripts come along (uv writes
them as relative launchers); its activation scripts and ``_virtualenv`` hooks do not.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from envbuild.errors import BuildError
from envbuild.pack.interpreter import copy_base, describe_base, relocate

if TYPE_CHECKING:
    from envbuild.prepare import Prepared

_VENV_ONLY = {"_virtualenv.py", "_virtualenv.pth", "__pycache__"}
_NOT_SCRIPTS = ("python", "activate", "deactivate", "pydoc")


def stage(prepared: Prepared, tree: Path) -> dict[str, Any]:
    """Fill ``tree`` with the relocated interpreter and the environment's packages; returns the
    manifest's ``python`` entry."""
    base = describe_base(prepared.interpreter)
    copy_base(base, tree)
    relocate(base, tree)
    env_path = prepared.environment.path
    site = env_path / "lib" / f"python{base.minor}" / "site-packages"
    if not site.is_dir():
        raise BuildError(f"{site} is missing: the environment is not a Python {base.minor} venv")
    target = tree / "lib" / f"python{base.minor}" / "site-packages"
    for entry in sorted(site.iterdir()):
        if entry.name in _VENV_ONLY:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.copytree(
                entry,
                target / entry.name,
                symlinks=True,
                ignore=shutil.ignore_patterns("__pycache__"),
            )
        else:
            shutil.copy2(entry, target / entry.name, follow_symlinks=False)
    for script in sorted((env_path / "bin").iterdir()):
        if script.name.startswith(_NOT_SCRIPTS) or not script.is_file() or script.is_symlink():
            continue
        if not (tree / "bin" / script.name).exists():
            shutil.copy2(script, tree / "bin" / script.name)
    return {
        **base.to_dict(),
        "libc": " ".join(part for part in base.libc if part),
    }

"""Keeping every path a model names inside the model folder.

A model folder is untrusted input: ``data: ../../etc/passwd`` or ``code: /home/me`` must never make
envbuild read, copy or mount something outside it. Every relative path taken from a model file goes
through :func:`inside` before use.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath, PureWindowsPath

from envbuild.errors import ModelError


def inside(
    root: Path, relative: str, *, path: str | Path, field: str, line: int | None = None
) -> Path:
    """``root / relative`` if it stays inside ``root`` (symlinks resolved), else a ModelError.

    ``path``/``field``/``line`` name where ``relative`` was written, for the error message.
    """
    if not isinstance(relative, str) or not relative.strip():
        raise ModelError("expected a relative path", path=path, field=field, line=line)
    if "\x00" in relative:
        raise ModelError("path contains a NUL byte", path=path, field=field, line=line)
    if (
        PurePosixPath(relative).is_absolute()
        or PureWindowsPath(relative).is_absolute()
        or PureWindowsPath(relative).drive
        or "://" in relative
    ):
        raise ModelError(
            f"absolute path {relative!r} leaves the model folder",
            path=path,
            field=field,
            line=line,
            hint="paths in a model's files must be relative to the model folder",
        )
    root_real = Path(os.path.realpath(root))
    target = Path(os.path.realpath(root_real / relative))
    if target != root_real and root_real not in target.parents:
        raise ModelError(
            f"path {relative!r} leaves the model folder",
            path=path,
            field=field,
            line=line,
            hint="paths in a model's files must be relative to the model folder",
        )
    return target


def display(root: Path, target: Path) -> str:
    """``target`` relative to the model folder when it is inside it (for messages)."""
    try:
        return str(Path(os.path.realpath(target)).relative_to(os.path.realpath(root)))
    except ValueError:
        return str(target)

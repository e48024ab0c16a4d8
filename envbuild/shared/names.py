"""``NAME[:VERSION]``: how a shared environment is named, as Azure ML names its environments.

A name is lower case (letters, digits, ``.``, ``_``, ``-``, starting with a letter or digit) so
that it is also a folder name on a case-insensitive file system and part of an image tag; a
version is the same alphabet with upper case allowed. ``NAME`` alone means the newest version.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from envbuild.errors import UsageError

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class Ref:
    """A reference to a shared environment: a name and, optionally, one version."""

    name: str
    version: str | None = None

    def __str__(self) -> str:
        return f"{self.name}:{self.version}" if self.version else self.name


def check_name(name: str, field: str = "NAME") -> str:
    if not _NAME.match(name):
        raise UsageError(
            f"invalid environment name {name!r}",
            field=field,
            hint="use lower-case letters, digits, '.', '_' and '-' (up to 64, starting with a "
            "letter or digit), e.g. sklearn-cpu",
        )
    return name


def check_version(version: str, field: str = "--version") -> str:
    if not _VERSION.match(version):
        raise UsageError(
            f"invalid environment version {version!r}",
            field=field,
            hint="use letters, digits, '.', '_' and '-', e.g. 3 or 2024.05",
        )
    return version


def parse_ref(text: str, field: str = "--environment") -> Ref:
    """``NAME`` or ``NAME:VERSION`` -> :class:`Ref` (a UsageError naming ``field`` otherwise)."""
    name, sep, version = text.strip().partition(":")
    check_name(name, field)
    if sep:
        check_version(version, field)
        return Ref(name, version)
    return Ref(name)


def version_key(version: str) -> tuple[int, int, str]:
    """Integers in numeric order before other versions (``2`` < ``10`` < ``beta``)."""
    return (0, int(version), "") if version.isdigit() else (1, 0, version)

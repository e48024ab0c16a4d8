"""Where a lock will be installed: a :class:`Target` (Python version, platforms, accelerator), with
platforms named the way users name them.

A model is usually run somewhere else than where ``envbuild`` runs (a Docker image is Linux even
when built from a Mac), so a lock is resolved for explicit targets, never for "this machine". This
module turns what users type (``linux/amd64``, ``linux/arm64``, ``macos``, ``windows``) into

* the ``--python-platform`` value uv resolves for, and
* the PEP 508 marker that identifies the platform in the lock's ``environments`` and, when the
  targets need different packages, in a package's ``marker``.

Why ``manylinux_2_28`` for Linux: Docker's ``python:*-slim`` images are Debian bookworm (glibc
2.36), Debian 11 and Ubuntu 20.04 have 2.31, RHEL 8 has 2.28. Wheels tagged up to manylinux_2_28
(which includes every manylinux2014 / 2_17 wheel) install on all of them; picking a newer tag would
let uv choose wheels that an older-glibc host refuses to install.
"""

from __future__ import annotations

import platform as _platform
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from envbuild.errors import ModelError, UsageError

if TYPE_CHECKING:
    from pathlib import Path

    from envbuild.envspec import EnvSpec


@dataclass(frozen=True, order=True)
class Platform:
    """One target platform: canonical name, uv's ``--python-platform``, and marker values."""

    name: str  # canonical, Docker-style where Docker has a name: "linux/amd64"
    uv_platform: str  # uv --python-platform value
    sys_platform: str  # PEP 508 sys_platform on that platform
    machine: str  # PEP 508 platform_machine on that platform

    @property
    def marker(self) -> str:
        """The PEP 508 marker true exactly on this platform (used in ``environments``)."""
        return f"sys_platform == '{self.sys_platform}' and platform_machine == '{self.machine}'"

    def __str__(self) -> str:
        return self.name


LINUX_GLIBC = "2_28"

PLATFORMS: dict[str, Platform] = {
    p.name: p
    for p in (
        Platform("linux/amd64", f"x86_64-manylinux_{LINUX_GLIBC}", "linux", "x86_64"),
        Platform("linux/arm64", f"aarch64-manylinux_{LINUX_GLIBC}", "linux", "aarch64"),
        Platform("macos/arm64", "aarch64-apple-darwin", "darwin", "arm64"),
        Platform("macos/x86_64", "x86_64-apple-darwin", "darwin", "x86_64"),
        Platform("windows/amd64", "x86_64-pc-windows-msvc", "win32", "AMD64"),
    )
}

_OS_ALIASES = {"linux": "linux", "macos": "macos", "darwin": "macos", "osx": "macos"}
_OS_ALIASES |= {"windows": "windows", "win": "windows", "win32": "windows"}
_ARCH_ALIASES = {
    "amd64": "amd64",
    "x86_64": "amd64",
    "x64": "amd64",
    "arm64": "arm64",
    "aarch64": "arm64",
}
# The architecture an OS name alone means: Linux servers and Docker default to amd64; a Mac
# bought since 2020 is Apple silicon.
_DEFAULT_ARCH = {"linux": "amd64", "macos": "arm64", "windows": "amd64"}

DEFAULT_PLATFORMS = ("linux/amd64",)


def _canonical(os_name: str, arch: str) -> str:
    if os_name == "macos" and arch == "amd64":
        return "macos/x86_64"
    return f"{os_name}/{arch}"


def parse_platform(text: str) -> Platform:
    """``linux/arm64``, ``linux/aarch64``, ``macos``, ``windows`` ... -> :class:`Platform`."""
    raw = text.strip().lower()
    os_part, _, arch_part = raw.partition("/")
    os_name = _OS_ALIASES.get(os_part)
    arch = _ARCH_ALIASES.get(arch_part) if arch_part else _DEFAULT_ARCH.get(os_name or "")
    name = _canonical(os_name, arch) if os_name and arch else None
    if name not in PLATFORMS:
        known = ", ".join(sorted(PLATFORMS))
        raise UsageError(
            f"unknown platform {text!r}",
            field="--platform",
            hint=f"use one of {known} (aliases: linux, macos, windows, x86_64, aarch64)",
        )
    return PLATFORMS[name]


def resolve_platforms(values: Iterable[str] | None) -> tuple[Platform, ...]:
    """The target set from ``--platform`` values: given ones replace the default, ``+P`` adds.

    Values may be comma-separated. The result is sorted by name so that the order the user typed
    them in does not change the lock's bytes.
    """
    items = [part.strip() for value in values or () for part in value.split(",") if part.strip()]
    chosen: dict[str, Platform] = {}
    if not items or all(item.startswith("+") for item in items):
        chosen.update((name, PLATFORMS[name]) for name in DEFAULT_PLATFORMS)
    for item in items:
        target = parse_platform(item.removeprefix("+"))
        chosen[target.name] = target
    return tuple(sorted(chosen.values()))


_PYTHON_RE = re.compile(r"^3\.\d{1,2}(\.\d{1,3})?$")


def parse_python(text: str) -> str:
    """Validate a target Python version ``X.Y`` or ``X.Y.Z`` (what ``--python`` accepts)."""
    value = text.strip()
    if not _PYTHON_RE.match(value):
        raise UsageError(
            f"invalid Python version {text!r}",
            field="--python",
            hint="write X.Y or X.Y.Z, for example 3.10 or 3.11.7",
        )
    return value


def python_minor(version: str) -> str:
    """``3.11.7`` -> ``3.11``: the part that decides which wheels (ABI tags) fit."""
    return ".".join(version.split(".")[:2])


def host_platform() -> Platform | None:
    """The platform envbuild runs on, when it is one of the known targets (None otherwise)."""
    machine = _platform.machine().lower()
    arch = _ARCH_ALIASES.get(machine)
    os_name = {"linux": "linux", "darwin": "macos", "win32": "windows"}.get(sys.platform)
    if os_name is None or arch is None:
        return None
    return PLATFORMS.get(_canonical(os_name, arch))


class BaseLock(Protocol):
    """A locked layer an environment holds *below* its pip half: a conda environment's conda
    packages (``envbuild.lock.conda.CondaBase``). It brings the interpreter, so the pip half is
    resolved for its Python; the pip half records it (its digest is part of the pip half's
    identity, so a new base means a new pip half), is resolved *around* the Python distributions
    it already installs (pinned to their versions and left out, so pip never replaces them), and
    is kept in a model folder under its own name (``pylock.conda.toml``) beside ``pylock.toml``.
    """

    @property
    def name(self) -> str:
        """Its short name, the prefix of the facts the pip half records (``conda``)."""
        ...

    @property
    def digest(self) -> str:
        """The base lock's identity (``sha256:`` of its bytes)."""
        ...

    @property
    def pip_lock_name(self) -> str:
        """The file name of the pip half in a model folder (``pylock.conda.toml``)."""
        ...

    @property
    def lock_args(self) -> str:
        """What to add to ``envbuild lock MODEL`` to write both halves (``--kind conda``)."""
        ...

    def constraints(self) -> tuple[str, ...]:
        """``name==version`` of every Python distribution the base installs."""
        ...

    def record(self) -> dict[str, Any]:
        """The facts the pip half records under ``[tool.envbuild]`` (keys start with name)."""
        ...

    def problem(self, tool: Mapping[str, Any]) -> str | None:
        """Why a pip half with these ``[tool.envbuild]`` facts was not made on this base."""
        ...

    @property
    def warnings(self) -> tuple[str, ...]:
        """What choosing it found worth saying (the model's own was not used, ...)."""
        ...

    @property
    def lock_file(self) -> tuple[str, str]:
        """Its file name and text (what an image keeps beside the pip half)."""
        ...

    @property
    def path(self) -> Path | None:
        """Where its lock file is (the model folder, or envbuild's cache)."""
        ...

    def install_for(
        self,
        folder: Path,
        final: str,
        *,
        offline: bool = False,
        on_progress: Callable[[str], None] | None = None,
    ) -> None:
        """Install the base into ``folder`` for its final path ``final`` (an image's
        ``/opt/env``, where the folder is copied; nothing runs in it before)."""
        ...


@dataclass(frozen=True)
class Target:
    """Where a lock's packages will run: a Python version, platforms and an accelerator.

    Every resolution and every lock choice is for a Target, never for "this machine": a venv's
    target is its interpreter's Python on the host platform, an image's is the model's Python on
    ``linux/<arch>``, ``envbuild lock``'s is whatever the user asked for. ``base`` is what the
    environment holds below the pip half (a conda lock), when it holds anything.
    """

    python: str  # X.Y or X.Y.Z
    platforms: tuple[Platform, ...]
    python_from_model: bool = True  # False: --python (or an interpreter) chose it
    accelerator: str | None = None  # cpu, cuda, cu121, rocm6.0 ... (None: the index default)
    # why that accelerator (accelerator.decide); not part of the target's identity
    accelerator_reason: str | None = field(default=None, compare=False)
    base: BaseLock | None = None

    @property
    def minor(self) -> str:
        return python_minor(self.python)

    @property
    def platform_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.platforms)

    def describe(self) -> str:
        accel = f" ({self.accelerator})" if self.accelerator else ""
        base = f" over the {self.base.name} lock {self.base.digest[:19]}…" if self.base else ""
        return f"Python {self.python} on {', '.join(self.platform_names)}{accel}{base}"

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "python": self.python,
            "platforms": list(self.platform_names),
            "accelerator": self.accelerator,
        }
        if (
            self.base is not None
        ):  # only then: the cache keys of base-less targets stay as they were
            out["base"] = {"name": self.base.name, "digest": self.base.digest}
        return out

    @classmethod
    def for_model(
        cls,
        env: EnvSpec,
        *,
        python: str | None = None,
        platforms: Iterable[str] | None = None,
        accelerator: str | None = None,
    ) -> Target:
        """The model's Python (or ``python``) on ``platforms`` (default linux/amd64), for the
        accelerator ``accelerator`` asks for (``--accelerator``; decided by
        :func:`envbuild.accelerator.decide`)."""
        name, reason = choose_accelerator(env, accelerator)
        return cls(
            python=model_python(env, python),
            platforms=resolve_platforms(platforms),
            python_from_model=not python,
            accelerator=name,
            accelerator_reason=reason,
        )

    @classmethod
    def for_interpreter(
        cls, env: EnvSpec, version: str, *, accelerator: str | None = None
    ) -> Target:
        """A venv's target: the model's Python when the interpreter fits it, else the
        interpreter's own version, on this machine's platform."""
        from_model = env.python is not None and env.python.admits(version)
        python = env.python.version if from_model and env.python is not None else version
        host = host_platform()
        platforms = (host,) if host is not None else resolve_platforms(None)
        name, reason = choose_accelerator(env, accelerator)
        return cls(
            python,
            platforms,
            python_from_model=from_model,
            accelerator=name,
            accelerator_reason=reason,
        )


def choose_accelerator(env: EnvSpec, requested: str | None) -> tuple[str | None, str | None]:
    """(accelerator, why) for ``env`` and ``--accelerator`` (see :func:`accelerator.decide`)."""
    from envbuild.accelerator import decide, installed_from, parse_accelerator

    choice = decide(env, parse_accelerator(requested), installed=installed_from(env.model_path))
    return choice.name, choice.reason if choice.name or choice.requested else None


def model_python(env: EnvSpec, python: str | None = None) -> str:
    """The Python version to resolve for: ``python`` if given, else the model's own."""
    if python:
        return parse_python(python)
    if env.python is None:
        raise ModelError(
            "the model does not say which Python it needs",
            path=env.model_path,
            hint="pass the Python to build for: --python X.Y",
        )
    try:
        return parse_python(env.python.version)
    except UsageError:
        raise ModelError(
            f"cannot build for Python {env.python.text!r}",
            path=env.model_path / env.python.origin.file,
            line=env.python.origin.line,
            hint="pass the Python 3 version to use: --python X.Y",
        ) from None

"""The target platform of a conda solve, and the virtual packages that describe its system.

Conda packages depend on the system through *virtual packages* (``__glibc >=2.17``, ``__unix``,
``__cuda >=11.8``) that the solver takes as given. A lock is for the machine where the model will
run, not the one running envbuild (the host may be a Mac building a Linux image), so the virtual
packages are a property of the target, chosen here, and never detected on the host.

Defaults (the same floor as pixi's default system requirements, and as envbuild's pip locks):
Linux means glibc 2.28 and kernel 4.18 (RHEL 8; Debian 11/12 and Ubuntu 20.04+ are newer), macOS
13.0, and no CUDA unless asked (``cuda="12.0"``): a GPU is a property of the serving machine that
the model's files cannot tell. The virtual packages are recorded in the lock (its platform entry),
so a lock says what it was solved for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from envbuild.errors import UsageError

DEFAULT_PLATFORM = "linux-64"
GLIBC = "2.28"
LINUX_KERNEL = "4.18"
MACOS = "13.0"

# envbuild's target names (envbuild.targets) -> conda subdirs
FROM_TARGET = {
    "linux/amd64": "linux-64",
    "linux/arm64": "linux-aarch64",
    "macos/arm64": "osx-arm64",
    "macos/x86_64": "osx-64",
    "windows/amd64": "win-64",
}
_ARCHSPEC = {
    "linux-64": "x86_64",
    "linux-aarch64": "aarch64",
    "osx-64": "x86_64",
    "osx-arm64": "arm64",
    "win-64": "x86_64",
}
SUBDIRS = tuple(_ARCHSPEC)


@dataclass(frozen=True, order=True)
class VirtualPackage:
    """A virtual package the target provides: ``__glibc=2.28=0``."""

    name: str
    version: str
    build: str = "0"

    def __str__(self) -> str:
        return f"{self.name}={self.version}={self.build}"


@dataclass(frozen=True)
class CondaPlatform:
    """A conda subdir and the virtual packages its machines provide."""

    subdir: str
    virtual_packages: tuple[VirtualPackage, ...]

    @property
    def is_windows(self) -> bool:
        return self.subdir.startswith("win-")

    def to_dict(self) -> dict[str, object]:
        return {"subdir": self.subdir, "virtual_packages": [str(v) for v in self.virtual_packages]}


def subdir_of(platform: str) -> str:
    """``linux-64`` or envbuild's ``linux/amd64`` -> the conda subdir; a UsageError otherwise."""
    name = platform.strip().lower()
    if name in _ARCHSPEC:
        return name
    if name in FROM_TARGET:
        return FROM_TARGET[name]
    known = ", ".join(SUBDIRS)
    raise UsageError(f"unknown conda platform {platform!r} (expected one of {known})")


def conda_platform(
    platform: str = DEFAULT_PLATFORM,
    *,
    cuda: str | None = None,
    glibc: str = GLIBC,
    virtual_packages: Sequence[VirtualPackage] | None = None,
) -> CondaPlatform:
    """The target ``platform`` with its default virtual packages (or exactly the given ones)."""
    subdir = subdir_of(platform)
    if virtual_packages is not None:
        return CondaPlatform(subdir, tuple(sorted(virtual_packages)))
    found: list[VirtualPackage] = [VirtualPackage("__archspec", "1", _ARCHSPEC[subdir])]
    if subdir.startswith("linux-"):
        found += [
            VirtualPackage("__glibc", glibc),
            VirtualPackage("__linux", LINUX_KERNEL),
            VirtualPackage("__unix", "0"),
        ]
    elif subdir.startswith("osx-"):
        found += [VirtualPackage("__osx", MACOS), VirtualPackage("__unix", "0")]
    else:
        found.append(VirtualPackage("__win", "0"))
    if cuda is not None:
        if not cuda.replace(".", "").isdigit():
            raise UsageError(f"invalid CUDA version {cuda!r} (expected e.g. 12.0)")
        found.append(VirtualPackage("__cuda", cuda))
    return CondaPlatform(subdir, tuple(sorted(found)))

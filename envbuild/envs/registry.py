"""The registry of environment kinds: the one place that maps a kind's name to its backend.

A new kind is a module beside ``venv.py`` with a class following ``base.Backend``, plus one
:class:`Kind` line in ``KINDS`` below; the CLI's ``--kind`` choices and help, ``inspect``'s
"can build" report and every command's dispatch come from here, so nothing else compares kind
names. Backends are imported on first use (the docker SDK and py-rattler are not cheap, and
``envbuild --help`` must stay fast).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

from envbuild.envs.base import ENV, EXEC, PREDICT, REPRODUCE, SERVE
from envbuild.errors import UsageError

if TYPE_CHECKING:
    from envbuild.envs.base import Backend


@dataclass(frozen=True)
class Kind:
    """A kind of environment as the CLI presents it, and where its backend lives."""

    name: str
    backend: str  # "module:Class"
    summary: str  # one line for --help
    capabilities: frozenset[str]


KINDS: dict[str, Kind] = {
    kind.name: kind
    for kind in (
        Kind(
            "venv",
            "envbuild.envs.venv:VenvBackend",
            "a cached virtualenv built from the lock (default)",
            frozenset({ENV, PREDICT, SERVE, EXEC, REPRODUCE}),
        ),
        Kind(
            "local",
            "envbuild.envs.local:LocalBackend",
            "the interpreter running envbuild (or --python PATH), as it is",
            frozenset({ENV, PREDICT, SERVE, EXEC}),
        ),
        Kind(
            "docker",
            "envbuild.envs.docker:DockerBackend",
            "the image `envbuild image` builds, reused while the lock and the model are unchanged",
            frozenset({ENV, PREDICT, SERVE, REPRODUCE}),
        ),
        Kind(
            "shared",
            "envbuild.envs.shared:SharedBackend",
            "a named shared environment, chosen with --environment NAME[:VERSION]",
            frozenset(),  # never a --kind choice: --environment selects it
        ),
    )
}
DEFAULT_KIND = "venv"
SHARED_KIND = "shared"  # what --environment NAME[:VERSION] runs in


def kinds(capability: str | None = None) -> tuple[str, ...]:
    """Kind names, in registry order; only those with ``capability`` when given."""
    return tuple(
        name
        for name, kind in KINDS.items()
        if capability is None or capability in kind.capabilities
    )


def describe(name: str) -> Kind:
    kind = KINDS.get(name)
    if kind is None:
        raise UsageError(
            f"unknown environment kind {name!r} (expected {', '.join(KINDS)})", field="--kind"
        )
    return kind


@cache
def get_backend(name: str) -> Backend:
    """The backend for kind ``name`` (a UsageError naming the known kinds otherwise)."""
    module, _, cls = describe(name).backend.partition(":")
    backend: Backend = getattr(importlib.import_module(module), cls)()
    return backend

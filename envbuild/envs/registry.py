"""The registry of environment kinds: the one place that maps a kind's name to its backend.

A new kind is a module beside ``venv.py`` with a class following ``base.Backend``, plus one
:class:`Kind` line in ``KINDS`` below; the CLI's ``--kind`` choices and help, ``inspect``'s
"can build" report and every command's dispatch come from here, so nothing else compares kind
names. Backends are imported on first use (the docker SDK and py-rattler are not cheap, and
``envbuild --help`` must stay fast).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

from envbuild.envs.base import ENV, EXEC, IMAGE, LOCK, PREDICT, REPRODUCE, SERVE
from envbuild.errors import UsageError

if TYPE_CHECKING:
    from envbuild.envs.base import Backend, BuildOptions, Imaging, Locking
    from envbuild.envspec import EnvSpec


@dataclass(frozen=True)
class Kind:
    """A kind of environment as the CLI presents it, and where its backend lives."""

    name: str
    backend: str  # "module:Class"
    summary: str  # one line for --help
    capabilities: frozenset[str]
    locks: str | None = None  # the kind whose lock files it builds from (None: no lock)
    packer: str | None = None  # "module:function" staging it for `envbuild pack`, if it can be


KINDS: dict[str, Kind] = {
    kind.name: kind
    for kind in (
        Kind(
            "venv",
            "envbuild.envs.venv:VenvBackend",
            "a cached virtualenv built from the lock (default)",
            frozenset({ENV, PREDICT, SERVE, EXEC, REPRODUCE, LOCK, IMAGE}),
            locks="venv",
            packer="envbuild.pack.venv:stage",
        ),
        Kind(
            "conda",
            "envbuild.envs.conda:CondaBackend",
            "a conda environment from conda.yaml (py-rattler, no conda needed), in the cache",
            frozenset({ENV, PREDICT, SERVE, EXEC, REPRODUCE, LOCK, IMAGE}),
            locks="conda",
            packer="envbuild.pack.conda:stage",
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
            locks="venv",
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


def get_packer(name: str) -> Callable[..., dict[str, Any]]:
    """The function that stages kind ``name``'s environment for ``envbuild pack`` (a UsageError
    saying which kinds can be packed otherwise)."""
    kind = describe(name)
    if kind.packer is None:
        packable = ", ".join(k.name for k in KINDS.values() if k.packer)
        raise UsageError(
            f"the {name} kind cannot be packed (kinds that can: {packable})", field="--kind"
        )
    module, _, function = kind.packer.partition(":")
    packer: Callable[..., dict[str, Any]] = getattr(importlib.import_module(module), function)
    return packer


@cache
def get_backend(name: str) -> Backend:
    """The backend for kind ``name`` (a UsageError naming the known kinds otherwise)."""
    module, _, cls = describe(name).backend.partition(":")
    backend: Backend = getattr(importlib.import_module(module), cls)()
    return backend


def _with(name: str, capability: str) -> Backend:
    if capability not in describe(name).capabilities:
        able = ", ".join(kinds(capability))
        raise UsageError(f"--kind {name} cannot be used here (expected {able})", field="--kind")
    return get_backend(name)


def locking_backend(name: str) -> Locking:
    """The backend of a kind with its own lock files (``envbuild lock --kind``)."""
    backend: Locking = _with(name, LOCK)  # type: ignore[assignment]
    return backend


def lock_files_backend(name: str) -> Locking | None:
    """The backend that writes and checks the lock files kind ``name`` builds from (the venv
    one for venv and docker, conda's own for conda; None for local, which locks nothing)."""
    locks = describe(name).locks
    return locking_backend(locks) if locks is not None else None


def imaging_backend(name: str) -> Imaging:
    """The backend of a kind ``envbuild image --kind`` can put into an image."""
    backend: Imaging = _with(name, IMAGE)  # type: ignore[assignment]
    return backend


@dataclass(frozen=True)
class KindChoice:
    """The kind a command uses, and why when it was chosen automatically."""

    name: str
    reason: str | None = None  # why the automatic choice picked it (None: asked, or the default)
    automatic: bool = False

    def to_dict(self) -> dict[str, object]:
        return {"kind": self.name, "automatic": self.automatic, "reason": self.reason}


def choose_kind(
    env: EnvSpec,
    requested: str | None,
    capability: str,
    options: BuildOptions | None = None,
) -> KindChoice:
    """An explicit ``--kind`` always wins; otherwise the first kind (registry order) with
    ``capability`` whose backend ``prefers`` the model (the conda kind, for a model that needs
    conda packages or a Python this machine lacks), else the default."""
    if requested:
        describe(requested)
        return KindChoice(requested)
    from envbuild.envs.base import BuildOptions as Options

    for name in kinds(capability):
        if name == DEFAULT_KIND:
            continue
        prefers = getattr(get_backend(name), "prefers", None)
        reason = prefers(env, options or Options()) if prefers is not None else None
        if reason:
            return KindChoice(name, reason, automatic=True)
    return KindChoice(DEFAULT_KIND, None, automatic=True)


def kinds_report(env: EnvSpec) -> tuple[tuple[dict[str, object], ...], dict[str, object]]:
    """``inspect``: every kind with its backend's reason it cannot build the model (None: it
    can) and whether the automatic choice picks it; and that choice."""
    from envbuild.envs.base import ENV

    choice = choose_kind(env, None, ENV)
    report = []
    for name in KINDS:
        reason = get_backend(name).can_build(env)
        report.append(
            {
                "kind": name,
                "can_build": reason is None,
                "reason": reason,
                "chosen": name == choice.name,
            }
        )
    return tuple(report), choice.to_dict()

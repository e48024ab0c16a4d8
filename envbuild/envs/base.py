"""The environment backend protocol: what every kind of environment (venv, local, docker, conda,
shared) provides, so that commands never ask which kind they run in.

A :class:`Backend` answers three questions, in order:

1. ``can_build(env)``: can it build this model at all? ``None``, or the reason it cannot (as
   virtualenv's creators do), which ``inspect`` shows and ``--kind`` reports as one line;
2. ``plan(env, options)``: where will the model run — the :class:`~envbuild.target.Target` its
   lock must be resolved for (``None`` when the kind installs nothing, like ``local``) and the
   interpreter it will use. Planning has no side effects beyond interpreter discovery;
3. ``build(plan, model, env, lock, options)``: build (or reuse from the cache) an environment
   holding exactly the chosen lock, and return an :class:`Environment`.

The lock itself is chosen between 2 and 3 by the one lock policy (``lock.select.select_lock``),
or given (``reproduce`` builds from the lock it checked). A kind whose environment holds a locked
layer below the pip half (conda) chooses that layer in ``plan`` (it decides the Python) and puts
it in the target (``Target.base``), so the pip half is chosen for it by the same policy.

Optional parts, each offered by the kinds whose registry entry has the capability:
:class:`Preferring` (``prefers``: the automatic choice of a kind), :class:`Locking` (``lock``:
what ``envbuild lock --kind K`` writes and checks) and :class:`Imaging` (``image_target``: the
environment inside ``envbuild image --kind K``). An :class:`Environment` knows how to run
envbuild's runner inside itself (predict to a file or stdout, info, serve, exec); the kinds differ
only in how (a process with the environment's interpreter, or a container).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

if TYPE_CHECKING:
    from envbuild.envspec import EnvSpec
    from envbuild.image.plan import ImageOptions
    from envbuild.inputs import ModelInput
    from envbuild.lock.request import LockOutcome, LockRequest
    from envbuild.lock.select import LockChoice
    from envbuild.model import ModelSpec
    from envbuild.python import Interpreter
    from envbuild.target import Target

Progress = Callable[[str], None]

# what a backend can be used for (the CLI offers a kind where its command's capability is there)
ENV, PREDICT, SERVE, EXEC, REPRODUCE = "env", "predict", "serve", "exec", "reproduce"
LOCK, IMAGE = "lock", "image"


class Streams(Protocol):
    """Where the output of a runner that does not share this process's file descriptors (a
    container) is relayed: the CLI gives its own."""

    def stdout(self, data: bytes) -> None: ...

    def stderr(self, data: bytes) -> None: ...


@dataclass(frozen=True)
class BuildOptions:
    """How to materialize: the knobs of ``env``/``predict``/``serve``/``run``/``reproduce``."""

    kind: str | None = None  # None: the automatic choice (registry.choose_kind)
    python: str | None = None  # X.Y[.Z] to find, or an interpreter path, overriding the model's
    strict_python: bool = False
    install_python: bool = False
    installer: str = "uv"
    compile_bytecode: bool = False  # False: .pyc written on first use, for what is imported
    offline: bool = False
    accelerator: str | None = None  # --accelerator as given (decided by the target)
    torch_index_url: str | None = None  # a mirror of PyTorch's indexes (--torch-index-url)
    package_scripts: bool = False  # conda: run the packages' link and activation scripts
    environment: str | None = None  # NAME[:VERSION] of a shared environment (the shared kind)
    allow_mismatch: bool = False  # run there even when it does not satisfy the model
    gpus: str | None = None  # all or N: GPUs a container gets (--kind docker)


@dataclass(frozen=True)
class BaseCheck:
    """``reproduce``'s check of what an environment holds below its pip half (a conda prefix's
    packages against the conda lock)."""

    name: str  # what was checked ("conda")
    checked: int  # packages compared
    missing: tuple[str, ...] = ()
    extra: tuple[str, ...] = ()
    different: tuple[str, ...] = ()  # "name: locked X, installed Y" / "name: FILE changed"
    distributions: frozenset[str] = frozenset()  # Python distributions it owns (canonical names)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.extra or self.different)

    def problems(self) -> list[str]:
        out = []
        if self.missing:
            out.append(f"{self.name} packages missing {', '.join(self.missing[:5])}")
        if self.extra:
            out.append(f"{self.name} packages not in the lock {', '.join(self.extra[:5])}")
        if self.different:
            out.append(f"{self.name} packages different {'; '.join(self.different[:5])}")
        return out

    def to_dict(self) -> dict[str, object]:
        return {
            "checked": self.checked,
            "missing": list(self.missing),
            "extra": list(self.extra),
            "different": list(self.different),
        }


@dataclass(frozen=True)
class Plan:
    """What a backend decided before building anything."""

    kind: str
    target: Target | None  # what the lock must be resolved for; None: no lock (local)
    interpreter: Interpreter  # the Python the model will run on (described, for reports)
    warnings: tuple[str, ...] = ()
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Environment(ABC):
    """A finished environment: its interpreter, the facts that identify it, and how to run the
    runner in it."""

    kind: str
    path: Path  # the environment's prefix (inside the image for docker)
    python: Path  # its interpreter
    key: str  # cache key (lock content + interpreter identity), or the image tag
    lock_digest: str | None
    interpreter_version: str
    built: bool = False  # built by this call (False: reused from the cache)
    seconds: float = 0.0
    details: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "path": str(self.path),
            "python": str(self.python),
            "key": self.key,
            "lock_digest": self.lock_digest,
            "python_version": self.interpreter_version,
            "built": self.built,
            "seconds": round(self.seconds, 3),
            **self.details,
        }

    @abstractmethod
    def predict(
        self,
        model: ModelSpec,
        data: ModelInput,
        *,
        output_path: Path | None,
        chunk_rows: int | None = None,
        streams: Streams | None = None,
    ) -> int:
        """Score ``data``; predictions go to ``output_path`` or to standard output, byte for byte
        as the runner writes them. Returns an exit code (the runner printed its own error)."""

    @abstractmethod
    def predict_to_file(self, model: ModelSpec, data: ModelInput, output: Path) -> None:
        """Score ``data`` into ``output``; the runner's one-line error becomes an
        InputDataError or ModelRunError."""

    @abstractmethod
    def info(self, model: ModelSpec | None = None) -> dict[str, Any]:
        """The runner's ``info``: the Python, marker values and installed distributions (no
        model is needed: a shared environment is described before any model runs in it)."""

    @abstractmethod
    def serve(
        self,
        model: ModelSpec,
        host: str,
        port: int,
        workers: int | None,
        streams: Streams | None = None,
    ) -> int:
        """Run the scoring server in the foreground (may replace this process)."""

    @abstractmethod
    def exec(self, command: list[str]) -> int:
        """Run ``command`` inside the environment in the foreground (may replace this
        process)."""

    def verify_base(self) -> BaseCheck | None:
        """What the environment holds below its pip half, checked against its lock (None: it
        holds nothing there)."""
        return None


class Backend(Protocol):
    """One kind of environment (see the module docstring)."""

    name: ClassVar[str]  # its kind's name in the registry (registry.KINDS: summary, capabilities)

    def can_build(self, env: EnvSpec) -> str | None: ...

    def plan(self, env: EnvSpec, options: BuildOptions) -> Plan: ...

    def build(
        self,
        plan: Plan,
        model: ModelSpec,
        env: EnvSpec,
        lock: LockChoice | None,
        options: BuildOptions,
        *,
        on_progress: Progress | None = None,
    ) -> Environment: ...


class Preferring(Protocol):
    """A kind that the automatic choice picks for some models (``registry.choose_kind``)."""

    def prefers(self, env: EnvSpec, options: BuildOptions) -> str | None:
        """Why this model should get this kind when none is asked for (None: it should not)."""
        ...


class Locking(Protocol):
    """A kind with its own lock files (``envbuild lock --kind K``)."""

    def lock_files(self, model: ModelSpec) -> tuple[Path, ...]:
        """The lock files this kind keeps in a model folder."""
        ...

    def lock(
        self,
        model: ModelSpec,
        env: EnvSpec,
        request: LockRequest,
        *,
        check: bool = False,
        on_progress: Progress | None = None,
    ) -> LockOutcome:
        """Write (or, with ``check``, verify without resolving) the kind's lock files."""
        ...


class Imaging(Protocol):
    """A kind whose environment ``envbuild image --kind K`` puts into an image."""

    def image_target(
        self, env: EnvSpec, options: ImageOptions, *, on_progress: Progress | None = None
    ) -> Target:
        """What the image's pip lock is chosen for (its ``base``, if any, is installed too)."""
        ...

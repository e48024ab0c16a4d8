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
or given (``reproduce`` builds from the lock it checked). An :class:`Environment` knows how to run
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
    from envbuild.inputs import ModelInput
    from envbuild.lock.select import LockChoice
    from envbuild.model import ModelSpec
    from envbuild.python import Interpreter
    from envbuild.target import Target

Progress = Callable[[str], None]

# what a backend can be used for (the CLI offers a kind where its command's capability is there)
ENV, PREDICT, SERVE, EXEC, REPRODUCE = "env", "predict", "serve", "exec", "reproduce"


class Streams(Protocol):
    """Where the output of a runner that does not share this process's file descriptors (a
    container) is relayed: the CLI gives its own."""

    def stdout(self, data: bytes) -> None: ...

    def stderr(self, data: bytes) -> None: ...


@dataclass(frozen=True)
class BuildOptions:
    """How to materialize: the knobs of ``env``/``predict``/``serve``/``run``/``reproduce``."""

    kind: str = "venv"
    python: str | None = None  # X.Y[.Z] to find, or an interpreter path, overriding the model's
    strict_python: bool = False
    install_python: bool = False
    installer: str = "uv"
    compile_bytecode: bool = False  # False: .pyc written on first use, for what is imported
    offline: bool = False
    accelerator: str | None = None  # --accelerator as given (decided by the target)
    torch_index_url: str | None = None  # a mirror of PyTorch's indexes (--torch-index-url)
    environment: str | None = None  # NAME[:VERSION] of a shared environment (the shared kind)
    allow_mismatch: bool = False  # run there even when it does not satisfy the model
    gpus: str | None = None  # all or N: GPUs a container gets (--kind docker)


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

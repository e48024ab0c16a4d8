"""Composing the stages for the commands that need a ready environment (env, predict, serve, run).

model folder -> ModelSpec -> EnvSpec -> Lock -> Environment. This module only chooses and calls
the stages; it adds two policies of its own:

* which lock: the model's own ``pylock.toml`` when it is there and still matches the model's
  requirements; otherwise one resolved by envbuild into its cache (never into the model folder),
  keyed by the requirements' digest and the target, so the second run resolves nothing;
* which interpreter: the one ``python.find_interpreter`` picks for the model's Python, or the one
  given with ``--python``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from envbuild.envs import Environment
from envbuild.envspec import EnvSpec, read_env
from envbuild.errors import UsageError
from envbuild.model import ModelSpec, load_model
from envbuild.python import Interpreter, describe, find_interpreter


@dataclass(frozen=True)
class BuildOptions:
    """How to materialize: the knobs of ``env``/``predict``/``serve``/``run``."""

    kind: str = "venv"
    python: str | None = None  # X.Y[.Z] to find, or an interpreter path, overriding the model's
    strict_python: bool = False
    install_python: bool = False
    installer: str = "uv"
    compile_bytecode: bool = True
    offline: bool = False


@dataclass(frozen=True)
class Prepared:
    """Everything a command needs to run the model: the specs, the lock and the environment."""

    model: ModelSpec
    env: EnvSpec
    interpreter: Interpreter
    environment: Environment
    lock_path: Path | None
    lock_source: str  # model, cache, none
    warnings: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, object]:
        return {
            "model": str(self.model.path),
            "environment": self.environment.to_dict(),
            "interpreter": self.interpreter.to_dict(),
            "lock": str(self.lock_path) if self.lock_path else None,
            "lock_source": self.lock_source,
            "warnings": list(self.warnings),
        }


def looks_like_version(text: str) -> bool:
    """``--python 3.10`` asks for a version; anything else is an interpreter path."""
    parts = text.split(".")
    return 2 <= len(parts) <= 3 and all(p.isdigit() for p in parts)


def choose_interpreter(env: EnvSpec, options: BuildOptions, warnings: list[str]) -> Interpreter:
    """The interpreter for this model under ``options`` (discovery or ``--python``)."""
    if options.python and looks_like_version(options.python):
        return find_interpreter(
            options.python,
            strict=options.strict_python,
            install=options.install_python,
            warnings=warnings,
        )
    if options.python:
        chosen = describe(options.python)
        if env.python is not None and not env.python.admits(chosen.version):
            message = (
                f"--python {options.python} is Python {chosen.version} but the model asks for "
                f"{env.python.text} ({env.python.origin})"
            )
            if options.strict_python:
                raise UsageError(message)
            warnings.append(message)
        return chosen
    if options.kind == "local":
        return describe(sys.executable, source="local")
    version = env.python.version if env.python else None
    return find_interpreter(
        version, strict=options.strict_python, install=options.install_python, warnings=warnings
    )


def prepare(
    model: str | os.PathLike[str] | ModelSpec,
    options: BuildOptions | None = None,
    *,
    on_progress: Callable[[str], None] | None = None,
) -> Prepared:
    """Load the model, lock it if needed and build (or reuse) its environment."""
    options = options or BuildOptions()
    spec = model if isinstance(model, ModelSpec) else load_model(model)
    env = read_env(spec)
    warnings: list[str] = [*spec.warnings, *env.warnings]
    if options.kind == "docker":
        return _prepare_docker(spec, env, options, on_progress)
    interpreter = choose_interpreter(env, options, warnings)
    if options.kind == "local":
        environment = Environment(
            kind="local",
            path=Path(sys.prefix) if not options.python else Path(interpreter.path).parent.parent,
            python=Path(interpreter.path),
            key="local",
            lock_digest=None,
            interpreter_version=interpreter.version,
        )
        return Prepared(spec, env, interpreter, environment, None, "none", tuple(warnings))
    if options.kind != "venv":
        raise UsageError(
            f"unknown environment kind {options.kind!r} (expected venv, local or docker)"
        )

    from envbuild.envs.venv import build_venv
    from envbuild.lockstage import obtain_lock

    lock, lock_source = obtain_lock(
        spec, env, interpreter, offline=options.offline, warnings=warnings, on_progress=on_progress
    )

    def on_line(line: str) -> None:
        if on_progress and line.strip():
            on_progress(line.strip())

    if on_progress:
        on_progress("building the environment")
    environment = build_venv(
        lock.text,
        lock.digest,
        interpreter,
        installer=options.installer,
        compile_bytecode=options.compile_bytecode,
        on_line=on_line,
        on_wait=(lambda: on_progress("waiting for another build of this environment"))
        if on_progress
        else None,
    )
    return Prepared(spec, env, interpreter, environment, lock.path, lock_source, tuple(warnings))


def _prepare_docker(
    spec: ModelSpec,
    env: EnvSpec,
    options: BuildOptions,
    on_progress: Callable[[str], None] | None,
) -> Prepared:
    """``--kind docker``: build (or reuse, by lock and model digest) the model's image."""
    from envbuild.image import ImageOptions, ensure_image

    if options.python and not looks_like_version(options.python):
        raise UsageError("--kind docker takes --python X.Y[.Z], not an interpreter path")
    result = ensure_image(
        spec,
        ImageOptions(python=options.python, offline=options.offline),
        env=env,
        on_progress=on_progress,
    )
    plan = result.plan
    return Prepared(
        spec,
        env,
        result.interpreter(),
        result.environment(),
        plan.lock.path,
        plan.lock_source,
        plan.warnings,
    )

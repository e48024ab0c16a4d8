"""Composing the stages for the commands that need a ready environment (env, predict, serve, run).

ModelSpec + EnvSpec -> kind -> backend plan (target, interpreter) -> lock choice -> Environment.
This module only chooses and calls the stages: the backend comes from the registry (``--kind``,
else its automatic choice), the lock from the one lock policy (``lock.select``), and nothing
here knows which kind it builds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from envbuild.envs import BuildOptions, Environment, get_backend
from envbuild.envs.base import ENV
from envbuild.envs.registry import KindChoice, choose_kind
from envbuild.envspec import EnvSpec
from envbuild.lock.select import LockChoice, select_lock
from envbuild.model import ModelSpec
from envbuild.python import Interpreter

if TYPE_CHECKING:
    from envbuild.sources.source import Provenance

__all__ = ["BuildOptions", "Prepared", "prepare"]


@dataclass(frozen=True)
class Prepared:
    """Everything a command needs to run the model: the specs, the lock and the environment."""

    model: ModelSpec
    env: EnvSpec
    interpreter: Interpreter
    environment: Environment
    lock: LockChoice | None
    warnings: tuple[str, ...] = field(default=())
    source: Provenance | None = None  # where MODEL came from (a folder, a run, a registry version)
    details: Mapping[str, Any] = field(default_factory=dict)  # the backend's plan, for reports
    kind: KindChoice | None = None  # how the kind was chosen

    @property
    def lock_path(self) -> Path | None:
        return self.lock.lock.path if self.lock else None

    @property
    def lock_source(self) -> str:
        return self.lock.source if self.lock else "none"

    def to_dict(self) -> dict[str, object]:
        return {
            "model": str(self.model.path),
            "environment": self.environment.to_dict(),
            "interpreter": self.interpreter.to_dict(),
            "lock": str(self.lock_path) if self.lock_path else None,
            "lock_source": self.lock_source,
            "kind": self.environment.kind,
            "kind_reason": self.kind.reason if self.kind else None,
            "warnings": list(self.warnings),
            "source": self.source.to_dict() if self.source else None,
            **self.details,
        }


def prepare(
    model: ModelSpec,
    env: EnvSpec,
    options: BuildOptions | None = None,
    *,
    on_progress: Callable[[str], None] | None = None,
    capability: str = ENV,
) -> Prepared:
    """Choose the kind (unless ``options.kind`` names one), the lock for the backend's target,
    and build (or reuse) the environment."""
    options = options or BuildOptions()
    kind = choose_kind(env, options.kind, capability, options)
    options = replace(options, kind=kind.name)
    backend = get_backend(kind.name)
    plan = backend.plan(env, options)
    warnings: list[str] = [*model.warnings, *env.warnings, *plan.warnings]
    choice = None
    if plan.target is not None:
        from envbuild.indexes import configure

        indexes = configure(
            model_options=env.index_options, torch_index_url=options.torch_index_url
        )
        choice = select_lock(
            model,
            env,
            plan.target,
            offline=options.offline,
            indexes=indexes,
            on_progress=on_progress,
        )
        warnings.extend(choice.warnings)
    environment = backend.build(plan, model, env, choice, options, on_progress=on_progress)
    base = plan.target.base if plan.target is not None else None
    _record_use(model, environment, choice, base.path if base is not None else None)
    return Prepared(
        model,
        env,
        plan.interpreter,
        environment,
        choice,
        tuple(dict.fromkeys(warnings)),
        details=plan.details,
        kind=kind,
    )


def _record_use(
    model: ModelSpec,
    environment: Environment,
    choice: LockChoice | None,
    base_lock: Path | None = None,
) -> None:
    """Tell the cache who uses its entries (``envbuild cache list``), and hold the environment
    for as long as this command (or the server it becomes) runs, so ``cache prune`` keeps it."""
    from envbuild.cache import cache_root
    from envbuild.cache.usage import hold, record_user

    root = cache_root()
    user = str(model.path)
    for path in (
        environment.path,
        choice.lock.path.parent if choice and choice.lock.path else None,
        base_lock.parent if base_lock is not None else None,
    ):
        if path is not None and root in Path(path).parents:
            record_user(Path(path), user)
    if root in environment.path.parents:
        hold(environment.path)

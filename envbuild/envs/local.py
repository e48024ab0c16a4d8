"""The ``local`` kind: the interpreter running envbuild (or ``--python PATH``), as it is.

Nothing is locked or installed: the model runs on whatever that interpreter has. For a quick
try on a machine already set up for the model; ``reproduce`` does not offer it (it proves
nothing about the model's own environment).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import ClassVar

from envbuild.envs.base import BuildOptions, Plan, Progress
from envbuild.envs.process import ProcessEnvironment
from envbuild.envspec import EnvSpec
from envbuild.lock.select import LockChoice
from envbuild.model import ModelSpec
from envbuild.python import choose_interpreter, describe


class LocalBackend:
    """The interpreter running envbuild, as is (no lock, no install)."""

    name: ClassVar[str] = "local"

    def can_build(self, env: EnvSpec) -> str | None:
        return None

    def plan(self, env: EnvSpec, options: BuildOptions) -> Plan:
        warnings: list[str] = []
        if options.python:
            interpreter = choose_interpreter(
                env, options.python, strict=options.strict_python, warnings=warnings
            )
        else:
            interpreter = describe(sys.executable, source="local")
        return Plan(self.name, None, interpreter, tuple(warnings))

    def build(
        self,
        plan: Plan,
        model: ModelSpec,
        env: EnvSpec,
        lock: LockChoice | None,
        options: BuildOptions,
        *,
        on_progress: Progress | None = None,
    ) -> ProcessEnvironment:
        interpreter = plan.interpreter
        prefix = Path(sys.prefix) if not options.python else Path(interpreter.path).parent.parent
        return ProcessEnvironment(
            kind=self.name,
            path=prefix,
            python=Path(interpreter.path),
            key="local",
            lock_digest=None,
            interpreter_version=interpreter.version,
            write_bytecode=False,
        )

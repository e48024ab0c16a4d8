"""The ``shared`` kind: the model runs in a named shared environment of the registry
(``--environment NAME[:VERSION]``, see ``envbuild/shared/``), as that environment is.

Nothing is locked or installed for the model. ``plan`` reads the environment and judges it
against the model (``shared.verdict``): an environment that does not satisfy the model is
refused (exit 8) unless the caller allows a mismatch, and the verdict goes into the plan's
details (every command's ``--json`` shows it). ``build`` returns the environment to run in: the
prefix's interpreter (a virtualenv envbuild built, or a registered prefix, never written to), or
containers of an image made ``FROM`` the environment's image with the runner and the model added
(``image/shared.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from envbuild.envs.base import BuildOptions, Environment, Plan, Progress
from envbuild.envspec import EnvSpec
from envbuild.errors import UsageError
from envbuild.lock.select import LockChoice
from envbuild.model import ModelSpec
from envbuild.python import Interpreter
from envbuild.shared.names import Ref, parse_ref
from envbuild.shared.record import PREFIX
from envbuild.shared.store import Registry
from envbuild.shared.use import prefix_environment, select


def _ref(options: BuildOptions) -> Ref:
    if not options.environment:
        raise UsageError(
            "the shared kind needs a shared environment: --environment NAME[:VERSION]",
            field="--environment",
        )
    return parse_ref(options.environment)


class SharedBackend:
    """A named environment of the registry, judged against the model before it is used."""

    name: ClassVar[str] = "shared"

    def can_build(self, env: EnvSpec) -> str | None:
        return "runs only in a named environment: pass --environment NAME[:VERSION]"

    def plan(self, env: EnvSpec, options: BuildOptions) -> Plan:
        selected = select(env, _ref(options), self.name, allow_mismatch=options.allow_mismatch)
        record, installed = selected.record, selected.installed
        interpreter = Interpreter(
            path=record.python or installed.executable,
            version=installed.python_version,
            implementation=installed.implementation.lower(),
            cache_tag="",
            platform=installed.platform,
            source="shared",
            reason=f"the shared environment {record.ref}",
        )
        return Plan(
            self.name,
            None,
            interpreter,
            selected.warnings,
            {"shared_environment": selected.to_dict()},
        )

    def build(
        self,
        plan: Plan,
        model: ModelSpec,
        env: EnvSpec,
        lock: LockChoice | None,
        options: BuildOptions,
        *,
        on_progress: Progress | None = None,
    ) -> Environment:
        chosen = plan.details["shared_environment"]
        record = Registry.default().get(Ref(chosen["name"], chosen["version"]))
        if record.runs_in == PREFIX:
            return prefix_environment(record, self.name, plan.interpreter.version)
        from envbuild.envs.container import ContainerEnvironment
        from envbuild.image import layout
        from envbuild.image.shared import ensure_on_environment, plan_on_environment

        result = ensure_on_environment(plan_on_environment(model, record), on_progress=on_progress)
        return ContainerEnvironment(
            kind=self.name,
            path=Path(record.prefix or layout.ENV_DIR),
            python=Path(plan.interpreter.path),
            key=result.plan.tag,
            lock_digest=record.lock_digest,
            interpreter_version=plan.interpreter.version,
            built=result.built,
            seconds=result.seconds,
            details={
                "shared": record.ref,
                "image": result.plan.tag,
                "image_id": str(result.image_id),
            },
            image=result.plan.tag,
            model_dir=layout.SHARED_MODEL_DIR,
        )

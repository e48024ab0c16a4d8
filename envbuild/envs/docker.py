"""The ``docker`` kind: the model runs in the image ``envbuild image`` builds, reused while the lock
and the model are unchanged (tag ``envbuild/<model>:<lock12>-<model12>``).

Building the image is the ``image`` package's job; running the runner in containers of it is
``container.py``'s. This backend only connects them: its target is the model's Python on
``linux/<this machine's architecture>``, so the image installs exactly what a venv of the same
model on a Linux host of that architecture installs.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from envbuild.envs.base import BuildOptions, Plan, Progress
from envbuild.envs.container import ContainerEnvironment
from envbuild.envs.registry import DEFAULT_KIND
from envbuild.envspec import EnvSpec, virtualenv_warnings
from envbuild.errors import EnvbuildError, UsageError
from envbuild.image import layout
from envbuild.lock.select import LockChoice
from envbuild.model import ModelSpec
from envbuild.python import Interpreter, looks_like_version


def _options(options: BuildOptions):  # -> ImageOptions (imported lazily: docker SDK)
    from envbuild.image.plan import ImageOptions

    if options.python and not looks_like_version(options.python):
        raise UsageError("--kind docker takes --python X.Y[.Z], not an interpreter path")
    return ImageOptions(
        python=options.python,
        offline=options.offline,
        accelerator=options.accelerator,
        torch_index_url=options.torch_index_url,
        kind=DEFAULT_KIND,  # the docker kind runs the venv image (its lock is chosen by plan())
    )


class DockerBackend:
    """The model's image, built through the Docker Engine API and reused by digest."""

    name: ClassVar[str] = "docker"

    def can_build(self, env: EnvSpec) -> str | None:
        if env.python is None:
            return "the model does not say which Python it needs (pass --python X.Y)"
        try:
            from envbuild.image.engine import client

            client()
        except EnvbuildError as exc:
            return exc.message
        return None

    def plan(self, env: EnvSpec, options: BuildOptions) -> Plan:
        from envbuild.image.plan import image_target

        target = image_target(env, _options(options))
        interpreter = Interpreter(
            path=layout.PYTHON,
            version=target.python,
            implementation="cpython",
            cache_tag="",
            platform=target.platform_names[0],
            source="image",
            reason=f"in the model's image ({target.platform_names[0]})",
        )
        return Plan(self.name, target, interpreter, tuple(virtualenv_warnings(env)))

    def build(
        self,
        plan: Plan,
        model: ModelSpec,
        env: EnvSpec,
        lock: LockChoice | None,
        options: BuildOptions,
        *,
        on_progress: Progress | None = None,
    ) -> ContainerEnvironment:
        from envbuild.image import ensure_image, plan_image

        image_plan = plan_image(model, env, _options(options), lock=lock)
        result = ensure_image(image_plan, on_progress=on_progress)
        return ContainerEnvironment(
            kind=self.name,
            path=Path(layout.ENV_DIR),
            python=Path(layout.PYTHON),
            key=image_plan.tag,
            lock_digest=image_plan.lock.digest,
            interpreter_version=image_plan.lock.python,
            built=result.built,
            seconds=result.seconds,
            details={"image": image_plan.tag, "image_id": str(result.image_id)},
            image=image_plan.tag,
            gpus=options.gpus,
        )

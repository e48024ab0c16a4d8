"""Building an image from a plan (or reusing it): the context in a private temporary folder, the
engine's classic builder, and the image's facts back."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from envbuild.__about__ import __version__
from envbuild.errors import UsageError
from envbuild.files import temporary_directory
from envbuild.image import engine
from envbuild.image.context import write_context
from envbuild.image.layout import LABEL_PREFIX
from envbuild.image.plan import ImagePlan, default_base_image
from envbuild.target import python_minor

if TYPE_CHECKING:
    import docker


@dataclass(frozen=True)
class ImageResult:
    """A built (or reused) image, or a written context."""

    plan: ImagePlan
    image_id: str | None
    size: int | None
    built: bool  # False: reused an existing image (--kind docker)
    seconds: float
    steps: int = 0
    cached_steps: int = 0
    uncached: tuple[str, ...] = ()
    log_path: Path | None = None
    context: Path | None = None
    base_python: str | None = None  # the base image's own Python, as it reports itself

    def to_dict(self) -> dict[str, object]:
        return {
            "image": self.plan.tag if self.context is None else None,
            "id": self.image_id,
            "size": self.size,
            "built": self.built,
            "seconds": round(self.seconds, 3),
            "steps": self.steps,
            "cached_steps": self.cached_steps,
            "uncached": list(self.uncached),
            "log": str(self.log_path) if self.log_path else None,
            "context": str(self.context) if self.context else None,
            "base_python": self.base_python,
            **self.plan.to_dict(),
        }


def check_base(client: docker.DockerClient, plan: ImagePlan) -> str | None:
    """The base image's own Python (asked of the image when it does not declare it), checked
    against the lock's ``X.Y`` before anything is built; None when the base is not here yet, has
    no Python (a CUDA base the build stage installs Python into), or when the environment brings
    its own Python (a conda prefix: the base's does not matter)."""
    if plan.python_install or plan.base is not None:
        return None
    found = engine.image_python(client, plan.base_image, ask=True)
    if found is not None and python_minor(found) != plan.python_minor:
        raise UsageError(
            f"the base image {plan.base_image} has Python {found}, but the model's lock is for "
            f"Python {plan.lock.python}",
            field="--base-image",
            hint=f"use a base image with Python {plan.python_minor}, e.g. "
            f"{default_base_image(plan.python_minor)}",
        )
    return found


def build_image(
    plan: ImagePlan,
    *,
    nocache: bool = False,
    on_progress: Callable[[str], None] | None = None,
) -> ImageResult:
    """Assemble the context in a temporary folder and build ``plan.tag`` with the engine."""
    started = time.monotonic()
    client = engine.client()
    base_python = check_base(client, plan)
    with temporary_directory("image") as tmp:
        context = write_context(plan, tmp / "context", on_progress=on_progress)
        built = engine.build(
            client,
            context,
            plan.tag,
            network=plan.network,
            build_args=plan.build_args,
            platform=plan.platform.name if plan.platform_given else None,
            nocache=nocache,
            on_line=on_progress,
        )
    return ImageResult(
        plan=plan,
        image_id=built.image_id,
        size=built.size,
        built=True,
        seconds=time.monotonic() - started,
        steps=built.steps,
        cached_steps=built.cached_steps,
        uncached=built.uncached,
        log_path=built.log_path,
        base_python=base_python,
    )


def ensure_image(
    plan: ImagePlan,
    *,
    nocache: bool = False,
    on_progress: Callable[[str], None] | None = None,
) -> ImageResult:
    """``--kind docker``: reuse ``plan.tag`` (``envbuild/<model>:<lock12>-<model12>``) when it
    exists and was built by this envbuild version, else build it."""
    started = time.monotonic()
    client = engine.client()
    found = engine.find_image(client, plan.tag)
    if found is not None and found.labels.get(f"{LABEL_PREFIX}.version") == __version__:
        return ImageResult(
            plan=plan,
            image_id=found.id,
            size=found.attrs.get("Size"),
            built=False,
            seconds=time.monotonic() - started,
        )
    if on_progress:
        on_progress(f"building the image {plan.tag}")
    return build_image(plan, nocache=nocache, on_progress=on_progress)

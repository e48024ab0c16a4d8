"""An image holding a shared environment and no model (``environments create --as-image``):
the lock installed into ``/opt/env`` exactly as in a model's image (the same build stage, a
test keeps the two templates' build stages equal), then the runner; no model, no server command.

Models run on it through an image made ``FROM`` it (``image/shared.py``). Tagged
``envbuild-env/NAME:VERSION`` and labelled with the environment's name, version and lock.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from envbuild.__about__ import __version__
from envbuild.image import engine, layout
from envbuild.image.dockerfile import label_instruction
from envbuild.image.plan import (
    ca_bundle,
    check_lock_is_portable,
    default_base_image,
    image_platform,
    index_build_args,
    uv_for_image,
    uv_version,
)
from envbuild.lock.pylock import PYLOCK_NAME, Lock
from envbuild.runtime_files import runtime_files
from envbuild.target import Platform
from envbuild.templates import read_template, render

TEMPLATE_NAME = "Dockerfile.environment.tmpl"
REPOSITORY = "envbuild-env"


@dataclass(frozen=True)
class EnvironmentImagePlan:
    name: str
    version: str
    lock: Lock
    base_image: str
    platform: Platform
    tag: str
    labels: dict[str, str]
    ca_cert: Path | None
    uv_binary: Path | None
    uv_version: str
    build_args: dict[str, str] = field(repr=False)  # may hold credentials: never print values
    network: str = "host"


def plan_environment_image(
    name: str,
    version: str,
    lock: Lock,
    *,
    base_image: str | None = None,
    ca_cert: Path | None = None,
    network: str = "host",
    labels: Mapping[str, str] | None = None,
) -> EnvironmentImagePlan:
    check_lock_is_portable(lock)
    platform = image_platform(None)
    uv_binary = uv_for_image(platform, "auto")
    base = base_image or default_base_image(lock.python_minor)
    ca, _ = ca_bundle(ca_cert)
    all_labels = {
        "org.opencontainers.image.title": f"{name}:{version}",
        "org.opencontainers.image.description": f"the shared environment {name}:{version}, "
        "built by envbuild",
        "org.opencontainers.image.base.name": base,
        f"{layout.LABEL_PREFIX}.version": __version__,
        f"{layout.LABEL_PREFIX}.python": lock.python,
        f"{layout.LABEL_PREFIX}.lock.digest": lock.digest,
        f"{layout.LABEL_PREFIX}.environment.name": name,
        f"{layout.LABEL_PREFIX}.environment.version": version,
        **(labels or {}),
    }
    return EnvironmentImagePlan(
        name=name,
        version=version,
        lock=lock,
        base_image=base,
        platform=platform,
        tag=f"{REPOSITORY}/{name}:{version}",
        labels=all_labels,
        ca_cert=ca,
        uv_binary=uv_binary,
        uv_version=uv_version(),
        build_args=index_build_args(uv_via_pip=uv_binary is None),
        network=network,
    )


def dockerfile_text(plan: EnvironmentImagePlan) -> str:
    values: dict[str, str | bool] = {
        **layout.template_values(),
        "envbuild_version": __version__,
        "environment": f"{plan.name}:{plan.version}",
        "base_image": plan.base_image,
        "python_minor": plan.lock.python_minor,
        "uv_version": plan.uv_version,
        "uv_binary": plan.uv_binary is not None,
        "ca_cert": plan.ca_cert is not None,
        "network": plan.network,
        "build_args": "\n".join(f"ARG {name}" for name in sorted(plan.build_args)),
        "build_arg_flags": "".join(f" --build-arg {name}" for name in sorted(plan.build_args)),
        "labels": label_instruction(plan.labels),
    }
    return render(read_template(TEMPLATE_NAME), values, name=TEMPLATE_NAME)


def _copy(source: Path, target: Path, executable: bool) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    os.chmod(target, 0o755 if executable else 0o644)


def write_environment_context(plan: EnvironmentImagePlan, folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "Dockerfile").write_text(dockerfile_text(plan), encoding="utf-8")
    (folder / PYLOCK_NAME).write_text(plan.lock.text, encoding="utf-8")
    for path in (folder / "Dockerfile", folder / PYLOCK_NAME):
        os.chmod(path, 0o644)
    for name, path in runtime_files():
        _copy(path, folder / "runtime" / name, False)
    build = folder / "build"
    build.mkdir()
    if plan.uv_binary is not None:
        _copy(plan.uv_binary, build / "uv", True)
    if plan.ca_cert is not None:
        _copy(plan.ca_cert, build / "ca.pem", False)
    for path in [folder, *folder.rglob("*")]:
        if path.is_dir():
            os.chmod(path, 0o755)
    return folder


def build_environment_image(
    plan: EnvironmentImagePlan, *, on_progress: Callable[[str], None] | None = None
) -> tuple[str, float]:
    """Build ``plan.tag``; returns (image id, seconds)."""
    from envbuild.files import temporary_directory

    started = time.monotonic()
    with temporary_directory("image") as tmp:
        context = write_environment_context(plan, tmp / "context")
        built = engine.build(
            engine.client(),
            context,
            plan.tag,
            network=plan.network,
            build_args=plan.build_args,
            on_line=on_progress,
        )
    return built.image_id, time.monotonic() - started


def remove_environment_image(tag: str) -> str | None:
    """Untag an image envbuild built for a shared environment (its layers go when nothing
    else uses them); why not, when it could not."""
    import docker

    from envbuild.errors import EnvbuildError

    try:
        engine.client().images.remove(tag, force=False, noprune=False)
    except docker.errors.ImageNotFound:
        return None
    except docker.errors.APIError as exc:
        return exc.explanation if isinstance(exc.explanation, str) else str(exc)
    except EnvbuildError as exc:  # the engine is unreachable
        return exc.message
    return None

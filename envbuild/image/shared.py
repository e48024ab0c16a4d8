"""An image of a model on a shared environment's image: ``FROM`` that image (pinned by id),
plus envbuild's runner and the model. Nothing is installed: the environment is what the
platform team registered or envbuild built, and the model runs on it as it is.

``envbuild image MODEL --environment NAME`` builds it under the tag asked for; ``predict`` and
``serve --environment NAME`` build it as ``envbuild/<model>:env-<env12>-<model12>`` (env12 from
the environment's name, version and image id) and reuse it while it exists and was built by this
envbuild version, as ``--kind docker`` does. The model goes to ``layout.SHARED_MODEL_DIR``, not
``/opt/model``, so that registering an envbuild image (which holds a model there) as a shared
environment never mixes two models' files.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from envbuild.__about__ import __version__
from envbuild.errors import EnvironmentUnsuitable, UsageError
from envbuild.files import temporary_directory
from envbuild.image import engine, layout
from envbuild.image.context import model_digest, model_files
from envbuild.image.dockerfile import label_instruction
from envbuild.image.plan import repository_name
from envbuild.model import ModelSpec
from envbuild.runtime_files import runtime_files
from envbuild.shared.record import SharedEnvironment
from envbuild.templates import read_template, render

TEMPLATE_NAME = "Dockerfile.shared.tmpl"
LABEL = layout.LABEL_PREFIX


@dataclass(frozen=True)
class SharedImagePlan:
    """Everything the image of a model on a shared environment depends on."""

    model: ModelSpec
    record: SharedEnvironment
    tag: str
    model_digest: str
    labels: dict[str, str]

    @property
    def base_image(self) -> str:
        assert self.record.image_id is not None
        return self.record.image_id

    @property
    def python(self) -> str:
        return self.record.python or "python3"

    def to_dict(self) -> dict[str, object]:
        return {
            "model": str(self.model.path),
            "tag": self.tag,
            "environment": self.record.ref,
            "base_image": self.record.image,
            "base_image_id": self.base_image,
            "python": self.record.installed.python_version,
            "model_digest": self.model_digest,
            "labels": dict(self.labels),
        }


@dataclass(frozen=True)
class SharedImageResult:
    plan: SharedImagePlan
    image_id: str | None
    size: int | None
    built: bool
    seconds: float
    log_path: Path | None = None
    context: Path | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "image": self.plan.tag if self.context is None else None,
            "id": self.image_id,
            "size": self.size,
            "built": self.built,
            "seconds": round(self.seconds, 3),
            "log": str(self.log_path) if self.log_path else None,
            "context": str(self.context) if self.context else None,
            **self.plan.to_dict(),
        }


def environment_labels(record: SharedEnvironment) -> dict[str, str]:
    """The labels naming the shared environment an image was built on (or from)."""
    labels = {
        f"{LABEL}.environment.name": record.name,
        f"{LABEL}.environment.version": record.version,
    }
    if record.image_id:
        labels[f"{LABEL}.environment.image-id"] = record.image_id
    if record.lock_digest:
        labels[f"{LABEL}.environment.lock.digest"] = record.lock_digest
    return labels


def plan_on_environment(
    model: ModelSpec,
    record: SharedEnvironment,
    *,
    tag: str | None = None,
    labels: Mapping[str, str] | None = None,
) -> SharedImagePlan:
    if record.image_id is None:
        raise UsageError(f"{record.ref} is not an image environment")
    digest = model_digest(model.path)
    env12 = hashlib.sha256(f"{record.ref}\n{record.image_id}".encode()).hexdigest()[:12]
    model12 = digest.split(":", 1)[-1][:12]
    tag = tag or f"{layout.REUSE_REPOSITORY}/{repository_name(model)}:env-{env12}-{model12}"
    version = tag.rsplit(":", 1)[1] if ":" in tag.rsplit("/", 1)[-1] else "latest"
    all_labels = {
        "org.opencontainers.image.title": repository_name(model),
        "org.opencontainers.image.description": f"MLflow model {model.path.name} served by "
        f"envbuild on the shared environment {record.ref}",
        "org.opencontainers.image.version": version,
        "org.opencontainers.image.base.name": record.image or record.image_id,
        f"{LABEL}.version": __version__,
        f"{LABEL}.python": record.installed.python_version,
        f"{LABEL}.model.digest": digest,
        **environment_labels(record),
    }
    if model.model_uuid:
        all_labels[f"{LABEL}.model.uuid"] = model.model_uuid
    if model.run_id:
        all_labels[f"{LABEL}.model.run-id"] = model.run_id
    if model.mlflow_version:
        all_labels[f"{LABEL}.model.mlflow-version"] = model.mlflow_version
    all_labels.update(labels or {})
    return SharedImagePlan(model, record, tag, digest, all_labels)


def dockerfile_text(plan: SharedImagePlan) -> str:
    python = plan.python
    values: dict[str, str | bool] = {
        "envbuild_version": __version__,
        "model_name": plan.model.path.name.replace('"', "'").replace("\n", " "),
        "environment": plan.record.ref,
        "base_image": plan.base_image,
        "workers": "1",
        "port": str(layout.PORT),
        "healthcheck": json.dumps(layout.ping_command(layout.PORT, python)),
        "entrypoint": json.dumps([python, layout.RUNNER]),
        "cmd": json.dumps(
            [
                "serve",
                "--model",
                layout.SHARED_MODEL_DIR,
                "--host",
                "0.0.0.0",
                "--port",
                str(layout.PORT),
            ]
        ),
        "runtime_dir": layout.RUNTIME_DIR,
        "model_dir": layout.SHARED_MODEL_DIR,
        "labels": label_instruction(plan.labels),
    }
    return render(read_template(TEMPLATE_NAME), values, name=TEMPLATE_NAME)


def _copy(source: Path, target: Path, executable: bool) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    os.chmod(target, 0o755 if executable else 0o644)


def write_shared_context(plan: SharedImagePlan, folder: Path) -> Path:
    """The build context (Dockerfile, runtime/, model/) in ``folder`` (absent or empty)."""
    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()):
        raise UsageError(
            "the context folder is not empty",
            path=folder,
            field="--context",
            hint="give a new or empty folder",
        )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "Dockerfile").write_text(dockerfile_text(plan), encoding="utf-8")
    os.chmod(folder / "Dockerfile", 0o644)
    for name, path in runtime_files():
        _copy(path, folder / "runtime" / name, False)
    (folder / "model").mkdir()
    for rel, real, executable in model_files(plan.model.path):
        _copy(real, folder / "model" / rel, executable)
    for path in [folder, *folder.rglob("*")]:
        if path.is_dir():
            os.chmod(path, 0o755)
    return folder


def _check_base(plan: SharedImagePlan) -> None:
    client = engine.client()
    if engine.find_image(client, plan.base_image) is None:
        raise EnvironmentUnsuitable(
            f"{plan.record.ref}: its image {plan.record.image} ({plan.base_image[:19]}) no "
            "longer exists on this Docker engine",
            hint=f"register the image again, or remove the environment: envbuild environments "
            f"remove {plan.record.ref}",
        )


def build_on_environment(
    plan: SharedImagePlan,
    *,
    nocache: bool = False,
    on_progress: Callable[[str], None] | None = None,
) -> SharedImageResult:
    started = time.monotonic()
    _check_base(plan)
    with temporary_directory("image") as tmp:
        context = write_shared_context(plan, tmp / "context")
        built = engine.build(
            engine.client(), context, plan.tag, network=None, nocache=nocache, on_line=on_progress
        )
    return SharedImageResult(
        plan, built.image_id, built.size, True, time.monotonic() - started, built.log_path
    )


def ensure_on_environment(
    plan: SharedImagePlan, *, on_progress: Callable[[str], None] | None = None
) -> SharedImageResult:
    """Reuse ``plan.tag`` when this envbuild built it, else build it."""
    started = time.monotonic()
    found = engine.find_image(engine.client(), plan.tag)
    if found is not None and found.labels.get(f"{LABEL}.version") == __version__:
        return SharedImageResult(
            plan, found.id, found.attrs.get("Size"), False, time.monotonic() - started
        )
    if on_progress:
        on_progress(f"building the image {plan.tag} on {plan.record.ref}")
    return build_on_environment(plan, on_progress=on_progress)

"""Shared environments and Docker: an image built from a shared venv's lock (its labels name the
environment), that image registered as an image environment (pinned by id; an envbuild image
holding another model), ``check`` and ``predict --environment`` in it against MLflow's own
predictions, refusal and ``--allow-mismatch``, and ``image --environment`` on an image
environment (FROM it, nothing installed).

Uses the ``python:X.Y-slim`` stand-ins of docker_images.py; everything tagged here is removed at
the end.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from tests.integration import docker_images, test_shared
from tests.integration.docker_images import host_ca_bundle, remove_image
from tests.integration.test_shared import (
    MINOR,
    SIX_NEW,
    cli,
    cli_json,
    mlflow_predictions,
    mlflow_requirement,
    row,
)

docker_engine = docker_images.docker_engine
python_slim_images = docker_images.python_slim_images
models = test_shared.models

pytestmark = [pytest.mark.integration, pytest.mark.docker, pytest.mark.network, pytest.mark.slow]


@pytest.fixture(scope="module")
def tags(docker_engine):
    made: list[str] = []
    yield made
    for tag in made:
        remove_image(tag)
    for image in docker_engine.images.list(name="envbuild/*"):
        for tag in image.tags:
            if ":env-" in tag and tag.split("/", 1)[1].split(":")[0] in ("fits", "other"):
                remove_image(tag)


@pytest.fixture(scope="module")
def teamd(python_slim_images, tmp_path_factory) -> dict:
    """``teamd:1``: a venv environment from a requirements file (MLflow, six 1.16.0)."""
    if MINOR not in python_slim_images:
        pytest.skip(f"no python:{MINOR}-slim stand-in")
    folder = tmp_path_factory.mktemp("teamd")
    (folder / "requirements.txt").write_text(f"{mlflow_requirement()}\nsix=={SIX_NEW}\n")
    code, made = cli_json(
        "environments",
        "create",
        "teamd",
        "-r",
        str(folder / "requirements.txt"),
        "--python",
        MINOR,
    )
    assert code == 0, made
    return {**made, "requirements": folder / "requirements.txt"}


@pytest.fixture(scope="module")
def curated(models, python_slim_images, tags, teamd) -> str:
    """An image of the fitting model built from ``teamd``'s lock, registered as the image
    environment ``curated:1``."""
    made = teamd
    tag = f"envbuild-test/shared-curated:{uuid.uuid4().hex[:12]}"
    tags.append(tag)
    code, built = cli_json(
        "image",
        str(models["fits"]),
        "--environment",
        "teamd",
        "-t",
        tag,
        "--base-image",
        python_slim_images[MINOR],
        "--ca-cert",
        str(host_ca_bundle()),
    )
    assert code == 0, built
    assert built["lock_source"] == "environment"
    assert built["lock_digest"] == made["lock_digest"], "the image installs the environment's lock"
    labels = docker_images.client().images.get(tag).labels
    assert labels["envbuild.environment.name"] == "teamd"
    assert labels["envbuild.environment.version"] == "1"
    assert labels["envbuild.environment.lock.digest"] == made["lock_digest"]
    code, registered = cli_json("environments", "create", "curated", "--image", tag)
    assert code == 0, registered
    assert registered["runs_in"] == "image" and registered["managed"] is False
    assert registered["image_id"] == docker_images.client().images.get(tag).id
    return "curated"


def test_check_and_predict_in_an_image_environment(curated: str, models: dict) -> None:
    code, shown = cli_json("environments", "show", curated)
    names = {d["name"].lower(): d["version"] for d in shown["installed"]["distributions"]}
    assert names["six"] == SIX_NEW and shown["installed"]["python_version"].startswith(MINOR)

    code, fits = cli_json("check", str(models["fits"]), "--environment", curated)
    assert code == 0 and row(fits, "six")["status"] == "ok"
    code, other = cli_json("check", str(models["other"]), "--environment", curated)
    assert code == 8 and row(other, "six")["status"] == "version"

    proc = cli("predict", str(models["fits"]), "--environment", curated)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["predictions"] == mlflow_predictions(models["fits"])
    refused = cli("predict", str(models["other"]), "--environment", curated)
    assert refused.returncode == 8 and "does not satisfy the model" in refused.stderr
    code, allowed = cli_json(
        "predict", str(models["other"]), "--environment", curated, "--allow-mismatch"
    )
    assert code == 0, allowed
    assert allowed["predictions"] == mlflow_predictions(models["other"])
    assert allowed["environment"]["image"].startswith("envbuild/other:env-")


def test_image_on_an_image_environment_adds_only_the_runner_and_the_model(
    curated: str, models: dict, tags: list, tmp_path: Path
) -> None:
    tag = f"envbuild-test/shared-on-curated:{uuid.uuid4().hex[:12]}"
    tags.append(tag)
    code, built = cli_json(
        "image", str(models["other"]), "--environment", curated, "--allow-mismatch", "-t", tag
    )
    assert code == 0, built
    image = docker_images.client().images.get(tag)
    base = docker_images.client().images.get(built["base_image_id"])
    assert image.labels["envbuild.environment.name"] == "curated"
    assert image.labels["envbuild.environment.image-id"] == base.id
    added = len(image.history()) - len(base.history())
    assert 0 < added <= 12, "FROM the environment's image: no install step"
    example = "/opt/envbuild/model/serving_input_example.json"
    out = docker_images.client().containers.run(  # its entrypoint (the runner), with /bin/sh
        tag,  # around it only for a final newline (the engine's log drops a last partial line)
        [
            "-c",
            f'"$@" predict --model /opt/envbuild/model --input {example}; echo',
            "sh",
            *image.attrs["Config"]["Entrypoint"],
        ],
        entrypoint=["/bin/sh"],
        network_mode="none",
        remove=True,
    )
    assert json.loads(out)["predictions"] == mlflow_predictions(models["other"])
    context = tmp_path / "ctx"
    code, _ = cli_json(
        "image", str(models["fits"]), "--environment", curated, "--context", str(context)
    )
    assert code == 0 and (context / "Dockerfile").read_text().startswith("# Rendered by envbuild")
    assert f"FROM {base.id}" in (context / "Dockerfile").read_text()
    assert (context / "model" / "MLmodel").is_file() and (
        context / "runtime" / "runner.py"
    ).is_file()


def test_a_removed_image_is_one_line_exit_8(
    models: dict, python_slim_images, tags, tmp_path: Path
) -> None:
    tag = f"envbuild-test/shared-gone:{uuid.uuid4().hex[:12]}"
    tags.append(tag)
    base = python_slim_images[MINOR]
    docker_images.build_image(tmp_path, tag, dockerfile=f"FROM {base}\nLABEL test.id={tag}\n")
    code, made = cli_json("environments", "create", "gone", "--image", tag)
    assert code == 0, made
    # a stand-in has no MLflow: the verdict says so, and a vanished image is exit 8
    code, verdict = cli_json("check", str(models["fits"]), "--environment", "gone")
    assert code == 8 and row(verdict, "mlflow")["status"] == "missing"
    docker_images.client().images.remove(tag)
    proc = cli("predict", str(models["fits"]), "--environment", "gone", "--allow-mismatch")
    assert proc.returncode == 8
    assert "its image" in proc.stderr and "no longer exists" in proc.stderr


def test_an_environment_built_as_an_image(models, python_slim_images, teamd, tags) -> None:
    """The same requirements as ``teamd``, for the same Python, built as an image: the same
    lock; the image serves the model and goes with its version."""
    import docker

    python = teamd["installed"]["python_version"]
    code, made = cli_json(
        "environments",
        "create",
        "baked",
        "-r",
        str(teamd["requirements"]),
        "--as-image",
        "--python",
        python,
        "--base-image",
        python_slim_images[MINOR],
        "--ca-cert",
        str(host_ca_bundle()),
    )
    assert code == 0, made
    assert (made["runs_in"], made["managed"], made["image"]) == (
        "image",
        True,
        "envbuild-env/baked:1",
    )
    assert made["lock_digest"] == teamd["lock_digest"]
    labels = docker_images.client().images.get(made["image_id"]).labels
    assert labels["envbuild.environment.name"] == "baked"
    assert labels["envbuild.lock.digest"] == made["lock_digest"]
    code, verdict = cli_json("check", str(models["fits"]), "--environment", "baked")
    assert code == 0, verdict
    proc = cli("predict", str(models["fits"]), "--environment", "baked")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["predictions"] == mlflow_predictions(models["fits"])
    code, removed = cli_json("environments", "remove", "baked")
    assert code == 0 and removed == {"removed": ["baked:1"]}
    with pytest.raises(docker.errors.ImageNotFound):
        docker_images.client().images.get("envbuild-env/baked:1")

"""Model URIs through the commands, end to end, against the session's real ``mlflow server``.

What a user sees: ``predict`` on ``runs:/``, ``models:/NAME/1`` and ``models:/NAME@champion`` gives
MLflow's own predictions (``mlflow.pyfunc.load_model(uri).predict``); moving the alias moves the
next ``predict``, and ``--json`` says which version ran; ``inspect``/``env``/``reproduce`` (its
report and JUnit) and the image name the resolved version; ``lock`` never writes into the
downloaded copy; the errors are one line (one JSON object with ``--json``) with exit 2 or 3.

The registered models are the session's (``registry``, ``captured``: see mlflow_server.py); the
test that moves an alias registers a name of its own. Every CLI run is a subprocess sharing the
session's envbuild cache, so the models' environments are built once.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.integration import docker_images
from tests.integration.docker_images import host_ca_bundle, remove_image
from tests.integration.mlflow_server import (
    CAPTURED,
    NAME,
    Logged,
    Registry,
    free_port,
    iris,
    mlflow_predictions,
    tracking_to,
)

pytestmark = [pytest.mark.integration, pytest.mark.network, pytest.mark.slow]


@pytest.fixture(scope="module")
def iris_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """All 150 rows: versions 1 (C=1) and 2 (C=0.01) predict differently on them."""
    x, _ = iris()
    path = tmp_path_factory.mktemp("inputs") / "iris.csv"
    x.to_csv(path, index=False)
    return path


def cli(*args: str, url: str | None = None) -> subprocess.CompletedProcess:
    tracking = ("--tracking-uri", url) if url else ()
    return run_cli(*args, *tracking)


def cli_json(*args: str, url: str | None = None) -> tuple[int, dict]:
    proc = cli(*args, "--json", url=url)
    return proc.returncode, json.loads(proc.stdout)  # exactly one JSON document, errors too


def predict_json(uri: str, url: str, data: Path) -> dict:
    code, result = cli_json("predict", uri, "-i", str(data), url=url)
    assert code == 0, result
    return result


def digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


# -- predictions -----------------------------------------------------------------------------


def test_predict_by_run_version_and_alias_equals_mlflow(registry: Registry, iris_csv: Path):
    run_uri = f"runs:/{registry.v1.run_id}/model"
    cases = {run_uri: None, f"models:/{NAME}/1": "1", f"models:/{NAME}@champion": "1"}
    for uri, version in cases.items():
        result = predict_json(uri, registry.url, iris_csv)
        assert result["predictions"] == mlflow_predictions(uri, registry.url), uri
        source = result["source"]
        assert (source["uri"], source["version"]) == (uri, version)
        assert source["run_id"] == registry.v1.run_id
        assert source["tracking_uri"] == registry.url
    assert source["alias"] == "champion" and source["moving"]
    assert source["resolved_uri"] == f"models:/{NAME}/1"


def test_moving_the_alias_moves_the_next_predict(registry: Registry, iris_csv: Path):
    import mlflow
    from mlflow import MlflowClient

    name = "iris-cli-moving"
    with tracking_to(registry.url):
        for logged in (registry.v1, registry.v2):
            mlflow.register_model(f"runs:/{logged.run_id}/model", name)
    client = MlflowClient(registry.url, registry.url)
    client.set_registered_model_alias(name, "champion", "1")
    before = predict_json(f"models:/{name}@champion", registry.url, iris_csv)

    client.set_registered_model_alias(name, "champion", "2")
    after = predict_json(f"models:/{name}@champion", registry.url, iris_csv)

    assert (before["source"]["version"], after["source"]["version"]) == ("1", "2")
    assert after["source"]["run_id"] == registry.v2.run_id
    assert before["predictions"] == mlflow_predictions(f"models:/{name}/1", registry.url)
    assert after["predictions"] == mlflow_predictions(f"models:/{name}/2", registry.url)
    assert before["predictions"] != after["predictions"]


# -- provenance ------------------------------------------------------------------------------


def test_inspect_and_env_name_the_resolved_version(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
):
    """The tracking server from MLFLOW_TRACKING_URI, as a CI job would set it."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry.url)
    uri = f"models:/{NAME}@champion"
    code, inspected = cli_json("inspect", uri)
    assert code == 0, inspected
    assert inspected["run_id"] == registry.v1.run_id  # read from the downloaded MLmodel
    assert inspected["source"] == {
        "uri": uri,
        "kind": "model-version",
        "resolved_uri": f"models:/{NAME}/1",
        "registered_name": NAME,
        "version": "1",
        "alias": "champion",
        "stage": None,
        "moving": True,
        "run_id": registry.v1.run_id,
        "artifact_path": None,
        "model_id": registry.v1.model_id,
        "tracking_uri": registry.url,
        "registry_uri": None,
    }
    text = cli("inspect", uri).stdout.splitlines()
    assert text[1:4] == [
        f"source       {uri} -> models:/{NAME}/1  (resolved now)",
        f"registered   {NAME} version 1",
        f"tracking     {registry.url}",
    ]

    code, env = cli_json("env", uri)
    assert code == 0, env
    assert env["source"] == inspected["source"]
    assert env["model"] == inspected["path"]


def test_lock_on_a_uri_writes_into_the_cache_and_leaves_the_download_alone(registry: Registry):
    uri = f"models:/{NAME}/2"
    _, inspected = cli_json("inspect", uri, url=registry.url)
    folder = Path(inspected["path"])
    before = digests(folder)

    code, locked = cli_json("lock", uri, url=registry.url)
    assert code == 0, locked
    assert Path(locked["path"]) == folder.parent / "pylock.toml"  # the cache entry, not model/
    assert Path(locked["path"]).is_file()
    assert locked["source"]["version"] == "2"
    assert digests(folder) == before

    again = cli("lock", uri, url=registry.url)
    assert again.returncode == 0, again.stderr
    assert "is a downloaded copy, kept read-only: the lock is in envbuild's cache" in again.stdout
    check = cli("lock", uri, "--check", url=registry.url)
    assert check.returncode == 0, check.stderr
    assert digests(folder) == before


def test_reproduce_a_registry_version_report_and_junit_carry_the_provenance(
    captured: Logged, registry: Registry, tmp_path: Path
):
    """A model logged inside envbuild.capture() carries its lock and expected output: every
    step runs, from the registry alone."""
    uri = f"models:/{CAPTURED}/1"
    junit = tmp_path / "report.xml"
    code, report = cli_json("reproduce", uri, "--junit", str(junit), url=registry.url)
    assert code == 0, report
    assert report["result"] == "reproduced"
    assert [s["status"] for s in report["steps"]] == ["passed"] * 5
    assert report["model"] == uri
    assert report["source"]["registered_name"] == CAPTURED
    assert report["source"]["version"] == "1"
    assert report["source"]["run_id"] == captured.run_id

    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None
    assert suite.get("name") == f"envbuild reproduce {uri}"
    properties = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert properties["envbuild.model.version"] == "1"
    assert properties["envbuild.model.registered-name"] == CAPTURED
    assert properties["envbuild.model.run-id"] == captured.run_id
    assert properties["envbuild.model.tracking-uri"] == registry.url
    assert "envbuild.model.version: 1" in (suite.findtext("system-out") or "")
    assert {c.get("classname") for c in suite.iter("testcase")} == {
        f"envbuild.reproduce.{CAPTURED}-v1"
    }

    text = cli("reproduce", f"models:/{CAPTURED}@champion", url=registry.url)
    assert text.returncode == 0, text.stdout + text.stderr
    lines = text.stdout.splitlines()
    assert lines[0] == f"reproduce models:/{CAPTURED}@champion (venv)"
    assert lines[1] == f"  source       models:/{CAPTURED}@champion -> {uri}  (resolved now)"
    assert lines[-1] == "  result: reproduced"


def test_image_context_labels_name_the_version_and_the_reuse_tag_is_the_versions(
    captured: Logged, registry: Registry, tmp_path: Path
):
    """The alias and the version it names give one default tag (lock + model digest): the
    provenance is in the labels only."""
    plans = {}
    for uri in (f"models:/{CAPTURED}@champion", f"models:/{CAPTURED}/1"):
        context = tmp_path / uri.rsplit("/", 1)[-1]
        code, plans[uri] = cli_json("image", uri, "--context", str(context), url=registry.url)
        assert code == 0, plans[uri]
        dockerfile = (context / "Dockerfile").read_text()
        assert f'"envbuild.model.uri"="{uri}"' in dockerfile
        assert '"envbuild.model.version"="1"' in dockerfile
    alias, version = plans.values()
    assert alias["tag"] == version["tag"]
    assert alias["lock_source"] == "model"  # the lock logged with the model
    labels = alias["labels"]
    assert labels["envbuild.model.uri"] == f"models:/{CAPTURED}@champion"
    assert labels["envbuild.model.version"] == "1"
    assert labels["envbuild.model.registered-name"] == CAPTURED
    assert labels["envbuild.model.run-id"] == captured.run_id
    assert labels["envbuild.model.tracking-uri"] == registry.url
    assert {k: v for k, v in labels.items() if k != "envbuild.model.uri"} == {
        k: v for k, v in version["labels"].items() if k != "envbuild.model.uri"
    }


# -- errors ----------------------------------------------------------------------------------


def test_unknown_alias_lists_the_aliases(registry: Registry):
    uri = f"models:/{NAME}@nope"
    code, error = cli_json("predict", uri, url=registry.url)
    assert code == 2
    assert error["error"] == "ModelSourceError"
    assert error["message"].startswith(f"{uri}: ")
    assert "has no alias 'nope' (aliases: champion -> 1)" in error["message"]

    proc = cli("inspect", uri, url=registry.url)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.splitlines()[0] == f"error: {error['message']}"
    assert "Traceback" not in proc.stderr


def test_an_unreachable_server_is_one_line_naming_the_host_exit_3(registry: Registry):
    """Nothing listens on the port (as after the server stopped): exit 3 in about two seconds,
    the host named, the credentials of the tracking URI nowhere."""
    host = f"127.0.0.1:{free_port()}"
    tracking = f"http://alice:s3cret@{host}"
    uri = f"models:/{NAME}@champion"
    proc = cli("predict", uri, url=tracking)
    assert proc.returncode == 3
    assert proc.stderr.splitlines() == [
        f"error: {uri}: cannot reach http://{host}: connection refused",
        *[line for line in proc.stderr.splitlines()[1:] if line.startswith("hint: ")],
    ]
    code, error = cli_json("reproduce", uri, url=tracking)
    assert code == 3
    assert error["error"] == "SourceUnreachable" and error["exit_code"] == 3
    assert "s3cret" not in proc.stderr + json.dumps(error)


def test_capture_write_on_a_registry_model_is_refused(registry: Registry):
    uri = f"models:/{NAME}/1"
    code, error = cli_json("capture", uri, "--write", url=registry.url)
    assert code == 2
    assert error["message"] == (
        f"{uri}: capture --write rewrites the model's files, and this model is a downloaded "
        "copy, kept read-only"
    )


# -- the image (Docker) ----------------------------------------------------------------------

docker_engine = docker_images.docker_engine
python_slim_images = docker_images.python_slim_images  # the python:X.Y-slim stand-ins


@pytest.mark.docker
def test_image_of_a_registry_alias_serves_that_version_and_names_it(
    captured: Logged, registry: Registry, python_slim_images: dict[str, str]
):
    """``envbuild image models:/NAME@champion -t TAG``: built from the lock logged with the
    model; its labels name the version the alias resolved to; it predicts what MLflow does."""
    import time

    from tests.integration.test_image import predict_example_in

    tag = f"envbuild-test/sourcewire-scorer:{uuid.uuid4().hex[:12]}"
    uri = f"models:/{CAPTURED}@champion"
    started = time.time()
    try:
        code, result = cli_json(
            "image", uri, "-t", tag, "--ca-cert", str(host_ca_bundle()), url=registry.url
        )
        assert code == 0, result
        assert result["source"]["version"] == "1"
        labels = docker_images.client().images.get(tag).labels
        assert labels["envbuild.model.uri"] == uri
        assert labels["envbuild.model.registered-name"] == CAPTURED
        assert labels["envbuild.model.version"] == "1"
        assert labels["envbuild.model.run-id"] == captured.run_id
        assert labels["envbuild.model.tracking-uri"] == registry.url
        assert labels["org.opencontainers.image.version"] == tag.rsplit(":", 1)[1]

        x, _ = iris()
        want = mlflow_predictions(f"models:/{CAPTURED}/1", registry.url, x.head(3))
        assert predict_example_in(tag)["predictions"] == want
    finally:
        remove_image(tag)
        remove_build_stages(since=started)


def remove_build_stages(since: float) -> None:
    """The build-stage images this test's build left in the layer cache (~1 GB per lock)."""
    import calendar
    import contextlib
    import time

    import docker

    client = docker_images.client()
    for image in client.images.list(filters={"label": "envbuild.stage=build", "dangling": True}):
        created = calendar.timegm(time.strptime(image.attrs["Created"][:19], "%Y-%m-%dT%H:%M:%S"))
        if created >= since - 5:
            with contextlib.suppress(docker.errors.APIError):
                client.images.remove(image.id)

"""Model sources against a real ``mlflow server``: runs:/, models:/ (version, alias, latest, id),
mlflow-artifacts:/, the model cache, and every error a user can meet.

Models are logged and registered with the real MLflow client; envbuild resolves and downloads them
through :func:`envbuild.sources.open_model`. Each test that counts downloads uses its own model
cache (``ENVBUILD_CACHE_DIR``), so what it observes does not depend on the order of tests.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from envbuild.errors import EnvbuildError, MissingExtra, ModelSourceError, SourceUnreachable
from envbuild.model import load_model
from envbuild.sources import open_model
from tests.conftest import REPO
from tests.integration.mlflow_server import (
    NAME,
    MlflowServer,
    Registry,
    iris,
    log_iris,
    mlflow_predictions,
    start_server,
    tracking_to,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("ENVBUILD_CACHE_DIR", str(cache))
    return cache


def predictions(folder: Path) -> list:
    import mlflow.pyfunc

    x, _ = iris()
    return mlflow.pyfunc.load_model(str(folder)).predict(x).tolist()


def server_artifacts(server: MlflowServer, model_id: str) -> Path:
    """Where the server keeps a logged model's files (its artifact destination)."""
    from mlflow import MlflowClient

    location = MlflowClient(server.url).get_logged_model(model_id).artifact_location
    assert location.startswith("mlflow-artifacts:/"), location
    return server.artifacts / location[len("mlflow-artifacts:/") :]


def one_line(error: EnvbuildError) -> str:
    text = error.format()
    assert "\n" not in text
    return text


# -- resolving -----------------------------------------------------------------------------------


def test_runs_uri_gives_the_run_model_and_its_provenance(registry: Registry, own_cache: Path):
    uri = f"runs:/{registry.v1.run_id}/model"
    source = open_model(uri, tracking_uri=registry.url)

    assert source.read_only and source.downloaded
    assert source.path.is_relative_to(own_cache / "models")
    spec = load_model(source.path)
    assert spec.run_id == registry.v1.run_id
    assert predictions(source.path) == mlflow_predictions(uri, registry.url)
    assert source.provenance.to_dict() == {
        "uri": uri,
        "kind": "run",
        "resolved_uri": uri,
        "registered_name": None,
        "version": None,
        "alias": None,
        "stage": None,
        "moving": False,
        "run_id": registry.v1.run_id,
        "artifact_path": "model",
        "model_id": None,
        "tracking_uri": registry.url,
        "registry_uri": None,
    }
    assert source.provenance.labels() == {
        "envbuild.model.uri": uri,
        "envbuild.model.run-id": registry.v1.run_id,
        "envbuild.model.tracking-uri": registry.url,
    }
    # downloaded files are read-only for envbuild
    assert all(not (p.stat().st_mode & 0o222) for p in source.path.rglob("*") if p.is_file())


def test_registry_version_alias_and_latest(registry: Registry, own_cache: Path):
    by_version = open_model(f"models:/{NAME}/1", tracking_uri=registry.url)
    by_alias = open_model(f"models:/{NAME}@champion", tracking_uri=registry.url)
    latest = open_model(f"models:/{NAME}/latest", tracking_uri=registry.url)

    assert by_version.provenance.version == "1" and by_version.downloaded
    assert by_version.provenance.registered_name == NAME
    assert by_version.provenance.run_id == registry.v1.run_id
    assert by_version.provenance.model_id == registry.v1.model_id
    assert not by_version.provenance.moving
    assert load_model(by_version.path).run_id == registry.v1.run_id

    # the alias is resolved to version 1, which is already in the cache
    assert by_alias.path == by_version.path and not by_alias.downloaded
    assert (by_alias.provenance.alias, by_alias.provenance.version) == ("champion", "1")
    assert by_alias.provenance.resolved_uri == f"models:/{NAME}/1"
    assert by_alias.provenance.moving
    assert by_alias.provenance.labels()["envbuild.model.version"] == "1"
    assert by_alias.provenance.labels()["envbuild.model.uri"] == f"models:/{NAME}@champion"

    assert latest.provenance.version == "2" and latest.downloaded
    assert load_model(latest.path).run_id == registry.v2.run_id
    assert predictions(latest.path) == mlflow_predictions(f"models:/{NAME}/2", registry.url)
    assert predictions(by_version.path) != predictions(latest.path)


def test_logged_model_id_and_mlflow_artifacts_uri(registry: Registry, own_cache: Path):
    from mlflow import MlflowClient

    model_id = registry.v2.model_id
    assert model_id is not None
    by_id = open_model(f"models:/{model_id}", tracking_uri=registry.url)
    assert by_id.provenance.kind == "logged-model"
    assert (by_id.provenance.model_id, by_id.provenance.run_id) == (model_id, registry.v2.run_id)
    assert load_model(by_id.path).run_id == registry.v2.run_id

    location = MlflowClient(registry.url).get_logged_model(model_id).artifact_location
    by_location = open_model(location, tracking_uri=registry.url)
    assert by_location.provenance.kind == "artifacts"
    assert by_location.provenance.tracking_uri == registry.url
    assert (by_location.path / "MLmodel").read_bytes() == (by_id.path / "MLmodel").read_bytes()


def test_tracking_uri_from_mlflow_environment_variable(
    registry: Registry, own_cache: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry.url)
    source = open_model(f"models:/{NAME}@champion")
    assert source.provenance.version == "1"
    assert source.provenance.tracking_uri == registry.url


def test_a_second_use_downloads_nothing(
    registry: Registry, own_cache: Path, monkeypatch: pytest.MonkeyPatch
):
    """After the first download the server's copy is deleted: every later use still works,
    so nothing was downloaded again (and a fresh cache proves the copy is really gone)."""
    from mlflow import MlflowClient

    with tracking_to(registry.url):
        logged = log_iris(0.5, "iris-once")
    client = MlflowClient(registry.url, registry.url)
    client.set_registered_model_alias("iris-once", "prod", "1")
    uris = [f"runs:/{logged.run_id}/model", "models:/iris-once/1", "models:/iris-once@prod"]
    first = [open_model(uri, tracking_uri=registry.url) for uri in uris]
    assert [s.downloaded for s in first] == [True, True, False]
    marker = json.loads((first[0].cache_entry / ".envbuild-complete.json").read_text())

    assert logged.model_id is not None
    shutil.rmtree(server_artifacts(registry.server, logged.model_id))

    again = [open_model(uri, tracking_uri=registry.url) for uri in uris]
    assert [s.downloaded for s in again] == [False, False, False]
    assert [s.path for s in again] == [s.path for s in first]
    assert json.loads((again[0].cache_entry / ".envbuild-complete.json").read_text()) == marker
    assert load_model(again[1].path).run_id == logged.run_id
    monkeypatch.setenv("ENVBUILD_CACHE_DIR", str(own_cache.parent / "fresh"))
    with pytest.raises(ModelSourceError):  # a fresh cache must download, and now cannot
        open_model(uris[0], tracking_uri=registry.url)


def test_moving_the_alias_moves_the_next_resolution(registry: Registry, own_cache: Path):
    import mlflow
    from mlflow import MlflowClient

    with tracking_to(registry.url):
        for logged in (registry.v1, registry.v2):
            mlflow.register_model(f"runs:/{logged.run_id}/model", "iris-moving")
    client = MlflowClient(registry.url, registry.url)
    client.set_registered_model_alias("iris-moving", "champion", "1")
    before = open_model("models:/iris-moving@champion", tracking_uri=registry.url)

    client.set_registered_model_alias("iris-moving", "champion", "2")
    after = open_model("models:/iris-moving@champion", tracking_uri=registry.url)

    assert (before.provenance.version, after.provenance.version) == ("1", "2")
    assert after.path != before.path and after.downloaded
    assert load_model(before.path).run_id == registry.v1.run_id
    assert load_model(after.path).run_id == registry.v2.run_id


# -- errors --------------------------------------------------------------------------------------


def test_unknown_run_model_version_and_alias_name_what_exists(registry: Registry, own_cache: Path):
    cases = {
        "runs:/0123456789abcdef0123456789abcdef/model": "no run 0123456789abcdef",
        "models:/no-such-model/1": f"no registered model 'no-such-model' on {registry.url}",
        f"models:/{NAME}/9": f"registered model '{NAME}' has no version 9 (versions: 1, 2)",
        f"models:/{NAME}@nope": f"'{NAME}' has no alias 'nope' (aliases: champion -> 1)",
        "models:/m-0123456789abcdef0123456789abcdef": "no logged model m-0123456789abcdef",
    }
    for uri, expected in cases.items():
        with pytest.raises(ModelSourceError) as caught:
            open_model(uri, tracking_uri=registry.url)
        message = one_line(caught.value)
        assert message.startswith(uri + ": ") and expected in message, message
        assert caught.value.exit_code == 2
    with pytest.raises(ModelSourceError) as caught:
        open_model("models:/no-such-model/1", tracking_uri=registry.url)
    assert NAME in one_line(caught.value)  # the models that do exist are listed
    assert not (own_cache / "models").exists()  # nothing was locked, started or left


def test_an_artifact_path_without_mlmodel_is_one_line(registry: Registry, own_cache: Path):
    import mlflow

    with tracking_to(registry.url), mlflow.start_run() as run:
        mlflow.log_text("not a model", "notes/readme.txt")
    with pytest.raises(ModelSourceError) as caught:
        open_model(f"runs:/{run.info.run_id}/notes", tracking_uri=registry.url)
    assert one_line(caught.value).endswith("no MLmodel file at this path")
    assert caught.value.hint == "it holds: readme.txt"

    with pytest.raises(ModelSourceError) as caught:
        open_model(f"runs:/{registry.v1.run_id}/nope", tracking_uri=registry.url)
    assert one_line(caught.value).endswith("there is nothing at this path")
    assert f"runs:/{registry.v1.run_id}/model" in (caught.value.hint or "")


def test_artifact_store_without_its_library_names_the_package(
    own_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """An artifact store of its own needs no tracking server configured."""
    pytest.importorskip("mlflow")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    try:
        import boto3  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("boto3 is installed")
    with pytest.raises(MissingExtra) as caught:
        open_model("s3://bucket/models/iris")
    assert one_line(caught.value) == (
        "s3://bucket/models/iris: reading it needs the Python package boto3, which is not installed"
    )
    assert caught.value.exit_code == 2


def test_a_stopped_server_is_one_line_naming_the_host(tmp_path: Path, own_cache: Path):
    """Cached immutable references keep working; what needs the server fails at once (exit 3),
    naming the host and never the credentials in the tracking URI."""
    server = start_server(tmp_path / "server")
    try:
        with tracking_to(server.url):
            logged = log_iris(1.0, "iris-offline")
        cached = open_model(f"runs:/{logged.run_id}/model", tracking_uri=server.url)
    finally:
        server.stop()
    with_credentials = server.url.replace("://", "://alice:s3cret-token@")

    again = open_model(f"runs:/{logged.run_id}/model", tracking_uri=with_credentials)
    assert again.path == cached.path and not again.downloaded

    for uri in ("models:/iris-offline@champion", "runs:/0123456789abcdef0123456789abcdef/model"):
        with pytest.raises(SourceUnreachable) as caught:
            open_model(uri, tracking_uri=with_credentials)
        message = one_line(caught.value)
        assert message == f"{uri}: cannot reach {server.url}: connection refused", message
        assert caught.value.exit_code == 3
        assert "s3cret" not in message + (caught.value.hint or "")


# -- crash safety --------------------------------------------------------------------------------

CHILD = """
import sys
from envbuild.sources import open_model
open_model(sys.argv[1], tracking_uri=sys.argv[2])
"""


def test_kill_9_during_a_download_leaves_nothing_that_is_used(
    registry: Registry, tmp_path: Path, own_cache: Path
):
    import mlflow
    import mlflow.sklearn
    from sklearn.linear_model import LogisticRegression

    x, y = iris()
    folder = tmp_path / "big-model"
    mlflow.sklearn.save_model(
        LogisticRegression(max_iter=500).fit(x, y), str(folder), pip_requirements=["scikit-learn"]
    )
    size = 256 * 1024 * 1024  # long enough a download to be caught halfway
    with (folder / "weights.bin").open("wb") as handle:
        handle.truncate(size)
    with tracking_to(registry.url), mlflow.start_run() as run:
        mlflow.log_artifacts(str(folder), "big")
    (folder / "weights.bin").unlink()
    uri = f"runs:/{run.info.run_id}/big"

    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, uri, registry.url],
        env=dict(os.environ, ENVBUILD_CACHE_DIR=str(own_cache)),
        cwd=REPO,
    )
    models = own_cache / "models"
    deadline = time.monotonic() + 120
    partial = None
    while partial is None and child.poll() is None and time.monotonic() < deadline:
        for file in models.glob(".tmp-*/download/**/weights.bin"):
            if 0 < file.stat().st_size < size:
                partial = file
        time.sleep(0.005)  # polling interval while waiting for the condition above
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert partial is not None, "the download finished or never started before the kill"

    finished = [p for p in models.iterdir() if p.is_dir() and not p.name.startswith(".tmp-")]
    assert finished == []  # a killed download is never an entry

    source = open_model(uri, tracking_uri=registry.url)
    assert source.downloaded
    assert (source.path / "weights.bin").stat().st_size == size
    assert load_model(source.path).flavor_names == ["python_function", "sklearn"]
    assert list(models.glob(".tmp-*")) == []  # the leftover was removed by the rerun
    # 512 MB less on disk: the server's copy and the cache's
    stored = run.info.artifact_uri[len("mlflow-artifacts:/") :]
    shutil.rmtree(registry.server.artifacts / stored, ignore_errors=True)
    shutil.rmtree(own_cache, ignore_errors=True)


# -- without MLflow ------------------------------------------------------------------------------

NO_MLFLOW = """
import json, sys
from envbuild.errors import EnvbuildError
from envbuild.sources import open_model
try:
    import mlflow
except ImportError:
    has_mlflow = False
else:
    has_mlflow = True
try:
    open_model("models:/iris/1", tracking_uri="http://127.0.0.1:9")
except EnvbuildError as exc:
    error = {"message": exc.format(), "hint": exc.hint, "exit_code": int(exc.exit_code)}
folder = open_model(sys.argv[1])
print(json.dumps({"has_mlflow": has_mlflow, "error": error, "folder": str(folder.path),
                  "loaded": "mlflow" in sys.modules}))
"""


@pytest.mark.network
def test_without_mlflow_a_uri_says_what_to_install(tmp_path: Path):
    from envbuild.proc import uv_bin

    venv = tmp_path / "venv"
    env = dict(os.environ, UV_PYTHON_DOWNLOADS="never", VIRTUAL_ENV=str(venv))
    subprocess.run(
        [uv_bin(), "venv", "--quiet", "--python", sys.executable, str(venv)], check=True, env=env
    )
    python = venv / "bin" / "python"
    subprocess.run(
        [uv_bin(), "pip", "install", "--quiet", "--python", str(python), "-e", str(REPO)],
        check=True,
        env=env,
    )
    example = REPO / "examples" / "sklearn-iris"
    done = subprocess.run(
        [str(python), "-c", NO_MLFLOW, str(example)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["has_mlflow"] is False
    assert report["error"] == {
        "message": "models:/iris/1: reading a model from MLflow needs MLflow, which is not "
        "installed (ModuleNotFoundError: No module named 'mlflow'): install envbuild[mlflow]",
        "hint": "pip install 'envbuild[mlflow]'",
        "exit_code": 2,
    }
    assert report["folder"] == str(example)
    inspected = subprocess.run(
        [str(venv / "bin" / "envbuild"), "inspect", str(example), "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert inspected.returncode == 0, inspected.stderr
    assert json.loads(inspected.stdout)["flavors"]
    # every command taking MODEL: a URI is the same one line, exit 2 (one object with --json)
    for command in ("inspect", "predict"):
        done = subprocess.run(
            [str(venv / "bin" / "envbuild"), command, "models:/iris/1", "--json"],
            capture_output=True,
            text=True,
            env=dict(env, MLFLOW_TRACKING_URI="http://127.0.0.1:9"),
            timeout=120,
        )
        assert done.returncode == 2, done.stdout + done.stderr
        error = json.loads(done.stdout)
        assert (error["error"], error["message"]) == ("MissingExtra", report["error"]["message"])


def test_no_tracking_server_configured_creates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, own_cache: Path
):
    """MLflow's default store (./mlflow.db) is used only when it exists: otherwise MLflow would
    create an empty one in the current folder and then report the model as unknown."""
    pytest.importorskip("mlflow")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    with pytest.raises(ModelSourceError) as caught:
        open_model("models:/iris/1")
    assert one_line(caught.value) == "models:/iris/1: no MLflow tracking server is configured"
    assert caught.value.hint == "pass --tracking-uri URI or set MLFLOW_TRACKING_URI"
    assert list(work.iterdir()) == []

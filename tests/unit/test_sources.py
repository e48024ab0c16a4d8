"""Model sources without a server: parsing MODEL, store identities, the model cache, provenance,
and how failures inside MLflow calls become one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from envbuild.errors import MissingExtra, ModelSourceError, SourceUnreachable
from envbuild.sources import model_cache, open_model
from envbuild.sources.mlflow import translate
from envbuild.sources.refs import (
    ArtifactRef,
    FolderRef,
    LoggedModelRef,
    RegistryRef,
    RunRef,
    identity,
    is_uri,
    parse,
    store_id,
)
from envbuild.sources.source import Provenance
from tests.conftest import REPO


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("runs:/abc123/model", RunRef("runs:/abc123/model", "abc123", "model")),
        ("runs:/abc/a/b/", RunRef("runs:/abc/a/b/", "abc", "a/b")),
        ("models:/iris/3", RegistryRef("models:/iris/3", "iris", version="3")),
        ("models:/iris/03/sub", RegistryRef("models:/iris/03/sub", "iris", "3", sub_path="sub")),
        ("models:/iris@champion", RegistryRef("models:/iris@champion", "iris", alias="champion")),
        ("models:/a@b@c", RegistryRef("models:/a@b@c", "a@b", alias="c")),
        ("models:/iris/latest", RegistryRef("models:/iris/latest", "iris", latest=True)),
        ("models:/iris/LATEST", RegistryRef("models:/iris/LATEST", "iris", latest=True)),
        (
            "models:/iris/Production",
            RegistryRef("models:/iris/Production", "iris", stage="Production"),
        ),
        ("models:/m-0a1b", LoggedModelRef("models:/m-0a1b", "m-0a1b")),
        ("s3://bucket/k/model", ArtifactRef("s3://bucket/k/model", "s3")),
        ("dbfs:/models/x", ArtifactRef("dbfs:/models/x", "dbfs")),
        ("mlflow-artifacts:/0/x", ArtifactRef("mlflow-artifacts:/0/x", "mlflow-artifacts")),
        ("file:///srv/model", FolderRef("file:///srv/model", Path("/srv/model"))),
        (
            "file://localhost/srv/my%20model",
            FolderRef("file://localhost/srv/my%20model", Path("/srv/my model")),
        ),
        ("model", FolderRef("model", Path("model"))),
        ("C:\\models\\iris", FolderRef("C:\\models\\iris", Path("C:\\models\\iris"))),
    ],
)
def test_parse(text: str, expected: object):
    assert parse(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("runs:/abc", "runs:/abc: expected runs:/RUN_ID/PATH"),
        ("runs:/", "runs:/: expected runs:/RUN_ID/PATH"),
        ("models:/", "models:/: expected models:/NAME/VERSION"),
        ("models:/@x", "models:/@x: expected models:/NAME/VERSION"),
        ("models:/x@", "models:/x@: expected models:/NAME/VERSION"),
        ("file://otherhost/x", "file://otherhost/x: a file: URI on another host"),
        # a profile in the URI is redacted like any user part
        ("models://scope:key@databricks/x/1", "models://***@databricks/x/1: models:// with a"),
        ("runs://profile@databricks/r/m", "runs://***@databricks/r/m: runs:// with a profile"),
    ],
)
def test_malformed_uris_are_one_line_errors(text: str, message: str):
    with pytest.raises(ModelSourceError) as caught:
        parse(text)
    assert caught.value.format().startswith(message)
    assert "\n" not in caught.value.format()
    assert caught.value.exit_code == 2


def test_is_uri_keeps_paths_paths():
    assert is_uri("runs:/x/y") and is_uri("s3://b/k") and is_uri("models:/m/1")
    assert not is_uri("model") and not is_uri("C:\\model") and not is_uri("./a:b")


def test_store_id_holds_no_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    assert store_id("https://alice:s3cret@Tracking.Example:5000/mlflow/?token=x") == (
        "https://tracking.example:5000/mlflow"
    )
    assert store_id("http://127.0.0.1:5000") == "http://127.0.0.1:5000"
    assert store_id("postgresql://u:p@db:5432/mlflow") == "postgresql://db:5432/mlflow"
    assert store_id("sqlite:///mlflow.db") == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert store_id("sqlite:////abs/x.db?timeout=5") == "sqlite:////abs/x.db"
    assert store_id("./mlruns") == (tmp_path / "mlruns").as_uri()
    assert store_id("file:./mlruns") == (tmp_path / "mlruns").as_uri()
    assert store_id("databricks://profile") == "databricks://profile"


def test_identity_keys_the_store_and_the_immutable_reference():
    run = parse("runs:/r1/model")
    a = identity(run, tracking="http://a:5000")
    b = identity(run, tracking="http://b:5000")
    assert model_cache.cache_key(a) != model_cache.cache_key(b)
    assert model_cache.cache_key(a) == model_cache.cache_key(dict(reversed(a.items())))
    # an alias has an identity only once it is resolved to a version
    alias = parse("models:/iris@champion")
    with pytest.raises(ValueError):
        identity(alias, registry="http://a:5000")
    resolved = identity(alias, registry="http://a:5000", version="2")
    assert resolved == identity(parse("models:/iris/2"), registry="http://a:5000")
    # artifacts relative to the tracking server depend on it; a bucket does not
    assert identity(parse("s3://b/m"))["tracking"] == ""
    with pytest.raises(ValueError):
        identity(parse("mlflow-artifacts:/0/m"))
    # a password is no part of the key; the user (a wasbs container) is
    assert identity(parse("wasbs://c1@acct.blob.core.windows.net/m"))["uri"].startswith(
        "wasbs://c1@"
    )
    assert identity(parse("https://u:pw@h/m"))["uri"] == "https://u@h/m"


def test_a_folder_is_used_in_place_without_importing_mlflow(sklearn_model: Path):
    script = (
        "import sys; from envbuild.sources import open_model; "
        f"s = open_model({str(sklearn_model)!r}); "
        "print(s.path, s.read_only, s.provenance.kind, s.provenance.labels(), "
        "'mlflow' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, check=True
    )
    assert done.stdout.split() == [str(sklearn_model), "False", "folder", "{}", "False"]


def test_file_uri_is_a_folder(sklearn_model: Path):
    source = open_model(sklearn_model.as_uri())
    assert source.path == sklearn_model and not source.read_only
    assert source.provenance.uri == sklearn_model.as_uri()


def test_a_cached_immutable_reference_needs_neither_mlflow_nor_the_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sklearn_model: Path
):
    """What a finished entry holds is used as is: no import, no connection (port 9 is closed)."""
    monkeypatch.setenv("ENVBUILD_CACHE_DIR", str(tmp_path / "cache"))
    tracking = "http://alice:s3cret@127.0.0.1:9"
    ident = identity(parse("runs:/r1/model"), tracking=store_id(tracking))

    def fill(tmp: Path) -> Path:
        (tmp / "model").mkdir()
        for file in sklearn_model.iterdir():
            (tmp / "model" / file.name).write_bytes(file.read_bytes())
        return tmp / "model"

    reference = {
        "resolved_uri": "runs:/r1/model",
        "run_id": "r1",
        "artifact_path": "model",
        "tracking_uri": store_id(tracking),
    }
    entry, built = model_cache.store(ident, reference, fill)
    assert built
    script = (
        "import json, sys; from envbuild.sources import open_model; "
        f"s = open_model('runs:/r1/model', tracking_uri={tracking!r}); "
        "print(json.dumps([str(s.path), s.downloaded, s.provenance.to_dict(), "
        "'mlflow' in sys.modules]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
        env=dict(os.environ, ENVBUILD_CACHE_DIR=str(tmp_path / "cache")),
    )
    path, downloaded, provenance, imported = json.loads(done.stdout)
    assert (path, downloaded, imported) == (str(entry.folder), False, False)
    assert provenance["tracking_uri"] == "http://127.0.0.1:9"
    assert "s3cret" not in done.stdout


def test_model_cache_publishes_whole_read_only_entries_only(tmp_path: Path, sklearn_model: Path):
    ident = {"kind": "run", "tracking": "http://h", "run_id": "r", "path": "model"}
    calls = []

    def failing(tmp: Path) -> Path:
        (tmp / "model").mkdir()
        (tmp / "model" / "MLmodel").write_text("half")
        raise OSError("connection reset")

    with pytest.raises(OSError):
        model_cache.store(ident, {}, failing, root=tmp_path)
    assert model_cache.lookup(ident, root=tmp_path) is None
    assert [p.name for p in (tmp_path / "models").iterdir() if p.is_dir()] == []

    def fill(tmp: Path) -> Path:
        calls.append(tmp)
        (tmp / "model").mkdir()
        (tmp / "model" / "MLmodel").write_text("flavors: {}\n")
        return tmp / "model"

    # a download killed earlier left a temporary folder: the next one removes it
    leftover = tmp_path / "models" / f".tmp-{model_cache.cache_key(ident)}-killed"
    (leftover / "model").mkdir(parents=True)
    entry, built = model_cache.store(ident, {"run_id": "r"}, fill, root=tmp_path)
    again, built_again = model_cache.store(ident, {"run_id": "r"}, fill, root=tmp_path)
    assert (built, built_again, len(calls)) == (True, False, 1)
    assert again == entry and entry.reference == {"run_id": "r"}
    assert not leftover.exists()
    assert sorted(p.name for p in entry.path.iterdir()) == [".envbuild-complete.json", "model"]
    assert not (entry.folder / "MLmodel").stat().st_mode & 0o222


def test_provenance_labels_and_dict():
    p = Provenance(
        uri="models:/iris@champion",
        kind="model-version",
        resolved_uri="models:/iris/3",
        registered_name="iris",
        version="3",
        alias="champion",
        moving=True,
        run_id="abc",
        tracking_uri="https://mlflow.example",
    )
    assert p.labels() == {
        "envbuild.model.uri": "models:/iris@champion",
        "envbuild.model.registered-name": "iris",
        "envbuild.model.version": "3",
        "envbuild.model.run-id": "abc",
        "envbuild.model.tracking-uri": "https://mlflow.example",
    }
    assert p.to_dict()["alias"] == "champion" and p.to_dict()["model_id"] is None
    assert Provenance(uri="model", kind="folder").labels() == {}


def _raised(exc: BaseException, cause: BaseException) -> BaseException:
    try:
        try:
            raise cause
        except BaseException:
            raise exc  # noqa: B904 - the implicit context is what MLflow leaves
    except BaseException as caught:
        return caught


def test_failures_in_mlflow_calls_become_one_line_errors():
    refused = _raised(
        RuntimeError("API request to https://alice:s3cret@h/api failed with exception ..."),
        ConnectionRefusedError(111, "Connection refused"),
    )
    error = translate(refused, "models:/iris/1", "https://h")
    assert isinstance(error, SourceUnreachable) and error.exit_code == 3
    assert error.format() == "models:/iris/1: cannot reach https://h: connection refused"

    missing = _raised(RuntimeError("boom"), ModuleNotFoundError("No module", name="google.cloud"))
    error = translate(missing, "gs://b/m", "gs://b")
    assert isinstance(error, MissingExtra) and error.hint == "pip install google-cloud-storage"

    denied = RuntimeError("API request to https://alice:s3cret@h/x failed: 403 Forbidden")
    error = translate(denied, "runs:/r/m", "https://h")
    assert isinstance(error, ModelSourceError) and "refused access" in error.format()
    other = translate(ValueError("bad https://alice:s3cret@h/x\nsecond line"), "s3://b/m", "s3://b")
    assert other.format() == "s3://b/m: ValueError: bad https://***@h/x"

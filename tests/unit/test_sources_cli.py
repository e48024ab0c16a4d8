"""Model URIs through every command, without a server: a downloaded model is put in the model cache
by hand (as a finished download would be), and an immutable reference whose store is named is
found there without MLflow or the network (port 9 is closed). The end-to-end tests against a real
``mlflow server`` are in tests/integration/test_sources_cli.py."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest

from envbuild.cli import COMMANDS, build_parser
from envbuild.junit import junit_xml
from envbuild.reproduction import STEPS, Report, Step
from envbuild.sources import Provenance, model_cache
from envbuild.sources.refs import identity, parse, store_id
from tests.conftest import run_cli

TRACKING = "http://alice:s3cret@127.0.0.1:9"  # closed port; credentials never shown
URI = "runs:/r1/model"


@dataclass(frozen=True)
class Cached:
    uri: str
    entry: Path
    folder: Path
    cache: Path


@pytest.fixture
def cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sklearn_model: Path) -> Cached:
    cache = tmp_path / "cache"
    monkeypatch.setenv("ENVBUILD_CACHE_DIR", str(cache))
    ident = identity(parse(URI), tracking=store_id(TRACKING))

    def fill(tmp: Path) -> Path:
        shutil.copytree(sklearn_model, tmp / "model")
        return tmp / "model"

    reference = {
        "resolved_uri": URI,
        "run_id": "r1",
        "artifact_path": "model",
        "tracking_uri": store_id(TRACKING),
    }
    entry, _ = model_cache.store(ident, reference, fill)
    return Cached(uri=URI, entry=entry.path, folder=entry.folder, cache=cache)


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_every_command_taking_model_has_the_source_options():
    """Any command with a MODEL argument (today's and those added later) takes a URI's
    --tracking-uri/--registry-uri, because it gets MODEL from cli.common.add_model(s)."""
    import argparse

    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    taking_model = {
        name
        for name, command in sub.choices.items()
        if any(a.metavar == "MODEL" and not a.option_strings for a in command._actions)
    }
    assert taking_model >= {
        "inspect",
        "lock",
        "env",
        "predict",
        "serve",
        "run",
        "capture",
        "image",
        "reproduce",
    }
    taking_model.discard("ci-template")  # names models in the job it prints, opens none
    assert set(COMMANDS) - taking_model >= {"ci-template", "cache"}
    options = ["--tracking-uri", "http://t", "--registry-uri", "http://r"]
    for command in sorted(taking_model):
        models = ["models:/a/1", "models:/b@x"] if command in ("reproduce", "check") else ["m"]
        extra = ["--environment", "shared"] if command == "check" else []
        args = parser.parse_args(
            [command, *models, *options, *extra]
        )  # (run's `-- CMD` is cut first)
        assert (args.tracking_uri, args.registry_uri) == ("http://t", "http://r"), command
    assert parser.parse_args(["reproduce", "models:/a/1", "x"]).models == ["models:/a/1", "x"]


def test_inspect_names_the_source_without_credentials(cached: Cached):
    proc = run_cli("inspect", cached.uri, "--tracking-uri", TRACKING)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == f"model        {cached.folder}"
    assert lines[1] == f"source       {URI}"
    assert lines[2] == "tracking     http://127.0.0.1:9"
    assert "s3cret" not in proc.stdout + proc.stderr

    proc = run_cli("inspect", cached.uri, "--tracking-uri", TRACKING, "--json")
    data = json.loads(proc.stdout)
    assert data["path"] == str(cached.folder)
    assert data["source"]["uri"] == URI
    assert data["source"]["run_id"] == "r1"
    assert data["source"]["tracking_uri"] == "http://127.0.0.1:9"
    assert "s3cret" not in proc.stdout


def test_a_folder_reports_a_folder_source(sklearn_model: Path):
    proc = run_cli("inspect", str(sklearn_model), "--json")
    source = json.loads(proc.stdout)["source"]
    assert (source["kind"], source["uri"], source["run_id"]) == ("folder", str(sklearn_model), None)
    assert "source " not in run_cli("inspect", str(sklearn_model)).stdout


def test_tracking_uri_from_mlflow_environment_variable(
    cached: Cached, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", TRACKING)
    proc = run_cli("inspect", cached.uri, "--json")
    assert proc.returncode == 0, proc.stdout
    assert json.loads(proc.stdout)["path"] == str(cached.folder)


@pytest.mark.parametrize("given", ["uri", "cache path"])
def test_capture_write_on_a_download_is_refused(cached: Cached, given: str):
    before = files(cached.entry)
    model = cached.uri if given == "uri" else str(cached.folder)
    proc = run_cli("capture", model, "--write", "--tracking-uri", TRACKING)
    assert proc.returncode == 2
    error, hint = proc.stderr.splitlines()
    assert error == (
        f"error: {model}: capture --write rewrites the model's files, and this model is a "
        "downloaded copy, kept read-only"
    )
    assert hint.startswith("hint: run capture without --write")
    assert files(cached.entry) == before


def test_capture_write_is_refused_before_anything_is_downloaded(tmp_path: Path):
    """No server is asked (none runs on port 9) and MLflow is not needed to refuse."""
    code, data = run_cli_json(
        "capture", "models:/iris@champion", "--write", "--tracking-uri", TRACKING
    )
    assert code == 2
    assert data["error"] == "UsageError"
    assert data["message"].startswith("models:/iris@champion: capture --write rewrites")


def run_cli_json(*args: str) -> tuple[int, dict]:
    proc = run_cli(*args, "--json")
    return proc.returncode, json.loads(proc.stdout)


def test_lock_check_on_a_download_without_a_lock_looks_in_the_cache(cached: Cached):
    """The downloaded copy has no pylock.toml: --check looks where `lock URI` writes one, in the
    cache entry beside the model, and never asks for a lock inside the download."""
    code, data = run_cli_json("lock", cached.uri, "--check", "--tracking-uri", TRACKING)
    assert code == 3
    assert data["path"] == str(cached.entry / "pylock.toml")
    assert data["message"].startswith(f"{cached.entry / 'pylock.toml'}: no lock file")


def test_a_download_named_by_its_path_stays_read_only(cached: Cached):
    from envbuild.sources import open_model

    source = open_model(cached.folder)
    assert source.read_only and source.cache_entry == cached.entry
    assert source.provenance.kind == "folder"
    assert open_model(cached.folder / "MLmodel").read_only
    assert not open_model(cached.cache).read_only  # the cache itself is no model


def report(source: Provenance | None, model: str) -> Report:
    return Report(
        model=model,
        kind="venv",
        steps=[Step(name, status="passed") for name in STEPS],
        source=source,
    )


def test_junit_carries_the_provenance_as_properties_and_output():
    source = Provenance(
        uri="models:/iris@champion",
        kind="model-version",
        resolved_uri="models:/iris/3",
        registered_name="iris",
        version="3",
        alias="champion",
        moving=True,
        run_id="abc",
        tracking_uri="https://mlflow.example.com",
    )
    root = ET.fromstring(junit_xml([report(source, source.uri), report(None, "models/plain")]))
    remote, local = root.findall("testsuite")
    properties = {p.get("name"): p.get("value") for p in remote.iter("property")}
    assert properties == {
        "envbuild.model.uri": "models:/iris@champion",
        "envbuild.model.registered-name": "iris",
        "envbuild.model.version": "3",
        "envbuild.model.run-id": "abc",
        "envbuild.model.tracking-uri": "https://mlflow.example.com",
        "envbuild.model.resolved-uri": "models:/iris/3",
        "envbuild.model.alias": "champion",
    }
    assert remote.get("name") == "envbuild reproduce models:/iris@champion"
    assert {c.get("classname") for c in remote.iter("testcase")} == {"envbuild.reproduce.iris-v3"}
    output = remote.findtext("system-out") or ""
    assert "envbuild.model.version: 3" in output.splitlines()
    assert local.find("properties") is None and local.find("system-out") is None
    assert {c.get("classname") for c in local.iter("testcase")} == {"envbuild.reproduce.plain"}


def test_report_json_names_the_uri_and_its_source():
    source = Provenance(uri="runs:/abc/model", kind="run", resolved_uri="runs:/abc/model")
    data = report(source, source.uri).to_dict()
    assert data["model"] == "runs:/abc/model"
    assert data["source"]["kind"] == "run"
    assert report(None, "m").to_dict()["source"] is None


def test_image_labels_name_the_resolved_version_and_the_label_option_wins():
    from envbuild.image.plan import image_labels
    from envbuild.lock import read_lock
    from envbuild.model import load_model
    from tests.conftest import REPO

    example = REPO / "examples" / "sklearn-iris"
    spec, lk = load_model(example), read_lock(example / "pylock.toml")
    source = Provenance(
        uri="models:/iris@champion",
        kind="model-version",
        resolved_uri="models:/iris/3",
        registered_name="iris",
        version="3",
        alias="champion",
        run_id="abc",
        tracking_uri="https://mlflow.example.com",
    )
    extra = {"envbuild.model.version": "pinned-by-user"}
    labels = image_labels(spec, lk, "sha256:0", "python:3.11-slim", "scorer:1", extra, source)
    assert labels["envbuild.model.uri"] == "models:/iris@champion"
    assert labels["envbuild.model.registered-name"] == "iris"
    assert labels["envbuild.model.run-id"] == "abc"
    assert labels["envbuild.model.tracking-uri"] == "https://mlflow.example.com"
    assert labels["envbuild.model.version"] == "pinned-by-user"
    assert labels["org.opencontainers.image.description"].startswith("MLflow model iris served")
    plain = image_labels(spec, lk, "sha256:0", "python:3.11-slim", "scorer:1", {})
    assert not any(k in plain for k in ("envbuild.model.uri", "envbuild.model.version"))


def test_bytecode_the_models_code_leaves_is_not_part_of_the_model(cached: Cached):
    """Running a model's code makes Python write ``__pycache__`` beside it, even in a
    downloaded copy; the model's digest (its image tag and layer) must not change for that."""
    from envbuild.image.context import model_digest, model_files

    before = model_digest(cached.folder)
    pycache = cached.folder / "code" / "__pycache__"
    pycache.mkdir(parents=True)
    (pycache / "loader.cpython-311.pyc").write_bytes(b"\x00bytecode")
    assert model_digest(cached.folder) == before
    assert not any("__pycache__" in rel for rel, _, _ in model_files(cached.folder))

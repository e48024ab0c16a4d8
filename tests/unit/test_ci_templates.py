"""`envbuild ci-template`: valid YAML whose envbuild commands parse with envbuild's own CLI."""

from __future__ import annotations

import re
import shlex

import pytest
import yaml

from envbuild.ci import render_ci
from envbuild.cli import build_parser
from envbuild.errors import UsageError
from tests.conftest import run_cli


def envbuild_commands(doc: object) -> list[str]:
    """Shell lines CI runs (GitHub `run:`, GitLab `script:`) that call envbuild."""
    found: list[str] = []

    def walk(node: object, key: str | None = None) -> None:
        if isinstance(node, dict):
            for name, value in node.items():
                walk(value, name)
        elif isinstance(node, list):
            for value in node:
                walk(value, key)
        elif key in ("run", "script", "after_script") and isinstance(node, str):
            found.extend(
                line.strip() for line in node.splitlines() if line.strip().startswith("envbuild ")
            )

    walk(doc)
    return found


@pytest.mark.parametrize("provider", ["github", "gitlab"])
@pytest.mark.parametrize("kind", ["venv", "docker"])
def test_template_is_valid_yaml_running_real_commands(provider: str, kind: str) -> None:
    text = render_ci(provider, ["models/a", "models/b c"], kind=kind)
    doc = yaml.safe_load(text)
    commands = [c for c in envbuild_commands(doc) if c.startswith("envbuild reproduce")]
    assert len(commands) == 1
    pruning = [c for c in envbuild_commands(doc) if c.startswith("envbuild cache")]
    assert pruning and build_parser().parse_args(shlex.split(pruning[0])[1:]).action == "prune"
    # CI variables stand for one model folder; substitute one and parse with envbuild's parser
    command = re.sub(r"\$\{\{ matrix.model \}\}|\$MODEL", "models/b c", commands[0])
    argv = shlex.split(command)[1:]
    args = build_parser().parse_args(argv)
    assert args.command == "reproduce"
    assert args.models == ["models/b c"]
    assert args.kind == kind
    assert str(args.junit) == "envbuild-report.xml"
    assert "models/b c" in text  # every model is in the matrix
    if provider == "github":
        assert doc["jobs"]["reproduce"]["strategy"]["matrix"]["model"] == ["models/a", "models/b c"]
        steps = doc["jobs"]["reproduce"]["steps"]
        cache = next(s for s in steps if s.get("uses", "").startswith("actions/cache"))
        assert "pylock.toml" in cache["with"]["key"] and "uv-cache" in cache["with"]["path"]
    else:
        job = doc["envbuild-reproduce"]
        assert job["parallel"]["matrix"][0]["MODEL"] == ["models/a", "models/b c"]
        assert job["artifacts"]["reports"]["junit"] == "envbuild-report.xml"
        assert ".uv-cache/" in job["cache"]["paths"] and job["variables"]["UV_CACHE_DIR"]


def test_cli_prints_the_template() -> None:
    proc = run_cli("ci-template", "gitlab", "model")
    assert proc.returncode == 0
    assert yaml.safe_load(proc.stdout)["envbuild-reproduce"]


def test_unknown_provider_and_no_models() -> None:
    with pytest.raises(UsageError):
        render_ci("jenkins", ["m"])
    with pytest.raises(UsageError):
        render_ci("github", [])


def github_step(doc: dict, name: str) -> dict:
    return next(s for s in doc["jobs"]["reproduce"]["steps"] if s.get("name") == name)


@pytest.mark.parametrize("provider", ["github", "gitlab"])
def test_registry_models_get_mlflow_and_the_tracking_server_from_secrets(provider: str) -> None:
    models = ["models:/credit-default@champion", "models/local"]
    text = render_ci(provider, models)
    doc = yaml.safe_load(text)
    (command,) = [c for c in envbuild_commands(doc) if c.startswith("envbuild reproduce")]
    command = re.sub(r"\$\{\{ matrix.model \}\}|\$MODEL", models[0], command)
    args = build_parser().parse_args(shlex.split(command)[1:])
    assert args.models == [models[0]]
    assert args.tracking_uri is None  # from MLFLOW_TRACKING_URI, set by the CI
    if provider == "github":
        install = github_step(doc, "Install envbuild")["run"]
        env = github_step(doc, "Reproduce the model's environment")["env"]
        assert env["MLFLOW_TRACKING_URI"] == "${{ secrets.MLFLOW_TRACKING_URI }}"
        assert env["MLFLOW_TRACKING_TOKEN"] == "${{ secrets.MLFLOW_TRACKING_TOKEN }}"
        assert "schedule" in doc[True]  # YAML 1.1 reads the key `on` as True
        assert doc["jobs"]["reproduce"]["strategy"]["matrix"]["model"] == models
    else:
        job = doc["envbuild-reproduce"]
        install = next(line for line in job["script"] if "pip install" in line)
        assert "MLFLOW_TRACKING_URI" in text and "CI/CD variables" in text
        assert not any(k.startswith("MLFLOW_") for k in job.get("variables", {}))
    assert shlex.split(install)[-1].startswith("envbuild[mlflow]==")


@pytest.mark.parametrize("provider", ["github", "gitlab"])
def test_folders_only_need_no_mlflow_nor_secrets(provider: str) -> None:
    text = render_ci(provider, ["model"])
    assert "MLFLOW_" not in text and "secrets" not in text and "[mlflow]" not in text
    assert "schedule" not in text


def test_credentials_in_a_model_uri_are_refused() -> None:
    with pytest.raises(UsageError) as caught:
        render_ci("github", ["https://alice:s3cret@store.example.com/models/iris"])
    assert "s3cret" not in str(caught.value)
    assert "credentials" in str(caught.value)

"""Every real MLmodel in ../shared/corpus gives a report or a one-line error, never a traceback.

The expected outcome of each folder is written down here: a change in what envbuild decides for a
real-world oddity must be a deliberate edit of this table (and of the README's decisions list).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from envbuild.cli import main
from envbuild.errors import ExitCode

REPO = Path(__file__).resolve().parents[2]
CORPUS = Path(os.environ.get("ENVBUILD_CORPUS", REPO.parent / "shared" / "corpus"))

NO_PYFUNC = "no python_function flavor"
NO_ENV = "no environment file"
# folder (or folder/file) -> expected error substring; every other entry must produce a report
ERRORS = {
    "03-azureml-iris-env-file-missing": NO_ENV,
    "04-azureml-iris-mlflow3.12-env-files-missing": NO_ENV,
    "11-azureml-hftransformers-sample-yaml-comment": NO_PYFUNC,
    "22-mlflow-java-mleap-only-2018": NO_PYFUNC,
    "23-mlflow-java-sample-model-variants/MLmodel": NO_PYFUNC,
    "23-mlflow-java-sample-model-variants/MLmodel.no.mlflow_version": NO_PYFUNC,
    "23-mlflow-java-sample-model-variants/MLmodel.no.model_uuid": NO_PYFUNC,
    "23-mlflow-java-sample-model-variants/MLmodel.with.metadata": NO_PYFUNC,
    "23-mlflow-java-sample-model-variants/MLmodel.with.databricks_runtime": ":10: invalid YAML",
    "24-mlflow-r-crate-flavor": NO_PYFUNC,
}


def corpus_entries() -> list[str]:
    if not CORPUS.is_dir():
        return []
    entries = []
    for folder in sorted(p for p in CORPUS.iterdir() if p.is_dir()):
        variants = sorted(p.name for p in folder.glob("MLmodel*"))
        if variants == ["MLmodel"]:
            entries.append(folder.name)
        else:
            entries.extend(f"{folder.name}/{name}" for name in variants)
    return entries


ENTRIES = corpus_entries()
# On CI the corpus is always beside the clone: a missing corpus there is a failure, not a skip.
if not ENTRIES and os.environ.get("CI", "").lower() in ("1", "true"):
    raise RuntimeError(f"CI: the shared corpus is not at {CORPUS}; set ENVBUILD_CORPUS")
pytestmark = pytest.mark.skipif(
    not ENTRIES, reason=f"the shared corpus is not at {CORPUS} (set ENVBUILD_CORPUS)"
)


def inspect(entry: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict, str]:
    code = main(["inspect", str(CORPUS / entry), "--json"])
    captured = capsys.readouterr()
    return code, json.loads(captured.out), captured.err


def test_corpus_is_complete() -> None:
    assert len({e.split("/")[0] for e in ENTRIES}) >= 48
    assert set(ERRORS) <= set(ENTRIES)


@pytest.mark.parametrize("entry", ENTRIES)
def test_every_corpus_model(entry: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, data, err = inspect(entry, capsys)
    assert "Traceback" not in err and "internal error" not in err
    if entry in ERRORS:
        assert code == ExitCode.BAD_INPUT
        assert ERRORS[entry] in data["message"]
        assert "\n" not in data["message"]
        assert data["path"].endswith(entry if "/" in entry else "MLmodel") or entry in data["path"]
    else:
        assert code == 0, data.get("message")
        for key in (
            "path",
            "flavors",
            "loader_module",
            "python_version",
            "requirements",
            "conda_dependencies",
            "channels",
            "signature",
            "input_example",
            "warnings",
        ):
            assert key in data
        assert "python_function" in data["flavors"]
        assert data["python_version"]


def report(entry: str, capsys: pytest.CaptureFixture[str]) -> dict:
    code, data, _ = inspect(entry, capsys)
    assert code == 0, data
    return data


def test_conda_yml_and_input_example(capsys: pytest.CaptureFixture[str]) -> None:
    data = report("02-azureml-autolog-conda-yml-input-example", capsys)
    assert data["input_example"].endswith("input_example.json")
    assert any("conda.yml" in w for w in data["warnings"])


def test_three_python_sources_disagree(capsys: pytest.CaptureFixture[str]) -> None:
    data = report("15-azureml-python-wildcard-env-mismatch", capsys)
    assert data["python_version"] == "3.8.13"
    assert any("3.10.*" in w for w in data["warnings"])


def test_python_written_as_a_float(capsys: pytest.CaptureFixture[str]) -> None:
    assert report("14-azureml-sklearn-python-tilde-spec", capsys)["python_version"] == "3.12"


def test_conflicting_conda_and_requirements(capsys: pytest.CaptureFixture[str]) -> None:
    data = report("05-azureml-lightgbm-conda-requirements-conflict", capsys)
    assert "lightgbm==3.3.2" in data["requirements"]
    assert any("lightgbm==4.6.0" in w for w in data["warnings"])


def test_comments_inside_the_conda_pip_list(capsys: pytest.CaptureFixture[str]) -> None:
    data = report("12-azureml-credit-defaults-commented-env", capsys)
    assert "azureml-inference-server-http<1.3" in data["requirements"]


def test_index_options_are_reported(capsys: pytest.CaptureFixture[str]) -> None:
    data = report("19-azureml-automl-pip-index-options", capsys)
    assert {o["option"] for o in data["index_options"]} == {"--find-links", "--extra-index-url"}
    assert not any(r.startswith("-") for r in data["requirements"])


def test_missing_requirements_include_falls_back_to_conda(
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = report("33-keras3-requirements-missing", capsys)
    assert data["requirements_source"] == "conda.yaml"
    assert "keras==3.13.0" in data["requirements"]


def test_env_files_missing_but_requirements_present(capsys: pytest.CaptureFixture[str]) -> None:
    data = report("40-pyfunc-databricks-runtime-env-files-missing", capsys)
    assert data["requirements_source"] == "requirements.txt"
    assert sum("is missing" in w for w in data["warnings"]) == 2


def test_local_version_labels_are_kept(capsys: pytest.CaptureFixture[str]) -> None:
    data = report("28-pytorch-cu102-local-versions", capsys)
    assert "torch==1.9.0+cu102" in data["requirements"]

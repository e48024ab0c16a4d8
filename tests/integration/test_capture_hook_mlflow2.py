"""``envbuild.capture()`` with the last MLflow 2.x release (2.22.5), whose ``Model.log`` and
flavors differ from 3.x (``artifact_path=``, ``log_artifacts`` into the run, no logged models).

envbuild runs inside that environment's Python 3.10 from its source folder (PYTHONPATH), with its
own dependencies installed there; the script logs to a local tracking store it creates and reports
what reached the artifact store.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.integration.test_capture import UV, clean_env, cli
from tests.interpreters import python as find_python

pytestmark = [pytest.mark.integration, pytest.mark.network, pytest.mark.slow]

MLFLOW2 = "mlflow==2.22.5"  # the last 2.x release
ENVBUILD_DEPS = [
    "pyyaml",
    "packaging",
    "pip-requirements-parser",
    "importlib-metadata",
    "filelock",
    "platformdirs",
    "uv",
    "tomli",
]

SCRIPT = """
import json, os, sys, warnings
import mlflow, mlflow.pyfunc, mlflow.sklearn
import envbuild
from envbuild.capturing import CaptureWarning
from envbuild.capturing.mlflow_hook import patched
from envbuild.errors import ModelRunError
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

tmp = sys.argv[1]
mlflow.set_tracking_uri("sqlite:///" + os.path.join(tmp, "mlflow.db"))
mlflow.set_experiment("capture-mlflow2")
x, y = load_iris(return_X_y=True, as_frame=True)
model = LogisticRegression(max_iter=500).fit(x, y)
report = {"mlflow": mlflow.__version__}
# given, so that MLflow does not run the broken model's predict to infer one while saving
signature = ModelSignature(inputs=Schema([ColSpec("double", "x")]))


def files(uri, name):
    path = mlflow.artifacts.download_artifacts(uri, dst_path=os.path.join(tmp, name))
    return path, sorted(os.listdir(path))


class Broken(mlflow.pyfunc.PythonModel):
    # MLflow 2.x runs load_context while saving any PythonModel: this one breaks when predicting
    def predict(self, context, model_input):
        raise RuntimeError("broken on purpose in mlflow 2")


example = x[["sepal length (cm)"]].head(1).rename(columns=lambda _: "x")


with mlflow.start_run():
    with envbuild.capture() as session:
        info = mlflow.sklearn.log_model(
            model, artifact_path="model", input_example=x.head(3), pip_requirements=["mlflow"]
        )
    report["captured"], report["captured_files"] = files(info.model_uri, "captured")
    report["requirements"] = session.captured[0].capture.requirements
    report["patched_after"] = patched()

    info = mlflow.sklearn.log_model(model, artifact_path="plain", pip_requirements=["mlflow"])
    report["plain_files"] = files(info.model_uri, "plain")[1]

    try:
        with envbuild.capture():
            mlflow.pyfunc.log_model(artifact_path="broken", python_model=Broken(),
                                    signature=signature, input_example=example,
                                    pip_requirements=["mlflow"])
        report["strict_error"] = None
    except ModelRunError as exc:
        report["strict_error"] = str(exc)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with envbuild.capture(strict=False):
            info = mlflow.pyfunc.log_model(artifact_path="lenient", python_model=Broken(),
                                           signature=signature, input_example=example,
                                           pip_requirements=["mlflow"])
    report["lenient_warnings"] = [str(w.message) for w in caught if w.category is CaptureWarning]
    report["lenient_files"] = files(info.model_uri, "lenient")[1]

    saved = os.path.join(tmp, "saved")
    with envbuild.capture():
        mlflow.sklearn.save_model(model, saved, input_example=x.head(2), pip_requirements=["mlflow"])
    report["saved_files"] = sorted(os.listdir(saved))
print(json.dumps(report))
"""


@pytest.fixture(scope="module")
def mlflow2_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.mktemp("mlflow2") / "venv"
    env = clean_env(UV_PYTHON_DOWNLOADS="never")
    subprocess.run(
        [str(UV), "venv", "-q", "--python", str(find_python("3.10")), str(venv)],
        check=True,
        env=env,
    )
    python = venv / "bin" / "python"
    subprocess.run(
        [
            str(UV),
            "pip",
            "install",
            "-q",
            "--python",
            str(python),
            MLFLOW2,
            "scikit-learn",
            *ENVBUILD_DEPS,
        ],
        check=True,
        env=env,
    )
    return python


@pytest.fixture(scope="module")
def report(mlflow2_python: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("mlflow2-run")
    out = subprocess.run(
        [str(mlflow2_python), "-c", SCRIPT, str(tmp)],
        capture_output=True,
        text=True,
        env=clean_env(PYTHONPATH=str(REPO)),
        timeout=900,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_log_model_is_captured_into_the_run(report: dict) -> None:
    assert report["mlflow"] == MLFLOW2.split("==")[1]
    assert {"pylock.toml", "envbuild_expected_output.json", "requirements.txt"} <= set(
        report["captured_files"]
    )
    assert MLFLOW2 in report["requirements"]
    assert any(r.startswith("scikit-learn==") for r in report["requirements"])
    assert report["patched_after"] == []
    folder = Path(report["captured"])
    assert (folder / "requirements.txt").read_text().splitlines() == report["requirements"]
    check = cli("lock", str(folder), "--check")
    assert check.returncode == 0, check.stderr


def test_outside_the_block_and_save_model(report: dict) -> None:
    assert "pylock.toml" not in report["plain_files"]
    assert "pylock.toml" in report["saved_files"]


def test_broken_model_strict_and_lenient(report: dict) -> None:
    assert "model failed to predict: RuntimeError: broken on purpose in mlflow 2" in (
        report["strict_error"] or ""
    )
    assert any("broken on purpose" in w for w in report["lenient_warnings"])
    assert "requirements.txt" in report["lenient_files"]
    assert "pylock.toml" not in report["lenient_files"]


def test_the_captured_model_reproduces_its_predictions(report: dict) -> None:
    folder = Path(report["captured"])
    predicted = cli("predict", str(folder), "--no-compile")
    assert predicted.returncode == 0, predicted.stderr
    expected = json.loads((folder / "envbuild_expected_output.json").read_text())
    assert json.loads(predicted.stdout) == expected
    env = json.loads(cli("env", str(folder), "--json", "--no-compile").stdout)
    assert env["lock_source"] == "model" and env["interpreter"]["version"].startswith("3.10.")
    assert os.path.isfile(folder / "pylock.toml")

"""``with envbuild.capture(): mlflow.<flavor>.log_model(...)`` with the MLflow 3.x of this
environment, logging to a local tracking store each test creates (sqlite + local artifacts).

The files must reach the run's artifact store: they are checked in a copy downloaded from it.
(MLflow 2.x: test_capture_hook_mlflow2.py.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import envbuild
from envbuild.capturing import CaptureWarning, infer_requirements
from envbuild.capturing.mlflow_hook import patched
from envbuild.errors import ModelRunError
from tests.integration.mlflow_server import tracking_to
from tests.integration.test_capture import broken_python_model, clean_env, cli

pytestmark = [pytest.mark.integration, pytest.mark.network, pytest.mark.slow]

CAPTURED_FILES = {"pylock.toml", "envbuild_expected_output.json"}


@pytest.fixture
def tracking(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import mlflow

    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)  # the lock: PyPI only, not this machine's
    with tracking_to(f"sqlite:///{tmp_path}/mlflow.db", experiment="capture-hook"):
        yield mlflow


@pytest.fixture(scope="module")
def iris():
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    x, y = load_iris(return_X_y=True, as_frame=True)
    return LogisticRegression(max_iter=500).fit(x, y), x.head(3)


def download(mlflow, model_uri: str, dest: Path) -> Path:
    return Path(mlflow.artifacts.download_artifacts(model_uri, dst_path=str(dest)))


def test_log_model_inside_the_block_stores_the_capture_in_the_run(
    tracking, iris, tmp_path: Path
) -> None:
    import mlflow.sklearn

    model, example = iris
    with mlflow.start_run(), envbuild.capture() as session:
        info = mlflow.sklearn.log_model(
            model, name="model", input_example=example, pip_requirements=["mlflow"]
        )
    assert patched() == []
    folder = download(mlflow, info.model_uri, tmp_path / "downloaded")
    assert {p.name for p in folder.iterdir()} >= CAPTURED_FILES
    (result,) = session.captured
    requirements = result.capture.requirements
    assert (folder / "requirements.txt").read_text().splitlines() == requirements
    assert "mlflow==" + mlflow.__version__ in requirements
    # scikit-learn is required by mlflow: the lock pins it (requirements.txt lists the roots)
    locked = {p.pin for p in envbuild.read_lock(folder / "pylock.toml").packages}
    assert "scikit-learn==" + __import__("sklearn").__version__ in locked
    expected = json.loads((folder / "envbuild_expected_output.json").read_text())
    assert expected == {"predictions": model.predict(example).tolist()}
    check = cli("lock", str(folder), "--check")
    assert check.returncode == 0, check.stderr
    predicted = cli("predict", str(folder), "--no-compile")
    assert predicted.returncode == 0, predicted.stderr
    assert json.loads(predicted.stdout) == expected


def test_outside_the_block_nothing_changes(tracking, iris, tmp_path: Path) -> None:
    import mlflow.pyfunc
    import mlflow.sklearn
    from mlflow.models import Model

    log_before = Model.__dict__["log"]
    save_before = mlflow.sklearn.save_model
    with envbuild.capture():
        assert mlflow.sklearn.save_model is not save_before
        assert "Model.log" in patched() and "mlflow.sklearn.save_model" in patched()
    assert Model.__dict__["log"] is log_before and mlflow.sklearn.save_model is save_before
    assert patched() == []
    model, _ = iris
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(model, name="model", pip_requirements=["mlflow"])
    folder = download(mlflow, info.model_uri, tmp_path / "plain")
    assert not CAPTURED_FILES & {p.name for p in folder.iterdir()}


def test_a_broken_model_fails_log_model_with_envbuilds_error(tracking) -> None:
    import mlflow.pyfunc

    with (
        mlflow.start_run(),
        pytest.raises(ModelRunError, match="model failed to load: RuntimeError: broken on purpose"),
        envbuild.capture(),
    ):
        mlflow.pyfunc.log_model(
            name="broken", python_model=broken_python_model("load"), pip_requirements=["mlflow"]
        )
    assert patched() == []  # restored on the exception too


def test_strict_false_warns_and_keeps_mlflows_files(tracking, tmp_path: Path) -> None:
    import mlflow.pyfunc

    with (
        mlflow.start_run(),
        pytest.warns(CaptureWarning, match="broken on purpose.*MLflow's own requirement files"),
        envbuild.capture(strict=False) as session,
    ):
        info = mlflow.pyfunc.log_model(
            name="broken", python_model=broken_python_model("load"), pip_requirements=["mlflow"]
        )
    assert len(session.failures) == 1 and not session.captured
    folder = download(mlflow, info.model_uri, tmp_path / "broken")
    names = {p.name for p in folder.iterdir()}
    assert {"requirements.txt", "python_env.yaml", "conda.yaml"} <= names
    assert not CAPTURED_FILES & names
    assert (folder / "requirements.txt").read_text().splitlines() == ["mlflow"]  # MLflow's


def test_save_model_and_other_threads(tracking, iris, tmp_path: Path) -> None:
    """save_model is captured in the thread that opened the block, not in another thread."""
    import mlflow.sklearn

    model, example = iris
    other = tmp_path / "other-thread"
    errors: list[BaseException] = []

    def save_elsewhere() -> None:
        try:
            mlflow.sklearn.save_model(model, str(other), pip_requirements=["mlflow"])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    mine = tmp_path / "mine"
    with envbuild.capture():
        thread = threading.Thread(target=save_elsewhere)
        thread.start()
        thread.join()
        mlflow.sklearn.save_model(
            model, str(mine), input_example=example, pip_requirements=["mlflow"]
        )
    assert not errors
    assert {p.name for p in mine.iterdir()} >= CAPTURED_FILES
    assert not CAPTURED_FILES & {p.name for p in other.iterdir()}


LAZY_FLAVOR = """
import json, sys
import mlflow
import envbuild
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

assert "mlflow.sklearn" not in sys.modules  # mlflow imports flavors lazily
x, y = load_iris(return_X_y=True, as_frame=True)
with envbuild.capture():
    mlflow.sklearn.save_model(
        LogisticRegression(max_iter=500).fit(x, y), sys.argv[1], input_example=x.head(2),
        pip_requirements=["mlflow"],
    )
module = sys.modules["mlflow.sklearn"]
print(json.dumps({
    "loader": type(module.__loader__).__name__,
    "spec_loader": type(module.__spec__.loader).__name__,
    "restored": not hasattr(module.save_model, "__envbuild_original__"),
}))
"""


def test_a_flavor_first_imported_inside_the_block_is_captured(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", LAZY_FLAVOR, str(tmp_path / "model")],
        capture_output=True,
        text=True,
        env=clean_env(),
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {
        "loader": "SourceFileLoader",
        "spec_loader": "SourceFileLoader",
        "restored": True,
    }
    assert {p.name for p in (tmp_path / "model").iterdir()} >= CAPTURED_FILES


def test_infer_requirements_is_usable_as_pip_requirements(
    iris, tmp_path: Path, monkeypatch
) -> None:
    import mlflow.sklearn

    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    model, example = iris
    first = tmp_path / "first"
    mlflow.sklearn.save_model(model, str(first), input_example=example, pip_requirements=["mlflow"])
    requirements = infer_requirements(first)
    assert "scikit-learn==" + __import__("sklearn").__version__ in requirements
    second = tmp_path / "second"
    mlflow.sklearn.save_model(model, str(second), pip_requirements=requirements)
    assert (second / "requirements.txt").read_text().splitlines() == requirements

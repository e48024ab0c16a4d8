"""Session fixtures for integration tests: real MLflow models saved with the real ``mlflow``."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.mlflow_server import (  # noqa: F401 - session fixtures for every module
    captured,
    mlflow_server,
    registry,
)


@pytest.fixture(scope="session")
def sklearn_iris_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scikit-learn LogisticRegression on iris, saved by MLflow with signature and example."""
    mlflow_sklearn = pytest.importorskip("mlflow.sklearn")
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True, as_frame=True)
    model = LogisticRegression(max_iter=500).fit(X, y)
    path = tmp_path_factory.mktemp("models") / "sklearn-iris"
    mlflow_sklearn.save_model(model, str(path), input_example=X.head(3))
    return path


@pytest.fixture(scope="session")
def custom_pyfunc_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A custom ``mlflow.pyfunc.PythonModel`` (doubles its input), saved with pip_requirements.

    MLflow writes ``mlflow==<its version>`` plus the given requirements to requirements.txt.
    """
    mlflow_pyfunc = pytest.importorskip("mlflow.pyfunc")

    class Doubler(mlflow_pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            return model_input * 2

    path = tmp_path_factory.mktemp("models") / "custom-pyfunc"
    mlflow_pyfunc.save_model(str(path), python_model=Doubler(), pip_requirements=["scikit-learn"])
    return path


# ------------------------------------------------------------------------------------------
# The runtime tests' models and environments (tests/integration/test_runtime*.py), built by
# tests/integration/runtime_models.py once per session.


@pytest.fixture(scope="session")
def runtime_models_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("runtime-models")


@pytest.fixture(scope="session")
def runtime_sklearn(runtime_models_root: Path) -> Path:
    """LogisticRegression on iris (mlflow.sklearn), with a signature and an input example."""
    from tests.integration import runtime_models

    return runtime_models.build_sklearn_model(runtime_models_root)


@pytest.fixture(scope="session")
def runtime_pyfunc(runtime_models_root: Path) -> Path:
    """A models-from-code PythonModel with a params schema, stdout noise and a failure."""
    from tests.integration import runtime_models

    return runtime_models.build_pyfunc_model(runtime_models_root)


@pytest.fixture(scope="session")
def runtime_onnx(runtime_models_root: Path) -> Path:
    """An skl2onnx iris model saved with mlflow.onnx (tensor signature)."""
    from tests.integration import runtime_models

    return runtime_models.build_onnx_model(runtime_models_root)


@pytest.fixture(scope="session")
def runtime_tiny(runtime_models_root: Path) -> Path:
    """A pyfunc folder whose loader_module is in its code folder: needs pandas, not mlflow."""
    from tests.integration import runtime_models

    return runtime_models.build_tiny_linear_model(runtime_models_root)


@pytest.fixture(scope="session")
def runtime_iris_csv(runtime_models_root: Path) -> Path:
    from tests.integration import runtime_models

    path = runtime_models_root / "iris.csv"
    runtime_models.iris_frame()[0].to_csv(path, index=False)
    return path


@pytest.fixture(scope="session")
def runtime_py38(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Python 3.8 venv with scikit-learn, pandas, PyYAML and cloudpickle; no mlflow."""
    from tests.integration import runtime_models
    from tests.interpreters import python

    folder = tmp_path_factory.mktemp("py38") / "venv"
    return runtime_models.make_venv(folder, python("3.8"), runtime_models.PY38_PACKAGES)


@pytest.fixture(scope="session")
def runtime_bare38(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Python 3.8 with PyYAML only: no mlflow, no pandas, no numpy."""
    from tests.integration import runtime_models
    from tests.interpreters import python

    folder = tmp_path_factory.mktemp("bare38") / "venv"
    return runtime_models.make_venv(folder, python("3.8"), ["pyyaml"])


@pytest.fixture(scope="session")
def runtime_sk38(runtime_py38: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cloudpickled LogisticRegression trained by the Python 3.8 venv itself."""
    from tests.integration import runtime_models

    return runtime_models.build_tiny_sklearn_model(tmp_path_factory.mktemp("sk38"), runtime_py38)


@pytest.fixture(scope="session")
def runtime_mlflow2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Python 3.10 venv with MLflow 2.12 (whose scoring-server functions differ from 3.x)."""
    from tests.integration import runtime_models
    from tests.interpreters import python

    folder = tmp_path_factory.mktemp("mlflow2") / "venv"
    return runtime_models.make_venv(folder, python("3.10"), runtime_models.MLFLOW2_PACKAGES)


SAVE_310 = """
import json, sys
import mlflow.sklearn
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
X, y = load_iris(return_X_y=True, as_frame=True)
model = LogisticRegression(max_iter=500).fit(X, y)
mlflow.sklearn.save_model(model, sys.argv[1], input_example=X.head(5), serialization_format="cloudpickle")
print(json.dumps(model.predict(X.head(5)).tolist()))
"""


@pytest.fixture(scope="session")
def sklearn_310_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list]:
    """A model saved by MLflow running on Python 3.10, and the predictions it made there."""
    import json
    import subprocess

    from tests.integration import runtime_models
    from tests.interpreters import python

    root = tmp_path_factory.mktemp("py310")
    venv = runtime_models.make_venv(
        root / "venv", python("3.10"), ["mlflow-skinny", "scikit-learn", "pandas"]
    )
    out = subprocess.run(
        [str(venv), "-c", SAVE_310, str(root / "model")],
        capture_output=True,
        text=True,
        check=True,
    )
    return root / "model", json.loads(out.stdout.strip().splitlines()[-1])

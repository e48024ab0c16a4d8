"""Session fixtures for integration tests: real MLflow models saved with the real ``mlflow``."""

from __future__ import annotations

from pathlib import Path

import pytest


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

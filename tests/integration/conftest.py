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

"""`envbuild inspect` on a model saved by real MLflow reports exactly what MLflow wrote."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.integration


def test_inspect_matches_mlflow(sklearn_iris_model: Path) -> None:
    from mlflow.models import Model

    proc = run_cli("inspect", str(sklearn_iris_model), "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    written = Model.load(str(sklearn_iris_model))

    assert data["path"] == str(sklearn_iris_model.resolve())
    assert data["flavors"] == list(written.flavors)
    assert (
        data["loader_module"]
        == written.flavors["python_function"]["loader_module"]
        == "mlflow.sklearn"
    )
    assert data["python_version"] == platform.python_version()
    lines = [
        line.strip()
        for line in (sklearn_iris_model / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert data["requirements"] == lines
    assert any(r.startswith("scikit-learn==") for r in data["requirements"])
    assert data["signature"]["inputs"] == written.signature.inputs.to_dict()
    assert data["signature"]["outputs"] == written.signature.outputs.to_dict()
    assert data["input_example"] == str((sklearn_iris_model / "input_example.json").resolve())
    assert data["serving_input_example"].endswith("serving_input_example.json")
    assert data["model_uuid"] == written.model_uuid
    assert data["mlflow_version"] == written.mlflow_version
    assert data["utc_time_created"] == written.utc_time_created
    assert data["warnings"] == []

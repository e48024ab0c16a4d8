"""The runtime in a Python 3.8 environment without mlflow (scikit-learn, pandas, pyyaml, cloudpickle).

Proves the runner loads a pyfunc model through its ``loader_module`` alone, parses MLflow's request
formats itself, and writes the same bytes as MLflow does, on the oldest supported Python.
"""

from __future__ import annotations

import json
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import runtime_models as rm

pytestmark = [pytest.mark.integration, pytest.mark.network, pytest.mark.slow]


@pytest.fixture(scope="session")
def models_root(tmp_path_factory):
    return rm.memo("root", lambda: tmp_path_factory.mktemp("runtime-models"))


@pytest.fixture(scope="session")
def tiny_model(models_root):
    return rm.memo("tiny", lambda: rm.build_tiny_linear_model(models_root))


@pytest.fixture(scope="session")
def py38(tmp_path_factory):
    if not rm.PYTHON38.exists() or not rm.UV.exists():
        pytest.skip(f"needs {rm.PYTHON38} and {rm.UV}")
    folder = tmp_path_factory.mktemp("py38") / "venv"
    return rm.memo("py38", lambda: rm.make_venv(folder, rm.PYTHON38, rm.PY38_PACKAGES))


@pytest.fixture(scope="session")
def bare38(py38, tmp_path_factory):
    """Python 3.8 with PyYAML only: no mlflow, no pandas, no numpy."""
    folder = tmp_path_factory.mktemp("bare38") / "venv"
    return rm.memo("bare38", lambda: rm.make_venv(folder, rm.PYTHON38, ["pyyaml"]))


@pytest.fixture(scope="session")
def sk38_model(py38, tmp_path_factory):
    return rm.memo(
        "sk38", lambda: rm.build_tiny_sklearn_model(tmp_path_factory.mktemp("sk38"), py38)
    )


def test_environment_has_no_mlflow(py38, tiny_model):
    result = rm.run_runner("info", "--model", tiny_model, python=py38)
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["python_version"].startswith("3.8.")
    assert info["mlflow_present"] is False
    assert info["mlflow_version"] is None
    assert "scikit-learn" in info["distributions"]
    assert not any(name.lower().startswith("mlflow") for name in info["distributions"])


def test_pickled_sklearn_model_predicts_json_and_csv(py38, sk38_model, tmp_path):
    x, _ = rm.iris_frame()
    expected = json.loads((sk38_model / "expected.json").read_text())

    body = {"dataframe_split": json.loads(x.to_json(orient="split"))}
    (tmp_path / "iris.json").write_text(json.dumps(body))
    result = rm.run_runner(
        "predict", "--model", sk38_model, "--input", tmp_path / "iris.json", python=py38
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"predictions": expected}

    x.to_csv(tmp_path / "iris.csv", index=False)
    whole = rm.run_runner(
        "predict", "--model", sk38_model, "--input", tmp_path / "iris.csv", python=py38
    )
    chunked = rm.run_runner(
        "predict",
        "--model",
        sk38_model,
        "--input",
        tmp_path / "iris.csv",
        "--chunk-rows",
        "40",
        python=py38,
    )
    assert whole.returncode == chunked.returncode == 0, whole.stderr + chunked.stderr
    assert whole.stdout == chunked.stdout
    assert json.loads(whole.stdout) == {"predictions": expected}


def test_same_bytes_as_mlflow_on_another_python(py38, tiny_model, tmp_path):
    path = tmp_path / "tiny.json"
    path.write_text(
        json.dumps(
            {"dataframe_records": [{"a": 0.1, "b": 2}, {"a": 1e-7, "b": 3}], "params": {"scale": 3}}
        )
    )
    result = rm.run_runner("predict", "--model", tiny_model, "--input", path, python=py38)
    assert result.returncode == 0, result.stderr
    assert result.stdout == rm.mlflow_reference(tiny_model, path, "json")


def test_exit_codes(py38, tiny_model, tmp_path):
    missing = rm.run_runner(
        "predict", "--model", tiny_model, python=py38, stdin=b'{"dataframe_records": [{"a": 1.0}]}'
    )
    assert missing.returncode == 2
    assert b"['b']" in missing.stderr
    failing = rm.run_runner(
        "predict", "--model", tiny_model, python=py38, stdin=b'{"inputs": {"a": [-1.0], "b": [1]}}'
    )
    assert failing.returncode == 5
    assert b"ArithmeticError: negative a is not allowed" in failing.stderr


def test_mlflow_flavor_without_mlflow_is_a_clear_load_failure(py38, tmp_path):
    import yaml

    model = tmp_path / "needs-mlflow"
    model.mkdir()
    meta = {
        "flavors": {
            "python_function": {"loader_module": "mlflow.sklearn", "model_path": "model.pkl"}
        }
    }
    (model / "MLmodel").write_text(yaml.safe_dump(meta))
    result = rm.run_runner("predict", "--model", model, python=py38, stdin=b"{}")
    assert result.returncode == 5
    assert b"mlflow.sklearn" in result.stderr and b"needs mlflow" in result.stderr


def test_server_on_python_38(py38, tiny_model, tmp_path):
    server = rm.RunningServer(tiny_model, tmp_path, python=py38, workers=2)
    try:
        status, _, body = server.post("a,b\n1.0,1\n2.0,2\n", "text/csv")
        assert (status, body) == (200, b'{"predictions": [2.5, 5.0]}')
        status, _, body = server.post({"inputs": {"a": [-1.0], "b": [1]}})
        assert status == 500 and b"ArithmeticError" in body
        assert server.post({"dataframe_records": [{"a": 1.0}]})[0] == 400
        version = json.loads(server.request("GET", "/version")[2])
        assert version["python_version"].startswith("3.8.")
        assert version["mlflow_version"] is None
        doc = json.loads(server.request("GET", "/openapi.json")[2])
        pytest.importorskip("openapi_spec_validator").validate(doc)
    finally:
        assert server.stop() == 0, server.log()


def test_without_pandas_the_model_gets_records(bare38, tiny_model, tmp_path):
    request = {"dataframe_split": {"columns": ["a", "b"], "data": [[1.5, 2], [0.25, 3]]}}
    result = rm.run_runner(
        "predict", "--model", tiny_model, python=bare38, stdin=json.dumps(request).encode()
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == b'{"predictions": [4.75, 6.125]}'

    path = tmp_path / "rows.csv"
    path.write_text("a,b\n1.5,2\n0.25,3\n1.0,1\n")
    chunked = rm.run_runner(
        "predict", "--model", tiny_model, "--input", path, "--chunk-rows", "2", python=bare38
    )
    assert chunked.returncode == 0, chunked.stderr
    assert chunked.stdout == b'{"predictions": [4.75, 6.125, 2.5]}'

    bad = path.with_name("bad.csv")
    bad.write_text("a,b\n1.5,two\n")
    result = rm.run_runner("predict", "--model", tiny_model, "--input", bad, python=bare38)
    assert result.returncode == 2
    assert b"column 'b'" in result.stderr

    missing = rm.run_runner(
        "predict",
        "--model",
        tiny_model,
        python=bare38,
        stdin=b'{"dataframe_records": [{"a": 1.0}]}',
    )
    assert missing.returncode == 2
    assert b"['b']" in missing.stderr

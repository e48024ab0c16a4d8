"""The runtime in a Python 3.8 environment without mlflow (scikit-learn, pandas, pyyaml, cloudpickle).

Proves the runner loads a pyfunc model through its ``loader_module`` alone, parses MLflow's request
formats itself, and writes the same bytes as MLflow does, on the oldest supported Python.
"""

from __future__ import annotations

import json

import pytest

from tests.integration import runtime_models as rm

pytestmark = [pytest.mark.integration, pytest.mark.network, pytest.mark.slow]


def test_environment_has_no_mlflow(runtime_py38, runtime_tiny):
    result = rm.run_runner("info", "--model", runtime_tiny, python=runtime_py38)
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["python_version"].startswith("3.8.")
    assert info["mlflow_present"] is False
    assert info["mlflow_version"] is None
    assert "scikit-learn" in info["distributions"]
    assert not any(name.lower().startswith("mlflow") for name in info["distributions"])


def test_pickled_sklearn_model_predicts_json_and_csv(runtime_py38, runtime_sk38, tmp_path):
    x, _ = rm.iris_frame()
    expected = json.loads((runtime_sk38 / "expected.json").read_text())

    body = {"dataframe_split": json.loads(x.to_json(orient="split"))}
    (tmp_path / "iris.json").write_text(json.dumps(body))
    result = rm.run_runner(
        "predict", "--model", runtime_sk38, "--input", tmp_path / "iris.json", python=runtime_py38
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"predictions": expected}

    x.to_csv(tmp_path / "iris.csv", index=False)
    whole = rm.run_runner(
        "predict", "--model", runtime_sk38, "--input", tmp_path / "iris.csv", python=runtime_py38
    )
    chunked = rm.run_runner(
        "predict",
        "--model",
        runtime_sk38,
        "--input",
        tmp_path / "iris.csv",
        "--chunk-rows",
        "40",
        python=runtime_py38,
    )
    assert whole.returncode == chunked.returncode == 0, whole.stderr + chunked.stderr
    assert whole.stdout == chunked.stdout
    assert json.loads(whole.stdout) == {"predictions": expected}


def test_same_bytes_as_mlflow_on_another_python(runtime_py38, runtime_tiny, tmp_path):
    path = tmp_path / "tiny.json"
    path.write_text(
        json.dumps(
            {"dataframe_records": [{"a": 0.1, "b": 2}, {"a": 1e-7, "b": 3}], "params": {"scale": 3}}
        )
    )
    result = rm.run_runner("predict", "--model", runtime_tiny, "--input", path, python=runtime_py38)
    assert result.returncode == 0, result.stderr
    assert result.stdout == rm.mlflow_reference(runtime_tiny, path, "json")


def test_exit_codes(runtime_py38, runtime_tiny, tmp_path):
    missing = rm.run_runner(
        "predict",
        "--model",
        runtime_tiny,
        python=runtime_py38,
        stdin=b'{"dataframe_records": [{"a": 1.0}]}',
    )
    assert missing.returncode == 2
    assert b"['b']" in missing.stderr
    failing = rm.run_runner(
        "predict",
        "--model",
        runtime_tiny,
        python=runtime_py38,
        stdin=b'{"inputs": {"a": [-1.0], "b": [1]}}',
    )
    assert failing.returncode == 5
    assert b"ArithmeticError: negative a is not allowed" in failing.stderr


def test_mlflow_flavor_without_mlflow_is_a_clear_load_failure(runtime_py38, tmp_path):
    import yaml

    model = tmp_path / "needs-mlflow"
    model.mkdir()
    meta = {
        "flavors": {
            "python_function": {"loader_module": "mlflow.sklearn", "model_path": "model.pkl"}
        }
    }
    (model / "MLmodel").write_text(yaml.safe_dump(meta))
    result = rm.run_runner("predict", "--model", model, python=runtime_py38, stdin=b"{}")
    assert result.returncode == 5
    assert b"mlflow.sklearn" in result.stderr and b"needs mlflow" in result.stderr


def test_server_on_python_38(runtime_py38, runtime_tiny, tmp_path):
    server = rm.RunningServer(runtime_tiny, tmp_path, python=runtime_py38, workers=2)
    try:
        status, _, body = server.post("a,b\n1.0,1\n2.0,2\n", "text/csv")
        assert (status, body) == (200, b'{"predictions": [2.5, 5.0]}')
        status, _, body = server.post({"inputs": {"a": [-1.0], "b": [1]}})
        assert status == 400 and b"ArithmeticError" in body  # as MLflow: BAD_REQUEST
        assert server.post({"dataframe_records": [{"a": 1.0}]})[0] == 400
        version = json.loads(server.request("GET", "/metadata")[2])
        assert version["python_version"].startswith("3.8.")
        assert version["mlflow_version"] is None
        status, _, body = server.post(b"PAR1", "application/vnd.apache.parquet")
        assert status == 415 and b"pyarrow" in body  # pandas without a Parquet engine
        doc = json.loads(server.request("GET", "/openapi.json")[2])
        pytest.importorskip("openapi_spec_validator").validate(doc)
    finally:
        assert server.stop() == 0, server.log()


def test_without_pandas_the_model_gets_records(runtime_bare38, runtime_tiny, tmp_path):
    request = {"dataframe_split": {"columns": ["a", "b"], "data": [[1.5, 2], [0.25, 3]]}}
    result = rm.run_runner(
        "predict",
        "--model",
        runtime_tiny,
        python=runtime_bare38,
        stdin=json.dumps(request).encode(),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == b'{"predictions": [4.75, 6.125]}'

    path = tmp_path / "rows.csv"
    path.write_text("a,b\n1.5,2\n0.25,3\n1.0,1\n")
    chunked = rm.run_runner(
        "predict",
        "--model",
        runtime_tiny,
        "--input",
        path,
        "--chunk-rows",
        "2",
        python=runtime_bare38,
    )
    assert chunked.returncode == 0, chunked.stderr
    assert chunked.stdout == b'{"predictions": [4.75, 6.125, 2.5]}'

    bad = path.with_name("bad.csv")
    bad.write_text("a,b\n1.5,two\n")
    result = rm.run_runner(
        "predict", "--model", runtime_tiny, "--input", bad, python=runtime_bare38
    )
    assert result.returncode == 2
    assert b"column 'b'" in result.stderr

    missing = rm.run_runner(
        "predict",
        "--model",
        runtime_tiny,
        python=runtime_bare38,
        stdin=b'{"dataframe_records": [{"a": 1.0}]}',
    )
    assert missing.returncode == 2
    assert b"['b']" in missing.stderr

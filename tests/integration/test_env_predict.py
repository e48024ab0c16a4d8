"""`envbuild env|predict|serve|run` on real MLflow models: the model runs in its own cached
virtualenv and predicts exactly what MLflow predicts.

Models: scikit-learn (Python 3.11), a custom PythonModel (cloudpickle), ONNX, and scikit-learn
saved from a Python 3.10 interpreter (so its environment must be 3.10).
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.integration.mlflow_oracle import mlflow_predictions

pytestmark = [pytest.mark.integration, pytest.mark.network, pytest.mark.slow]


@pytest.fixture(scope="module")
def onnx_model(runtime_onnx: Path) -> Path:
    return runtime_onnx


def predict_json(model: Path, *extra: str) -> list:
    proc = run_cli("predict", str(model), *extra)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)["predictions"]


def test_sklearn_env_is_built_then_reused(sklearn_iris_model: Path) -> None:
    first = run_cli("env", str(sklearn_iris_model), "--json")
    assert first.returncode == 0, first.stderr
    data = json.loads(first.stdout)
    assert data["interpreter"]["version"].startswith("3.11")
    assert data["interpreter"]["reason"]
    assert data["lock_source"] == "cache"
    assert not (sklearn_iris_model / "pylock.toml").exists(), "never writes into the model folder"
    second = json.loads(run_cli("env", str(sklearn_iris_model), "--json").stdout)
    assert second["environment"]["path"] == data["environment"]["path"]
    assert second["environment"]["built"] is False
    path = run_cli("env", str(sklearn_iris_model), "--print-path")
    assert path.stdout.strip() == data["environment"]["path"]


def test_sklearn_predict_equals_mlflow(sklearn_iris_model: Path) -> None:
    request = json.loads((sklearn_iris_model / "serving_input_example.json").read_text())
    assert predict_json(sklearn_iris_model) == mlflow_predictions(sklearn_iris_model, request)


def test_predict_output_file_and_csv(sklearn_iris_model: Path, tmp_path: Path) -> None:
    import pandas as pd
    from sklearn.datasets import load_iris

    X = load_iris(as_frame=True).data.head(20)
    csv = tmp_path / "in.csv"
    X.to_csv(csv, index=False)
    out = tmp_path / "out.json"
    proc = run_cli("predict", str(sklearn_iris_model), "-i", str(csv), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    expected = mlflow_predictions(
        sklearn_iris_model, {"dataframe_split": json.loads(X.to_json(orient="split", index=False))}
    )
    assert json.loads(out.read_text())["predictions"] == expected
    del pd


def test_custom_pyfunc_predict(custom_pyfunc_model: Path, tmp_path: Path) -> None:
    request = {"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2.5], [3, -1.0]]}}
    (tmp_path / "req.json").write_text(json.dumps(request))
    got = predict_json(custom_pyfunc_model, "-i", str(tmp_path / "req.json"))
    assert got == mlflow_predictions(custom_pyfunc_model, request)
    assert got == [{"a": 2, "b": 5.0}, {"a": 6, "b": -2.0}]


def test_onnx_predict(onnx_model: Path) -> None:
    got = predict_json(onnx_model)
    request = json.loads((onnx_model / "serving_input_example.json").read_text())
    assert got == mlflow_predictions(onnx_model, request)


def test_python_310_model_runs_on_310(sklearn_310_model: tuple[Path, list]) -> None:
    model, expected = sklearn_310_model
    env = json.loads(run_cli("env", str(model), "--json").stdout)
    assert env["interpreter"]["version"].startswith("3.10.")
    assert env["environment"]["python_version"].startswith("3.10.")
    assert predict_json(model) == expected


def test_run_executes_inside_the_environment(sklearn_iris_model: Path) -> None:
    proc = run_cli(
        "run",
        str(sklearn_iris_model),
        "--",
        "python",
        "-c",
        "import sys, sklearn; print(sys.prefix); print(sklearn.__version__)",
    )
    assert proc.returncode == 0, proc.stderr
    prefix, version = proc.stdout.split()
    env = json.loads(run_cli("env", str(sklearn_iris_model), "--json").stdout)
    assert prefix == env["environment"]["path"]
    assert f"scikit-learn=={version}" in (sklearn_iris_model / "requirements.txt").read_text()
    failing = run_cli("run", str(sklearn_iris_model), "--", "python", "-c", "raise SystemExit(7)")
    assert failing.returncode == 7


def test_serve_answers_every_endpoint(sklearn_iris_model: Path) -> None:
    run_cli("env", str(sklearn_iris_model))  # build first: the server start is what is timed out
    server = subprocess.Popen(
        [sys.executable, "-m", "envbuild", "serve", str(sklearn_iris_model), "--port", "0"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        port = None
        deadline = time.monotonic() + 120
        while port is None and time.monotonic() < deadline:
            line = server.stderr.readline()
            match = re.search(r"listening on http://[^:]+:(\d+)", line)
            if match:
                port = int(match.group(1))
            assert server.poll() is None, "server exited early"
        assert port, "the server never said where it listens"
        base = f"http://127.0.0.1:{port}"
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{base}/ping", timeout=5) as resp:
                    if resp.status == 200:
                        break
            except urllib.error.HTTPError as exc:
                assert exc.code == 503
            time.sleep(0.2)
        for path in ("/metadata", "/openapi.json"):
            with urllib.request.urlopen(base + path, timeout=10) as resp:
                assert resp.status == 200
                json.loads(resp.read())
        body = (sklearn_iris_model / "serving_input_example.json").read_bytes()
        req = urllib.request.Request(
            f"{base}/invocations", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            got = json.loads(resp.read())["predictions"]
        assert got == mlflow_predictions(sklearn_iris_model, json.loads(body))
        bad = urllib.request.Request(
            f"{base}/invocations", data=b'{"nope": 1}', headers={"Content-Type": "application/json"}
        )
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(bad, timeout=10)
        assert info.value.code == 400
    finally:
        server.send_signal(signal.SIGTERM)
        code = server.wait(timeout=30)
    assert code == 0


def test_model_that_fails_to_load_exits_5(sklearn_iris_model: Path, tmp_path: Path) -> None:
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(sklearn_iris_model, broken)
    from envbuild.model import load_model

    (broken / load_model(broken).pyfunc.data).write_bytes(b"this is not a model file")
    proc = run_cli("predict", str(broken))
    assert proc.returncode == 5
    assert proc.stdout == ""
    last = proc.stderr.strip().splitlines()[-1]
    assert "Traceback" not in proc.stderr
    assert last.startswith("error: ") and "load" in last.lower()


def test_bad_input_file_exits_2(sklearn_iris_model: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"dataframe_split": {"columns": ["x"], ')
    proc = run_cli("predict", str(sklearn_iris_model), "-i", str(bad))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    missing = run_cli("predict", str(sklearn_iris_model), "-i", str(tmp_path / "nope.json"))
    assert missing.returncode == 2 and "input file not found" in missing.stderr


def test_no_interpreter_for_the_model_exits_4(sklearn_iris_model: Path, tmp_path: Path) -> None:
    import shutil

    # a Python that exists but is not installed here (3.99 does not exist: exit 2 at inspect time)
    model = tmp_path / "py315"
    shutil.copytree(sklearn_iris_model, model)
    text = (model / "python_env.yaml").read_text()
    (model / "python_env.yaml").write_text(re.sub(r"python: .*", "python: 3.15.0", text))
    # --kind venv: without it, a model with a conda.yaml whose Python is not installed here gets
    # the conda kind (its channel brings the interpreter; test_conda_kind.py covers that)
    proc = run_cli("env", str(model), "--kind", "venv")
    assert proc.returncode == 4
    assert "no Python 3.15.0" in proc.stderr and "installed:" in proc.stderr
    assert "hint:" in proc.stderr

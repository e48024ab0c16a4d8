"""Real MLflow models and process helpers for the runtime tests (tests/integration/test_runtime*.py).

Models are built once per test session (memoized here, because several test modules use them)
under pytest's session temp folder. The runner is always run as a subprocess, by path, with a
chosen interpreter: the dev venv's Python plays the model environment with mlflow, a throwaway
Python 3.8 venv the one without.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RUNTIME_DIR = REPO / "envbuild" / "runtime"
RUNNER = RUNTIME_DIR / "runner.py"
DEV_PYTHON = Path(sys.executable)
PYTHON38 = Path("/root/.pyenv/versions/3.8.18/bin/python")
UV = Path(sys.executable).parent / "uv"

# Subprocesses may write bytecode, but only here (gitignored), never into the source tree or a venv:
# an mlflow import with .pyc files takes half the time (see shared/MACHINE.md).
BYTECODE_CACHE = REPO / ".pytest_cache" / "runtime-pycache"

_memo: dict = {}
_lock = threading.Lock()


def memo(key, build):
    """Build once per session; several test modules share the same models."""
    with _lock:
        if key not in _memo:
            _memo[key] = build()
        return _memo[key]


def speed_env() -> dict:
    return {"PYTHONPYCACHEPREFIX": str(BYTECODE_CACHE)}


def subprocess_env(extra=None) -> dict:
    env = dict(os.environ)
    for name in (
        "ENVBUILD_DEBUG",
        "ENVBUILD_WORKERS",
        "ENVBUILD_NO_MLFLOW",
        "ENVBUILD_MAX_BODY_BYTES",
        "PYTHONDONTWRITEBYTECODE",
    ):
        env.pop(name, None)
    env.update(speed_env())
    env.update(extra or {})
    return env


def iris_frame():
    from sklearn.datasets import load_iris

    data = load_iris(as_frame=True)
    return data.data, data.target


# ------------------------------------------------------------------------------------------
# Models


def build_sklearn_model(root: Path) -> Path:
    """LogisticRegression on iris, saved with mlflow.sklearn with a signature and input example."""
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    x, y = iris_frame()
    model = LogisticRegression(max_iter=1000).fit(x, y)
    path = root / "sklearn_iris"
    mlflow.sklearn.save_model(
        model,
        str(path),
        signature=infer_signature(x, model.predict(x)),
        input_example=x.head(3),
        pip_requirements=["mlflow", "scikit-learn"],  # skips MLflow's slow requirement inference
    )
    return path


PYFUNC_CODE = """
import os
import time

import mlflow
import pandas as pd


class Scaler(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        time.sleep(float(os.environ.get("RUNTIME_TEST_LOAD_DELAY", "0")))

    def predict(self, context, model_input, params=None):
        print("model noise on sys.stdout")
        os.write(1, b"model noise on file descriptor 1\\n")
        if (model_input["x"] < 0).any():
            raise ValueError("boom: negative x")
        scale = (params or {}).get("scale", 1.0)
        return pd.DataFrame(
            {"y": model_input["x"] * scale, "label": model_input["name"].str.upper()}
        )


mlflow.models.set_model(Scaler())
"""


def build_pyfunc_model(root: Path) -> Path:
    """A custom PythonModel (models-from-code) with a params schema, stdout noise and a failure."""
    import mlflow.pyfunc
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema

    code = root / "scaler_model_code.py"
    code.write_text(PYFUNC_CODE)
    signature = ModelSignature(
        inputs=Schema([ColSpec("double", "x"), ColSpec("string", "name")]),
        outputs=Schema([ColSpec("double", "y"), ColSpec("string", "label")]),
        params=ParamSchema([ParamSpec("scale", "double", 1.0)]),
    )
    path = root / "pyfunc_scaler"
    mlflow.pyfunc.save_model(
        str(path),
        python_model=str(code),
        signature=signature,
        pip_requirements=["mlflow", "pandas"],
    )
    return path


def build_onnx_model(root: Path) -> Path:
    """skl2onnx conversion of an iris LogisticRegression, saved with mlflow.onnx (tensor signature)."""
    import mlflow.onnx
    import numpy as np
    from mlflow.models import infer_signature
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    x, y = iris_frame()
    features = x.to_numpy(dtype=np.float32)
    model = LogisticRegression(max_iter=1000).fit(features, y)
    onx = to_onnx(model, features[:1], options={id(model): {"zipmap": False}})
    path = root / "onnx_iris"
    mlflow.onnx.save_model(
        onx,
        str(path),
        signature=infer_signature(features),
        input_example=features[:3],
        pip_requirements=["mlflow", "onnxruntime"],
    )
    return path


TINY_LOADER = '''
"""Loader module of a model folder that needs no mlflow (MLflow's pyfunc loader protocol)."""
import json
import os
import time


class Linear:
    def __init__(self, coef):
        self.coef = coef

    def predict(self, model_input, params=None):
        time.sleep(float(os.environ.get("RUNTIME_TEST_PREDICT_DELAY", "0")))
        scale = (params or {}).get("scale", 1.0)
        if isinstance(model_input, list):  # records, from a runtime without pandas
            return [(r["a"] * self.coef["a"] + r["b"] * self.coef["b"]) * scale
                    for r in model_input]
        if (model_input["a"] < 0).any():
            raise ArithmeticError("negative a is not allowed")
        out = (model_input["a"] * self.coef["a"] + model_input["b"] * self.coef["b"]) * scale
        return out.to_numpy()


def _load_pyfunc(path):
    import openapi  # the model's own module of that name, not the runtime's

    assert openapi.WHO == "the model", openapi
    time.sleep(float(os.environ.get("RUNTIME_TEST_LOAD_DELAY", "0")))
    if os.path.exists(os.path.join(path, "model.pkl")):
        import cloudpickle

        with open(os.path.join(path, "model.pkl"), "rb") as handle:
            return cloudpickle.load(handle)
    with open(os.path.join(path, "coef.json")) as handle:
        return Linear(json.load(handle))
'''


def _write_tiny_folder(path: Path, inputs, params=None, outputs=None):
    import yaml

    (path / "code").mkdir(parents=True)
    (path / "data").mkdir()
    (path / "code" / "envbuild_tiny_loader.py").write_text(TINY_LOADER)
    # A module named like the runtime's own sibling files: the model must get this one.
    (path / "code" / "openapi.py").write_text("WHO = 'the model'\n")
    signature = {"inputs": json.dumps(inputs)}
    if outputs:
        signature["outputs"] = json.dumps(outputs)
    if params:
        signature["params"] = json.dumps(params)
    meta = {
        "flavors": {
            "python_function": {
                "loader_module": "envbuild_tiny_loader",
                "code": "code",
                "data": "data",
                "python_version": "3.8.18",
            }
        },
        "model_uuid": uuid.uuid4().hex,
        "run_id": "run-" + uuid.uuid4().hex[:8],
        "mlflow_version": "2.9.2",
        "signature": signature,
        "utc_time_created": "2024-01-01 00:00:00.000000",
    }
    (path / "MLmodel").write_text(yaml.safe_dump(meta, sort_keys=False))
    return path


def build_tiny_linear_model(root: Path) -> Path:
    """A pyfunc folder whose loader_module lives in its code dir; pandas only, no pickles."""
    path = _write_tiny_folder(
        root / "tiny_linear",
        inputs=[
            {"type": "double", "name": "a", "required": True},
            {"type": "long", "name": "b", "required": True},
        ],
        outputs=[{"type": "double", "required": True}],
        params=[{"name": "scale", "type": "double", "default": 1.0, "shape": None}],
    )
    (path / "data" / "coef.json").write_text(json.dumps({"a": 0.5, "b": 2.0}))
    return path


def build_tiny_sklearn_model(root: Path, python: Path) -> Path:
    """Same loader protocol with a cloudpickled LogisticRegression trained by ``python`` itself
    (pickles do not cross scikit-learn versions), plus that interpreter's own predictions."""
    x, _ = iris_frame()
    path = _write_tiny_folder(
        root / "tiny_sklearn",
        inputs=[{"type": "double", "name": name, "required": True} for name in x.columns],
    )
    script = textwrap.dedent(
        """
        import json, sys, cloudpickle
        from sklearn.datasets import load_iris
        from sklearn.linear_model import LogisticRegression
        x, y = load_iris(return_X_y=True, as_frame=True)
        model = LogisticRegression(max_iter=1000).fit(x, y)
        with open(sys.argv[1], "wb") as handle:
            cloudpickle.dump(model, handle)
        json.dump(model.predict(x).tolist(), open(sys.argv[2], "w"))
        """
    )
    subprocess.run(
        [str(python), "-c", script, str(path / "data" / "model.pkl"), str(path / "expected.json")],
        check=True,
        capture_output=True,
    )
    return path


def make_venv(folder: Path, python: Path, packages) -> Path:
    """A uv venv of ``python`` with ``packages``; returns its interpreter."""
    env = dict(os.environ, UV_PYTHON_DOWNLOADS="never")
    subprocess.run(
        [str(UV), "venv", "--python", str(python), str(folder)],
        check=True,
        capture_output=True,
        env=env,
    )
    interpreter = folder / "bin" / "python"
    subprocess.run(
        [str(UV), "pip", "install", "--python", str(interpreter), *packages],
        check=True,
        capture_output=True,
        env=env,
    )
    return interpreter


PY38_PACKAGES = ["scikit-learn", "pandas", "pyyaml", "cloudpickle"]
PYTHON310 = Path("/root/.pyenv/versions/3.10.13/bin/python")
# MLflow 2.12's scoring code predates ``_parse_json_data``; it imports pkg_resources.
MLFLOW2_PACKAGES = ["mlflow==2.12.2", "numpy<2", "pandas<2.2", "setuptools<70"]


# ------------------------------------------------------------------------------------------
# Running the runner


def run_runner(*args, python=DEV_PYTHON, stdin=None, env=None, timeout=180, runner=RUNNER):
    """Run ``python runner.py ARGS``; stdout and stderr are returned as bytes/str."""
    return subprocess.run(
        [str(python), str(runner), *[str(a) for a in args]],
        input=stdin,
        capture_output=True,
        env=subprocess_env(env),
        timeout=timeout,
    )


def mlflow_reference(model_dir: Path, input_path: Path, content_type: str) -> bytes:
    """What ``mlflow models predict --env-manager local`` writes, computed in this process with
    the function that command calls (mlflow.pyfunc.scoring_server._predict)."""
    from mlflow.pyfunc import scoring_server

    key = ("reference", str(model_dir), str(input_path), content_type)

    def build():
        out = input_path.parent / (f"ref-{input_path.stem}-{uuid.uuid4().hex[:6]}.json")
        scoring_server._predict(str(model_dir), str(input_path), str(out), content_type)
        return out.read_bytes()

    return memo(key, build)


def mlflow_server_reference(model_dir: Path, body: bytes, content_type: str):
    """(status, body) that MLflow's own scoring server answers for this request body."""
    import mlflow.pyfunc
    from mlflow.exceptions import MlflowException
    from mlflow.pyfunc import scoring_server

    model = memo(("loaded", str(model_dir)), lambda: mlflow.pyfunc.load_model(str(model_dir)))
    try:
        result = scoring_server.invocations(
            body, content_type, model, model.metadata.get_input_schema()
        )
    except MlflowException as exc:
        return exc.get_http_status_code(), exc.message.encode()
    return result.status, result.response.encode()


class RunningServer:
    """``runner.py serve`` on a free loopback port (``--port 0``), stopped with SIGTERM."""

    def __init__(
        self, model_dir, tmp: Path, python=DEV_PYTHON, workers=None, env=None, wait_ready=True
    ):
        self.log_path = tmp / (f"server-{uuid.uuid4().hex[:8]}.log")
        args = [
            str(python),
            str(RUNNER),
            "serve",
            "--model",
            str(model_dir),
            "--host",
            "127.0.0.1",
            "--port",
            "0",
        ]
        if workers is not None:
            args += ["--workers", str(workers)]
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=self._log, env=subprocess_env(env)
        )
        self.port = self._wait_port()
        if wait_ready:
            self.wait_ready()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def _wait_port(self, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(r"listening on http://127\.0\.0\.1:(\d+)", self.log())
            if match:
                return int(match.group(1))
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}:\n{self.log()}")
            time.sleep(0.05)
        raise RuntimeError("server did not bind:\n" + self.log())

    def wait_ready(self, timeout=120):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.request("GET", "/ping")[0] == 200:
                    return
            except OSError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}:\n{self.log()}")
            time.sleep(0.1)
        raise RuntimeError("server never became ready:\n" + self.log())

    def request(self, method, path, body=None, headers=None, timeout=60):
        """One request on a fresh connection: (status, headers dict, body bytes)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            conn.close()

    def post(self, body, content_type="application/json", path="/invocations"):
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        if isinstance(body, str):
            body = body.encode()
        return self.request("POST", path, body=body, headers={"Content-Type": content_type})

    def stop(self, timeout=60) -> int:
        """SIGTERM, wait, and return the exit code; ``self.stdout`` is what it wrote there."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.stdout, _ = self.proc.communicate(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self._log.close()
        return self.proc.returncode


def child_pids(pid: int) -> list[int]:
    """Live child processes of ``pid`` (from /proc)."""
    children = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path("/proc", entry, "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            children.append(int(entry))
    return children


def copy_runtime(dest: Path) -> Path:
    """The runtime files alone, as an image gets them; returns the copied runner.py."""
    shutil.copytree(RUNTIME_DIR, dest, ignore=shutil.ignore_patterns("__pycache__"))
    return dest / "runner.py"

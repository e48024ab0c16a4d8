"""Real MLflow models and process helpers for the runtime tests (tests/integration/test_runtime*.py).

The models are session fixtures (``runtime_*`` in tests/integration/conftest.py) built by the
functions here under pytest's session temp folder. The runner is always run as a subprocess, by
path, with a chosen interpreter: the dev venv's Python plays the model environment with MLflow,
throwaway venvs of Python 3.8 (found by envbuild's discovery, ``tests/interpreters.py``) the ones
without, and a Python 3.10 venv the one with MLflow 2.

Servers are watched through their log (``ServerLog``): tests wait for the line that says what
they need ("listening on", "model loaded", a gate reached), never for a fixed time.
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

# Subprocesses may write bytecode, but only here (gitignored), never into the source tree or a venv:
# an mlflow import with .pyc files takes half the time (see shared/MACHINE.md).
BYTECODE_CACHE = REPO / ".pytest_cache" / "runtime-pycache"
WAIT_SECONDS = 180.0

_references: dict = {}
_references_lock = threading.Lock()


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

import mlflow
import pandas as pd


class Scaler(mlflow.pyfunc.PythonModel):
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
"""Loader module of a model folder that needs no mlflow (MLflow's pyfunc loader protocol).

RUNTIME_TEST_LOAD_GATE / RUNTIME_TEST_PREDICT_GATE name a folder: loading (predicting) says so on
stderr and then waits until the test creates "release" in it.
"""
import json
import os
import sys
import time


def gate(variable, what):
    folder = os.environ.get(variable)
    if not folder:
        return
    sys.stderr.write("gate: %s waiting (pid %d)\\n" % (what, os.getpid()))
    sys.stderr.flush()
    while not os.path.exists(os.path.join(folder, "release")):
        time.sleep(0.01)


class Linear:
    def __init__(self, coef):
        self.coef = coef

    def predict(self, model_input, params=None):
        gate("RUNTIME_TEST_PREDICT_GATE", "predict")
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
    gate("RUNTIME_TEST_LOAD_GATE", "load")
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
    from envbuild.proc import uv_bin

    uv = uv_bin()
    env = dict(os.environ, UV_PYTHON_DOWNLOADS="never")
    subprocess.run(
        [str(uv), "venv", "--python", str(python), str(folder)],
        check=True,
        capture_output=True,
        env=env,
    )
    interpreter = folder / "bin" / "python"
    subprocess.run(
        [str(uv), "pip", "install", "--python", str(interpreter), *packages],
        check=True,
        capture_output=True,
        env=env,
    )
    return interpreter


PY38_PACKAGES = ["scikit-learn", "pandas", "pyyaml", "cloudpickle"]
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


def _reference(key, build):
    with _references_lock:
        if key not in _references:
            _references[key] = build()
        return _references[key]


def mlflow_reference(model_dir: Path, input_path: Path, content_type: str) -> bytes:
    """What ``mlflow models predict --env-manager local`` writes, computed in this process with
    the function that command calls (mlflow.pyfunc.scoring_server._predict)."""
    from mlflow.pyfunc import scoring_server

    def build():
        out = input_path.parent / (f"ref-{input_path.stem}-{uuid.uuid4().hex[:6]}.json")
        scoring_server._predict(str(model_dir), str(input_path), str(out), content_type)
        return out.read_bytes()

    return _reference(("predict", str(model_dir), str(input_path), content_type), build)


def mlflow_server_reference(model_dir: Path, body: bytes, content_type: str):
    """(status, body) that MLflow's own scoring server answers for this request body."""
    import mlflow.pyfunc
    from mlflow.exceptions import MlflowException
    from mlflow.pyfunc import scoring_server

    model = _reference(("loaded", str(model_dir)), lambda: mlflow.pyfunc.load_model(str(model_dir)))
    try:
        result = scoring_server.invocations(
            body, content_type, model, model.metadata.get_input_schema()
        )
    except MlflowException as exc:
        return exc.get_http_status_code(), exc.message.encode()
    return result.status, result.response.encode()


class ServerLog:
    """The lines a server writes on a stream, collected by a thread, waited on by condition."""

    def __init__(self, stream, path: Path) -> None:
        self.lines: list[str] = []
        self.closed = False
        self._cond = threading.Condition()
        self._file = open(path, "w")  # noqa: SIM115 - closed by the reading thread
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream) -> None:
        try:
            for raw in iter(stream.readline, b""):
                line = raw.decode(errors="replace").rstrip("\n")
                self._file.write(line + "\n")
                self._file.flush()
                with self._cond:
                    self.lines.append(line)
                    self._cond.notify_all()
        finally:
            self._file.close()
            with self._cond:
                self.closed = True
                self._cond.notify_all()

    def text(self) -> str:
        with self._cond:
            return "\n".join(self.lines)

    def matches(self, pattern: str) -> list[re.Match]:
        with self._cond:
            return [m for m in (re.search(pattern, line) for line in self.lines) if m]

    def wait_for(self, pattern: str, count: int = 1, timeout: float = WAIT_SECONDS) -> list:
        """The first ``count`` lines matching ``pattern``, once the server has written them;
        RuntimeError if it stops writing (exits) or ``timeout`` passes first."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [m for m in (re.search(pattern, line) for line in self.lines) if m]
                if len(found) >= count:
                    return found[:count]
                left = deadline - time.monotonic()
                if self.closed or left <= 0:
                    why = "exited" if self.closed else f"said nothing like it in {timeout:.0f} s"
                    raise RuntimeError(
                        f"waiting for {count} x {pattern!r}: the server {why}:\n"
                        + "\n".join(self.lines)
                    )
                self._cond.wait(left)

    def join(self, timeout: float = 30) -> None:
        self._thread.join(timeout)


def http_request(port, method, path, body=None, headers=None, timeout=60):
    """One request on a fresh connection: (status, headers dict, body bytes)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


class RunningServer:
    """``runner.py serve`` on a free loopback port (``--port 0``), stopped with SIGTERM.

    ``wait_ready`` waits until every worker has said "model loaded", then checks ``/ping``.
    """

    def __init__(
        self, model_dir, tmp: Path, python=DEV_PYTHON, workers=None, env=None, wait_ready=True
    ):
        self.workers = workers or int((env or {}).get("ENVBUILD_WORKERS", 1))
        args = [str(python), str(RUNNER), "serve", "--model", str(model_dir)]
        args += ["--host", "127.0.0.1", "--port", "0"]
        if workers is not None:
            args += ["--workers", str(workers)]
        self.proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=subprocess_env(env)
        )
        self.server_log = ServerLog(self.proc.stderr, tmp / f"server-{uuid.uuid4().hex[:8]}.log")
        self.stdout = b""
        try:
            found = self.server_log.wait_for(r"listening on http://127\.0\.0\.1:(\d+)")
            self.port = int(found[0].group(1))
            if wait_ready:
                self.wait_ready()
        except BaseException:
            self.stop()
            raise

    def log(self) -> str:
        return self.server_log.text()

    def wait_ready(self, count=None):
        self.server_log.wait_for(r"model loaded \(pid \d+\)", count or self.workers)
        status = self.request("GET", "/ping")[0]
        assert status == 200, f"/ping answered {status} after the model loaded:\n{self.log()}"

    def request(self, method, path, body=None, headers=None, timeout=60):
        return http_request(self.port, method, path, body, headers, timeout)

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
            self.stdout = self.proc.stdout.read() if self.proc.stdout else b""
            self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.server_log.join()
        return self.proc.returncode


class Gate:
    """A folder the tiny model waits on (RUNTIME_TEST_LOAD_GATE / RUNTIME_TEST_PREDICT_GATE)."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder

    def __str__(self) -> str:
        return str(self.folder)

    def release(self) -> None:
        (self.folder / "release").write_text("go")


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
    shutil.copytree(RUNTIME_DIR, dest, ignore=shutil.ignore_patterns("__pycache__", "*.toml"))
    return dest / "runner.py"


def runtime_module(name: str):
    """A runtime file as the runner loads it (a submodule of its private package), in this
    process; no bytecode is written into the runtime folder."""
    import importlib.util

    key = "_envbuild_runtime_runner_under_test"
    runner = sys.modules.get(key)
    if runner is None:
        saved = sys.dont_write_bytecode
        sys.dont_write_bytecode = True
        try:
            spec = importlib.util.spec_from_file_location(key, RUNNER)
            runner = importlib.util.module_from_spec(spec)
            sys.modules[key] = runner
            spec.loader.exec_module(runner)
        finally:
            sys.dont_write_bytecode = saved
    return runner.runtime_module(name)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])

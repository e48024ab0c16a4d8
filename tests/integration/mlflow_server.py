"""A real ``mlflow server`` for the tests (SQLite backend, local artifact destination, loopback).

The session fixtures ``mlflow_server`` (the server), ``registry`` (NAME's versions 1 and 2, alias
``champion`` -> 1) and ``captured`` (a model logged inside ``envbuild.capture()``: with its lock and
expected output) are registered in ``tests/integration/conftest.py``, so every test module shares
one server and one set of registered models (the server's start is slow). Tests that change the
registry (move an alias) use registered names of their own. :func:`start_server` starts another
server a test may stop itself. Models are logged with the real MLflow client, inside
:func:`tracking_to` (which restores MLflow's process-wide tracking URI afterwards, so other tests
keep their own).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

START_TIMEOUT = 120.0  # seconds: a bound for a hung start-up, not an expectation


@dataclass
class MlflowServer:
    url: str
    root: Path  # holds the SQLite file, the artifacts and the server's log
    process: subprocess.Popen

    @property
    def artifacts(self) -> Path:
        return self.root / "artifacts"

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    @property
    def host(self) -> str:
        return self.url.split("://", 1)[1]

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def start_server(root: Path) -> MlflowServer:
    """Start ``mlflow server`` on a free loopback port and return once it answers /health."""
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(
        os.environ,
        MLFLOW_DISABLE_TELEMETRY="true",
        DO_NOT_TRACK="true",
        MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",  # no job workers: a faster start
    )
    env.pop("MLFLOW_TRACKING_URI", None)
    mlflow_cli = Path(sys.executable).with_name("mlflow")
    command = [
        str(mlflow_cli) if mlflow_cli.exists() else "mlflow",
        "server",
        "--backend-store-uri",
        f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination",
        str(root / "artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    with (root / "server.log").open("wb") as log:
        process = subprocess.Popen(
            command,
            cwd=root,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: stop() ends its workers too
        )
    server = MlflowServer(url=url, root=root, process=process)
    deadline = time.monotonic() + START_TIMEOUT
    while not _answers(url):
        if process.poll() is not None or time.monotonic() > deadline:
            server.stop()
            tail = (root / "server.log").read_text(errors="replace")[-3000:]
            pytest.fail(f"mlflow server did not start on {url}:\n{tail}")
        time.sleep(0.2)  # polling interval while waiting for the condition above
    return server


@contextmanager
def tracking_to(url: str, experiment: str | None = None) -> Iterator[None]:
    """MLflow's process-wide tracking state (URI, active experiment) pointed at ``url`` for a
    block, then restored. ``mlflow.set_experiment`` leaves its experiment's id in a module global
    and in MLFLOW_EXPERIMENT_ID; left behind, the next server's ``start_run`` asks for an
    experiment that does not exist there."""
    import mlflow
    from mlflow.tracking import fluent
    from mlflow.tracking._tracking_service import utils

    saved_global = utils._tracking_uri
    saved_experiment = fluent._active_experiment_id
    saved_env = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID")}
    mlflow.set_tracking_uri(url)
    fluent._active_experiment_id = None
    os.environ.pop("MLFLOW_EXPERIMENT_ID", None)
    try:
        if experiment is not None:
            mlflow.set_experiment(experiment)
        yield
    finally:
        if mlflow.active_run():
            mlflow.end_run()
        utils._tracking_uri = saved_global
        fluent._active_experiment_id = saved_experiment
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


NAME = "iris-src"  # the registered model of the ``registry`` fixture
CAPTURED = "iris-captured"  # the registered model of the ``captured`` fixture


@dataclass(frozen=True)
class Logged:
    run_id: str
    model_id: str | None


@dataclass(frozen=True)
class Registry:
    server: MlflowServer
    v1: Logged  # version 1 of NAME, alias `champion`
    v2: Logged  # version 2 of NAME (the latest)

    @property
    def url(self) -> str:
        return self.server.url


def iris():
    from sklearn.datasets import load_iris

    return load_iris(return_X_y=True, as_frame=True)


def mlflow_predictions(uri: str, url: str, data=None) -> list:
    """MLflow's own predictions for ``uri`` (default: on all of iris): its loader downloads the
    model itself, into a temporary folder removed here (left to itself, MLflow leaves one in
    /tmp per call)."""
    import tempfile

    import mlflow.pyfunc

    if data is None:
        data, _ = iris()
    with tracking_to(url), tempfile.TemporaryDirectory(prefix="mlflow-oracle-") as folder:
        return mlflow.pyfunc.load_model(uri, dst_path=folder).predict(data).tolist()


def log_iris(c: float, registered_name: str | None = None, name: str = "model") -> Logged:
    """Log (and optionally register) a LogisticRegression with MLflow's own client."""
    import mlflow
    import mlflow.sklearn
    from sklearn.linear_model import LogisticRegression

    x, y = iris()
    with mlflow.start_run() as run:
        info = mlflow.sklearn.log_model(
            LogisticRegression(C=c, max_iter=500).fit(x, y),
            name=name,
            input_example=x.head(3),
            pip_requirements=["scikit-learn"],  # no inference subprocess: faster, same files
            registered_model_name=registered_name,
        )
    return Logged(run_id=run.info.run_id, model_id=getattr(info, "model_id", None))


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """One tracking server with a model registry for the whole session."""
    pytest.importorskip("mlflow")
    server = start_server(tmp_path_factory.mktemp("mlflow-server"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def registry(mlflow_server: MlflowServer) -> Registry:
    """NAME's version 1 (C=1) with the alias ``champion`` and version 2 (C=0.01, the latest)."""
    from mlflow import MlflowClient

    with tracking_to(mlflow_server.url):
        v1 = log_iris(1.0, NAME)
        v2 = log_iris(0.01, NAME)
    MlflowClient(mlflow_server.url, mlflow_server.url).set_registered_model_alias(
        NAME, "champion", "1"
    )
    return Registry(server=mlflow_server, v1=v1, v2=v2)


@pytest.fixture(scope="session")
def captured(mlflow_server: MlflowServer) -> Logged:
    """CAPTURED version 1 (alias ``champion``), logged inside ``envbuild.capture()``: its
    artifacts hold ``pylock.toml`` and ``envbuild_expected_output.json``, so ``reproduce`` can
    check every step, and an image builds from its own lock."""
    from mlflow import MlflowClient

    import envbuild

    with tracking_to(mlflow_server.url), envbuild.capture():
        logged = log_iris(1.0, CAPTURED)
    MlflowClient(mlflow_server.url, mlflow_server.url).set_registered_model_alias(
        CAPTURED, "champion", "1"
    )
    return logged

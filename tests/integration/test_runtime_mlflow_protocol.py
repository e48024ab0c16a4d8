"""The scoring protocol, side by side: ``mlflow models serve --env-manager local`` and the runtime's
server (``runner.py serve``) on the same real models, answering the same requests.

For every request both servers get, the status, the media type, the ``error_code`` and, on
success, the body bytes must be MLflow's; messages may differ (ours are one line naming the
column). The deliberate differences (README, "Differences from mlflow models serve") are checked
too, each against what MLflow really answers, so that neither side can drift unnoticed.
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration import runtime_models as rm

pytestmark = [pytest.mark.integration, pytest.mark.slow]

JSON = {"Content-Type": "application/json"}
CSV = {"Content-Type": "text/csv"}
PARQUET = {"Content-Type": "application/vnd.apache.parquet"}
COLUMNS = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]
ROW = [5.1, 3.5, 1.4, 0.2]


class MlflowServer:
    """``mlflow models serve --env-manager local`` on a free loopback port."""

    def __init__(self, model: Path, tmp: Path) -> None:
        self.port = rm.free_port()
        bin_dir = Path(sys.executable).parent  # uvicorn is looked up on PATH
        env = rm.subprocess_env({"PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"})
        args = [str(bin_dir / "mlflow"), "models", "serve", "-m", str(model)]
        args += ["--env-manager", "local", "--host", "127.0.0.1", "--port", str(self.port)]
        self.proc = subprocess.Popen(
            args,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
            start_new_session=True,  # mlflow -> uvicorn: stopped as a group
        )
        self.server_log = rm.ServerLog(self.proc.stderr, tmp / "mlflow-serve.log")
        try:
            self.server_log.wait_for("Application startup complete")
        except BaseException:
            self.stop()
            raise

    def request(self, method, path, body=None, headers=None):
        return rm.http_request(self.port, method, path, body, headers)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        finally:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            self.server_log.join()


@pytest.fixture(scope="module")
def sklearn_pair(runtime_sklearn, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("protocol-sklearn")
    ours = rm.RunningServer(runtime_sklearn, tmp)
    try:
        theirs = MlflowServer(runtime_sklearn, tmp)
    except BaseException:
        ours.stop()
        raise
    yield ours, theirs
    theirs.stop()
    assert ours.stop() == 0, ours.log()


@pytest.fixture(scope="module")
def pyfunc_pair(runtime_pyfunc, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("protocol-pyfunc")
    ours = rm.RunningServer(runtime_pyfunc, tmp)
    try:
        theirs = MlflowServer(runtime_pyfunc, tmp)
    except BaseException:
        ours.stop()
        raise
    yield ours, theirs
    theirs.stop()
    assert ours.stop() == 0, ours.log()


def _parquet_body() -> bytes:
    import pandas as pd

    buffer = io.BytesIO()
    pd.DataFrame([ROW], columns=COLUMNS).to_parquet(buffer)
    return buffer.getvalue()


def _records(**values):
    row = dict(zip(COLUMNS, ROW, strict=True))
    row.update(values)
    return json.dumps({"dataframe_records": [row]})


def _csv(cell: str = "3.5") -> str:
    return ",".join(COLUMNS) + "\n" + ",".join(["5.1", cell, "1.4", "0.2"]) + "\n"


SPLIT = {"columns": COLUMNS, "data": [ROW, [6.7, 3.0, 5.2, 2.3]]}
SKLEARN_CASES = {
    # successes: the same bytes
    "records": ("POST", "/invocations", _records(), JSON),
    "split": ("POST", "/invocations", json.dumps({"dataframe_split": SPLIT}), JSON),
    "inputs-by-column": (
        "POST",
        "/invocations",
        json.dumps({"inputs": {c: [v] for c, v in zip(COLUMNS, ROW, strict=True)}}),
        JSON,
    ),
    "instances": (
        "POST",
        "/invocations",
        json.dumps({"instances": [dict(zip(COLUMNS, ROW, strict=True))]}),
        JSON,
    ),
    "utf8-bom": ("POST", "/invocations", b"\xef\xbb\xbf" + _records().encode(), JSON),
    "utf16": ("POST", "/invocations", _records().encode("utf-16"), JSON),
    "charset": (
        "POST",
        "/invocations",
        _records(),
        {"Content-Type": "application/json; charset=utf-8"},
    ),
    "csv": ("POST", "/invocations", _csv(), CSV),
    "csv-bom": ("POST", "/invocations", "\ufeff" + _csv(), CSV),
    "parquet": ("POST", "/invocations", _parquet_body(), PARQUET),
    # schema enforcement: 400 INVALID_PARAMETER_VALUE
    "missing-column": (
        "POST",
        "/invocations",
        json.dumps({"dataframe_records": [{COLUMNS[0]: 5.1}]}),
        JSON,
    ),
    "unnamed-lists": ("POST", "/invocations", json.dumps({"inputs": [ROW]}), JSON),
    "wrong-width": ("POST", "/invocations", json.dumps({"inputs": [[1.0, 2.0]]}), JSON),
    "csv-missing-columns": ("POST", "/invocations", "a,b\n1,2\n", CSV),
    # malformed input: 400 BAD_REQUEST
    "json-syntax": ("POST", "/invocations", "{not json", JSON),
    "empty-json": ("POST", "/invocations", "", JSON),
    "a-list": ("POST", "/invocations", "[1, 2]", JSON),
    "no-format-key": ("POST", "/invocations", json.dumps({"data": [ROW]}), JSON),
    "two-format-keys": (
        "POST",
        "/invocations",
        json.dumps({"inputs": [ROW], "instances": [ROW]}),
        JSON,
    ),
    "not-utf8": ("POST", "/invocations", b'{"inputs": "\xe9"}', JSON),
    "uncastable-value": ("POST", "/invocations", _records(**{COLUMNS[0]: "x"}), JSON),
    "csv-uncastable": ("POST", "/invocations", _csv("x"), CSV),
    "csv-empty": ("POST", "/invocations", "", CSV),
    "parquet-garbage": ("POST", "/invocations", b"not parquet", PARQUET),
    # the model raises: 400 BAD_REQUEST
    "nan-literal": ("POST", "/invocations", _records().replace("5.1", "NaN"), JSON),
    "huge-number": ("POST", "/invocations", _records().replace("5.1", "1e999999"), JSON),
    "null-value": ("POST", "/invocations", _records().replace("5.1", "null"), JSON),
    "zero-rows": (
        "POST",
        "/invocations",
        json.dumps({"dataframe_split": {"columns": COLUMNS, "data": []}}),
        JSON,
    ),
    # unsupported media types: 415 (the body is JSON here, text/plain in MLflow)
    "text-plain": ("POST", "/invocations", "{}", {"Content-Type": "text/plain"}),
    "latin-1": (
        "POST",
        "/invocations",
        "{}",
        {"Content-Type": "application/json; charset=latin-1"},
    ),
    "unknown-parameter": (
        "POST",
        "/invocations",
        "{}",
        {"Content-Type": "application/json; format=pandas-split"},
    ),
    # the other endpoints and methods
    "ping": ("GET", "/ping", None, {}),
    "health": ("GET", "/health", None, {}),
    "version": ("GET", "/version", None, {}),
    "ping-query": ("GET", "/ping?probe=1", None, {}),
    "unknown-path": ("GET", "/nope", None, {}),
    "get-invocations": ("GET", "/invocations", None, {}),
    "put-invocations": ("PUT", "/invocations", "{}", JSON),
    "post-ping": ("POST", "/ping", "{}", JSON),
    "head-version": ("HEAD", "/version", None, {}),
}
PYFUNC_CASES = {
    "params": (
        "POST",
        "/invocations",
        json.dumps({"dataframe_records": [{"x": 1.5, "name": "ab"}], "params": {"scale": 2}}),
        JSON,
    ),
    "unknown-param-ignored": (
        "POST",
        "/invocations",
        json.dumps({"dataframe_records": [{"x": 1.5, "name": "ab"}], "params": {"nope": 2}}),
        JSON,
    ),
    "bad-param-value": (
        "POST",
        "/invocations",
        json.dumps({"dataframe_records": [{"x": 1.5, "name": "ab"}], "params": {"scale": "big"}}),
        JSON,
    ),
    "params-not-an-object": (
        "POST",
        "/invocations",
        json.dumps({"dataframe_records": [{"x": 1.5, "name": "ab"}], "params": [1]}),
        JSON,
    ),
    "model-raises": (
        "POST",
        "/invocations",
        json.dumps({"dataframe_records": [{"x": -1.0, "name": "a"}]}),
        JSON,
    ),
    "tz-datetime-for-a-double": (
        "POST",
        "/invocations",
        json.dumps({"dataframe_records": [{"x": "2024-01-01T00:00:00+02:00", "name": "a"}]}),
        JSON,
    ),
    "split-mismatch": (
        "POST",
        "/invocations",
        json.dumps({"dataframe_split": {"columns": ["x"], "data": [[1, 2]]}}),
        JSON,
    ),
    "records-not-a-list": (
        "POST",
        "/invocations",
        json.dumps({"dataframe_records": {"x": 1}}),
        JSON,
    ),
    "null-string": (
        "POST",
        "/invocations",
        json.dumps({"dataframe_records": [{"x": 1.5, "name": None}]}),
        JSON,
    ),
}


def media_type(headers: dict) -> str:
    value = {k.lower(): v for k, v in headers.items()}.get("content-type", "")
    return value.split(";")[0].strip().lower()


def error_code(body: bytes):
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    return doc.get("error_code") if isinstance(doc, dict) else None


def compare(ours, theirs, case):
    method, path, body, headers = case
    if isinstance(body, str):
        body = body.encode()
    mine = ours.request(method, path, body, headers)
    mlflow = theirs.request(method, path, body, headers)
    assert mine[0] == mlflow[0], (mine, mlflow)
    if method == "HEAD":  # no body to compare
        assert mine[2] == mlflow[2] == b""
        assert media_type(mine[1]) == media_type(mlflow[1])
        return mine, mlflow
    if mine[0] == 415:  # ours: JSON; MLflow: text/plain (a documented difference)
        assert media_type(mlflow[1]) == "text/plain"
        assert media_type(mine[1]) == "application/json"
        assert error_code(mine[2]) == "UNSUPPORTED_MEDIA_TYPE"
        return mine, mlflow
    assert media_type(mine[1]) == media_type(mlflow[1]), (mine, mlflow)
    if mine[0] == 200:
        assert mine[2] == mlflow[2]
    elif error_code(mlflow[2]) is not None:
        assert error_code(mine[2]) == error_code(mlflow[2]), (mine, mlflow)
        mine_doc, mlflow_doc = json.loads(mine[2]), json.loads(mlflow[2])
        for key in ("sqlstate", "error_class"):
            assert mine_doc.get(key) == mlflow_doc.get(key), (key, mine, mlflow)
        assert "\n" not in mine_doc["message"]  # one line
    else:  # 404/405: MLflow's {"detail": ...}; ours carries an error_code
        assert error_code(mine[2]) in ("ENDPOINT_NOT_FOUND", "METHOD_NOT_ALLOWED")
        if "allow" in {k.lower() for k in mlflow[1]}:
            allowed = {k.lower(): v for k, v in mlflow[1].items()}["allow"]
            assert {k.lower(): v for k, v in mine[1].items()}["allow"].startswith(allowed)
    return mine, mlflow


@pytest.mark.parametrize("name", sorted(SKLEARN_CASES))
def test_sklearn_model_answers_as_mlflow(sklearn_pair, name):
    compare(*sklearn_pair, SKLEARN_CASES[name])


@pytest.mark.parametrize("name", sorted(PYFUNC_CASES))
def test_pyfunc_model_answers_as_mlflow(pyfunc_pair, name):
    compare(*pyfunc_pair, PYFUNC_CASES[name])


def test_version_is_mlflow_bare_version_string(sklearn_pair):
    import mlflow

    mine, mlflow_answer = compare(*sklearn_pair, SKLEARN_CASES["version"])
    assert mine[2] == mlflow_answer[2] == mlflow.__version__.encode()


# ------------------------------------------------------------------------------------------
# The deliberate differences, each against what MLflow answers


def test_missing_content_type_is_a_clear_415(sklearn_pair):
    ours, theirs = sklearn_pair
    assert theirs.request("POST", "/invocations", b"{}", {})[0] == 500
    status, headers, body = ours.request("POST", "/invocations", b"{}", {})
    assert (status, media_type(headers)) == (415, "application/json")
    assert "Content-Type" in json.loads(body)["message"]


@pytest.mark.parametrize(
    "content_type", ["Application/JSON", 'application/json; charset="utf-8"', "TEXT/CSV"]
)
def test_media_types_are_case_insensitive_and_charsets_may_be_quoted(sklearn_pair, content_type):
    ours, theirs = sklearn_pair
    body = (_csv() if "csv" in content_type.lower() else _records()).encode()
    headers = {"Content-Type": content_type}
    assert theirs.request("POST", "/invocations", body, headers)[0] == 415
    reference = theirs.request(
        "POST", "/invocations", body, {"Content-Type": content_type.lower().split(";")[0]}
    )
    assert ours.request("POST", "/invocations", body, headers)[::2] == (200, reference[2])


def test_head_ping_is_200_for_health_checks(sklearn_pair):
    ours, theirs = sklearn_pair
    assert theirs.request("HEAD", "/ping")[0] == 405
    status, _, body = ours.request("HEAD", "/ping")
    assert (status, body) == (200, b"")


def test_absurdly_nested_json_is_a_400_not_a_500(sklearn_pair):
    ours, theirs = sklearn_pair
    body = b'{"inputs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    assert theirs.request("POST", "/invocations", body, JSON)[0] == 500
    status, _, answer = ours.request("POST", "/invocations", body, JSON)
    assert (status, error_code(answer)) == (400, "BAD_REQUEST")
    assert "nests" in json.loads(answer)["message"]


def test_transport_errors_are_json(sklearn_pair):
    ours, theirs = sklearn_pair

    def raw(port, data):
        with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
            conn.sendall(data)
            answer = b""
            while chunk := conn.recv(65536):
                answer += chunk
        return answer

    garbage = b"GARBAGE\r\n\r\n"
    assert raw(theirs.port, garbage).startswith(b"HTTP/1.1 400")
    answer = raw(ours.port, garbage)
    assert answer.startswith(b"HTTP/1.1 400")
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["error_code"] == "BAD_REQUEST"

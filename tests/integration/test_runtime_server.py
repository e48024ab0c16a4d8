"""``runner.py serve``: the HTTP scoring server, on free loopback ports, against real models.

Responses to /invocations are compared with what MLflow's own scoring server answers
(``mlflow.pyfunc.scoring_server.invocations``) for the same body.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import platform
import signal
import socket
import threading

import pytest

from tests.integration import runtime_models as rm

pytestmark = pytest.mark.integration

LIMIT = 64 * 1024
NO_MLFLOW = {"ENVBUILD_NO_MLFLOW": "1"}


@pytest.fixture(scope="module")
def sk_server(runtime_sklearn, tmp_path_factory):
    server = rm.RunningServer(
        runtime_sklearn,
        tmp_path_factory.mktemp("sk-server"),
        env={"ENVBUILD_MAX_BODY_BYTES": str(LIMIT)},
    )
    yield server
    assert server.stop() == 0, server.log()
    assert server.stdout == b""


@pytest.fixture(scope="module")
def pyfunc_server(runtime_pyfunc, tmp_path_factory):
    server = rm.RunningServer(runtime_pyfunc, tmp_path_factory.mktemp("pyfunc-server"))
    yield server
    assert server.stop() == 0, server.log()
    assert server.stdout == b""


def iris_payloads():
    x, _ = rm.iris_frame()
    rows = x.iloc[[0, 60, 120]]
    return {
        "dataframe_split": {"dataframe_split": json.loads(rows.to_json(orient="split"))},
        "dataframe_records": {"dataframe_records": rows.to_dict(orient="records")},
        "instances": {"instances": rows.to_dict(orient="records")},
        "inputs": {"inputs": rows.to_dict(orient="list")},
    }


# ------------------------------------------------------------------------------------------
# Endpoints


def test_ping_health_version_metadata(sk_server, runtime_sklearn):
    import mlflow
    import yaml

    status, headers, body = sk_server.request("GET", "/ping")
    assert (status, body) == (200, b"\n")

    assert sk_server.request("GET", "/health")[::2] == (200, b"\n")  # MLflow's: as /ping
    assert sk_server.request("HEAD", "/ping")[::2] == (200, b"")

    # MLflow's bare version string, which MLflow's own ScoringServerClient.get_version() reads
    status, headers, body = sk_server.request("GET", "/version")
    assert (status, body) == (200, mlflow.__version__.encode())
    assert headers["Content-Type"] == "application/json"

    status, headers, body = sk_server.request("GET", "/metadata")
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    version = json.loads(body)
    meta = yaml.safe_load((runtime_sklearn / "MLmodel").read_text())
    assert version["model_uuid"] == meta["model_uuid"]
    assert version["run_id"] == meta.get("run_id")
    assert version["mlflow_version"] == mlflow.__version__
    assert version["python_version"] == platform.python_version()
    assert version["runner_version"]


@pytest.mark.parametrize("fmt", ["dataframe_split", "dataframe_records", "instances", "inputs"])
def test_invocations_json_formats_answer_like_mlflow(sk_server, runtime_sklearn, fmt):
    body = json.dumps(iris_payloads()[fmt]).encode()
    status, headers, answer = sk_server.post(body)
    assert (status, answer) == rm.mlflow_server_reference(runtime_sklearn, body, "application/json")
    assert headers["Content-Type"] == "application/json"
    assert json.loads(answer) == {"predictions": [0, 1, 2]}


def test_invocations_csv_answers_like_mlflow(sk_server, runtime_sklearn):
    x, _ = rm.iris_frame()
    body = x.iloc[::10].to_csv(index=False).encode()
    status, _, answer = sk_server.post(body, "text/csv; charset=utf-8")
    assert status == 200
    assert (status, answer) == rm.mlflow_server_reference(runtime_sklearn, body, "text/csv")
    assert len(json.loads(answer)["predictions"]) == 15


def test_chunked_request_body(sk_server):
    body = json.dumps(iris_payloads()["inputs"]).encode()
    conn = socket.create_connection(("127.0.0.1", sk_server.port), timeout=30)
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:10], body[10:]))
    conn.sendall(
        b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + chunks + b"0\r\n\r\n"
    )
    response = b""
    while True:
        data = conn.recv(65536)
        if not data:
            break
        response += data
    conn.close()
    assert response.startswith(b"HTTP/1.1 200")
    assert response.endswith(b'{"predictions": [0, 1, 2]}')


def test_openapi_document_is_valid_and_accepts_the_input_example(sk_server, runtime_sklearn):
    status, _, body = sk_server.request("GET", "/openapi.json")
    assert status == 200
    doc = json.loads(body)
    assert doc["openapi"].startswith("3.0")
    assert {"/invocations", "/ping", "/health", "/version", "/metadata"} <= set(doc["paths"])
    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(doc)
    schema_validator = pytest.importorskip("openapi_schema_validator")
    request = {"$ref": "#/components/schemas/InvocationRequest", "components": doc["components"]}
    check = schema_validator.OAS30Validator(request)
    example = json.loads((runtime_sklearn / "serving_input_example.json").read_text())
    check.validate(example)
    for payload in iris_payloads().values():
        check.validate(payload)
    assert not check.is_valid({"dataframe_records": [{"sepal length (cm)": "long"}]})
    assert not check.is_valid({"dataframe_split": {"columns": ["nope"], "data": [[1.0]]}})


# ------------------------------------------------------------------------------------------
# Errors


def test_bad_json_is_400(sk_server):
    status, _headers, body = sk_server.post(b"{not json")
    assert status == 400
    error = json.loads(body)
    assert error["error_code"] == "BAD_REQUEST"
    assert "JSON" in error["message"]


def test_missing_column_is_400_invalid_parameter_value_naming_it(sk_server):
    status, _, body = sk_server.post({"dataframe_records": [{"sepal length (cm)": 5.0}]})
    assert status == 400
    error = json.loads(body)
    assert error["error_code"] == "INVALID_PARAMETER_VALUE"  # schema enforcement, as MLflow
    assert error["error_class"] == "SCHEMA_ENFORCEMENT_FAILED"
    assert "petal width (cm)" in error["message"]
    assert "stack_trace" not in error  # only with ENVBUILD_DEBUG=1


def test_unknown_request_format_is_400_naming_the_fields(sk_server):
    status, _, body = sk_server.post({"data": [[1, 2, 3, 4]]})
    assert status == 400
    assert "dataframe_split" in json.loads(body)["message"]


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/json; charset=latin-1", "application/xml"]
)
def test_unsupported_content_type_is_415(sk_server, content_type):
    status, _, body = sk_server.post(b'{"inputs": []}', content_type)
    assert status == 415
    assert json.loads(body)["error_code"]


def test_body_over_the_limit_is_413(sk_server):
    body = b'{"inputs": [' + b"1.0, " * (LIMIT // 5) + b"1.0]}"
    assert len(body) > LIMIT
    status, _, answer = sk_server.post(body)
    assert status == 413
    assert str(LIMIT) in json.loads(answer)["message"]
    # Still serving afterwards.
    assert sk_server.post(iris_payloads()["inputs"])[0] == 200


def test_expect_continue_over_the_limit_is_refused_before_the_upload(sk_server):
    conn = socket.create_connection(("127.0.0.1", sk_server.port), timeout=30)
    conn.sendall(
        b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1000000000\r\nExpect: 100-continue\r\n\r\n"
    )
    first = conn.recv(65536)
    conn.close()
    assert first.startswith(b"HTTP/1.1 413")


def test_unknown_path_and_wrong_method(sk_server):
    assert sk_server.request("GET", "/nope")[0] == 404
    status, headers, _ = sk_server.request("GET", "/invocations")
    assert status == 405
    assert headers["Allow"] == "POST"


def test_model_exception_is_400_bad_request_and_the_server_keeps_serving(
    pyfunc_server, runtime_pyfunc
):
    status, _, body = pyfunc_server.post({"dataframe_records": [{"x": -2.0, "name": "n"}]})
    assert status == 400  # as MLflow answers any exception of the model's predict
    error = json.loads(body)
    assert error["error_code"] == "BAD_REQUEST"
    assert "ValueError: boom: negative x" in error["message"]

    request = {
        "dataframe_split": {"columns": ["x", "name"], "data": [[2.0, "ok"]]},
        "params": {"scale": 0.5},
    }
    status, _, body = pyfunc_server.post(request)
    assert status == 200
    assert json.loads(body) == {"predictions": [{"y": 1.0, "label": "OK"}]}
    assert (status, body) == rm.mlflow_server_reference(
        runtime_pyfunc, json.dumps(request).encode(), "application/json"
    )
    assert "model noise on file descriptor 1" in pyfunc_server.log()


# ------------------------------------------------------------------------------------------
# Lifecycle


def test_ping_is_503_while_the_model_loads(runtime_tiny, tmp_path):
    gate = rm.Gate(tmp_path / "load-gate")
    env = dict(NO_MLFLOW, RUNTIME_TEST_LOAD_GATE=str(gate))
    server = rm.RunningServer(runtime_tiny, tmp_path, env=env, wait_ready=False)
    try:
        server.server_log.wait_for("gate: load waiting")
        assert server.request("GET", "/ping")[0] == 503
        assert server.request("GET", "/health")[0] == 503
        status, _, body = server.request("GET", "/metadata")
        assert (status, json.loads(body)["status"]) == (200, "loading")
        status, headers, body = server.post({"inputs": {"a": [1.0], "b": [1]}})
        assert status == 503 and headers["Retry-After"] == "1"
        assert json.loads(body)["error_code"] == "TEMPORARILY_UNAVAILABLE"
        gate.release()
        server.wait_ready()
        status, _, body = server.post({"inputs": {"a": [1.0], "b": [1]}})
        assert (status, body) == (200, b'{"predictions": [2.5]}')
    finally:
        assert server.stop() == 0, server.log()


def test_sigterm_lets_the_request_in_flight_finish(runtime_tiny, tmp_path):
    gate = rm.Gate(tmp_path / "predict-gate")
    env = dict(NO_MLFLOW, RUNTIME_TEST_PREDICT_GATE=str(gate))
    server = rm.RunningServer(runtime_tiny, tmp_path, env=env)
    idle = socket.create_connection(("127.0.0.1", server.port), timeout=60)  # keep-alive, idle
    answers = []
    worker = threading.Thread(
        target=lambda: answers.append(server.post({"inputs": {"a": [2.0], "b": [0]}}))
    )
    worker.start()
    server.server_log.wait_for("gate: predict waiting")
    server.proc.send_signal(signal.SIGTERM)
    assert idle.recv(1) == b""  # idle connections are closed at once
    idle.close()
    gate.release()
    worker.join(60)
    assert server.stop() == 0, server.log()
    assert answers and answers[0][0] == 200 and answers[0][2] == b'{"predictions": [1.0]}'
    assert answers[0][1]["Connection"] == "close"
    with pytest.raises(OSError):
        server.request("GET", "/ping", timeout=5)


def test_sigterm_with_a_stalled_client_does_not_wait_for_it(runtime_tiny, tmp_path):
    server = rm.RunningServer(runtime_tiny, tmp_path, env=NO_MLFLOW)
    stalled = socket.create_connection(("127.0.0.1", server.port), timeout=60)
    stalled.sendall(
        b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1000\r\n\r\n{"  # and never the rest
    )
    assert server.request("GET", "/ping")[0] == 200  # the stalled request has been read up to here
    assert server.stop() == 0, server.log()
    assert "still running" not in server.log()  # closed after the body grace, not waited for
    with contextlib.suppress(ConnectionResetError):
        assert stalled.recv(65536) == b""
    stalled.close()


def test_sigterm_while_loading_exits_0(runtime_tiny, tmp_path):
    gate = rm.Gate(tmp_path / "load-gate")  # never released
    env = dict(NO_MLFLOW, RUNTIME_TEST_LOAD_GATE=str(gate))
    server = rm.RunningServer(runtime_tiny, tmp_path, env=env, wait_ready=False)
    server.server_log.wait_for("gate: load waiting")
    assert server.stop() == 0, server.log()


@pytest.mark.parametrize("workers", [1, 2])
def test_model_that_cannot_load_ends_the_server_with_5(runtime_tiny, tmp_path, workers):
    broken = tmp_path / "broken"
    (broken / "code").mkdir(parents=True)
    (broken / "MLmodel").write_text((runtime_tiny / "MLmodel").read_text())
    (broken / "code" / "envbuild_tiny_loader.py").write_text("raise ImportError('gone')\n")
    server = rm.RunningServer(broken, tmp_path, env=NO_MLFLOW, workers=workers, wait_ready=False)
    assert server.proc.wait(timeout=60) == 5
    server.stop()
    assert "ImportError: gone" in server.log()


def test_two_workers_share_the_port_and_are_replaced_when_they_die(runtime_tiny, tmp_path):
    server = rm.RunningServer(runtime_tiny, tmp_path, env=NO_MLFLOW, workers=2)
    try:
        first = sorted(rm.child_pids(server.proc.pid))
        assert len(first) == 2
        for _ in range(6):
            assert server.post({"inputs": {"a": [2.0], "b": [1]}})[2] == b'{"predictions": [3.0]}'
        os.kill(first[0], signal.SIGKILL)
        server.server_log.wait_for(rf"worker {first[0]} exited with -9; starting another")
        started = server.server_log.wait_for(r"worker (\d+) started", count=3)
        replacement = int(started[2].group(1))
        server.server_log.wait_for(rf"model loaded \(pid {replacement}\)")
        assert sorted(rm.child_pids(server.proc.pid)) == sorted([first[1], replacement])
        for _ in range(6):  # whichever worker answers, it has its model
            assert server.post({"inputs": {"a": [2.0], "b": [1]}})[0] == 200
    finally:
        assert server.stop() == 0, server.log()
    assert rm.child_pids(server.proc.pid) == []


def test_workers_accept_connections_only_once_their_model_is_loaded(runtime_tiny, tmp_path):
    """/ping 200 from one worker must never be followed by a 503 from another, still loading."""
    gate = rm.Gate(tmp_path / "load-gate")
    env = dict(NO_MLFLOW, RUNTIME_TEST_LOAD_GATE=str(gate))
    server = rm.RunningServer(runtime_tiny, tmp_path, env=env, workers=2, wait_ready=False)
    try:
        server.server_log.wait_for("gate: load waiting", count=2)
        answers = []
        client = threading.Thread(target=lambda: answers.append(server.request("GET", "/ping")))
        client.start()  # waits in the listen backlog: no worker accepts while loading
        gate.release()
        client.join(60)
        assert answers and answers[0][0] == 200
        statuses = {server.post({"inputs": {"a": [1.0], "b": [1]}})[0] for _ in range(10)}
        assert statuses == {200}
    finally:
        assert server.stop() == 0, server.log()


def test_workers_default_from_environment(runtime_tiny, tmp_path):
    server = rm.RunningServer(runtime_tiny, tmp_path, env=dict(NO_MLFLOW, ENVBUILD_WORKERS="2"))
    try:
        assert len(rm.child_pids(server.proc.pid)) == 2
    finally:
        assert server.stop() == 0, server.log()


# ------------------------------------------------------------------------------------------
# OpenAPI documents for other signatures (the module itself, loaded by path)


def _openapi_module():
    return rm.runtime_module("openapi")


def _signature(inputs, params=None, outputs=None):
    signature = {"inputs": json.dumps(inputs)}
    if params is not None:
        signature["params"] = json.dumps(params)
    if outputs is not None:
        signature["outputs"] = json.dumps(outputs)
    return {"model_uuid": "abc", "signature": signature}


OPENAPI_CASES = {
    "no-signature": ({"model_uuid": "abc"}, {"inputs": [[1, 2]]}, None),
    "all-column-types": (
        _signature(
            [
                {"type": "double", "name": "d"},
                {"type": "float", "name": "f"},
                {"type": "long", "name": "l"},
                {"type": "integer", "name": "i"},
                {"type": "string", "name": "s"},
                {"type": "boolean", "name": "b"},
                {"type": "binary", "name": "bin"},
                {"type": "datetime", "name": "t", "required": False},
                {"type": "array", "items": {"type": "long"}, "name": "arr"},
                {
                    "type": "object",
                    "name": "obj",
                    "properties": {"k": {"type": "string", "required": True}},
                },
                {"type": "map", "values": {"type": "double"}, "name": "m"},
                {"type": "any", "name": "anything"},
            ],
            params=[
                {"name": "temperature", "type": "float", "default": 0.5, "shape": None},
                {"name": "stops", "type": "string", "default": ["x"], "shape": [-1]},
            ],
            outputs=[{"type": "double"}],
        ),
        {
            "dataframe_records": [
                {
                    "d": 1.5,
                    "f": 1.0,
                    "l": 3,
                    "i": 4,
                    "s": "x",
                    "b": True,
                    "bin": "aGk=",
                    "t": None,
                    "arr": [1, 2],
                    "obj": {"k": "v"},
                    "m": {"a": 1.0},
                    "anything": [{}],
                }
            ],
            "params": {"temperature": 0.1},
        },
        {"dataframe_records": [{"d": "no"}]},
    ),
    "named-tensors": (
        _signature(
            [
                {
                    "type": "tensor",
                    "name": "image",
                    "tensor-spec": {"dtype": "uint8", "shape": [-1, 2, 2]},
                },
                {"type": "tensor", "name": "flag", "tensor-spec": {"dtype": "bool", "shape": [-1]}},
            ]
        ),
        {"inputs": {"image": [[[1, 2], [3, 4]]], "flag": [True]}},
        {"inputs": {"image": [[[1, 2, 3], [3, 4, 5]]], "flag": [True]}},
    ),
    "unnamed-columns": (
        _signature([{"type": "double"}, {"type": "double"}]),
        {"dataframe_split": {"data": [[1.0, 2.0]]}},
        {"dataframe_split": {"data": [["a", "b"]]}},
    ),
}


@pytest.mark.parametrize("case", sorted(OPENAPI_CASES))
def test_openapi_for_other_signatures(case):
    meta, good, bad = OPENAPI_CASES[case]
    doc = _openapi_module().build_openapi(meta, "1.0")
    pytest.importorskip("openapi_spec_validator").validate(doc)
    check = pytest.importorskip("openapi_schema_validator").OAS30Validator(
        {"$ref": "#/components/schemas/InvocationRequest", "components": doc["components"]}
    )
    check.validate(good)
    if bad is not None:
        assert not check.is_valid(bad)
    assert not check.is_valid({"dataframe_split": {}, "inputs": []})


# ------------------------------------------------------------------------------------------
# The transport: every answer JSON, one send per response, keep-alive


def raw_exchange(port: int, data: bytes) -> bytes:
    """Send ``data`` on a new connection and read until the server closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall(data)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    return answer


def split_response(answer: bytes):
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    headers = dict(
        line.decode().split(": ", 1) for line in head.split(b"\r\n")[1:] if b": " in line
    )
    return status, headers, body


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET /ping HTTP/9.9\r\n\r\n", 505),
        (b"GET /ping HTTP/1.1\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n", 431),
        (b"GET /ping HTTP/1.1\r\n" + b"X-A: b\r\n" * 101 + b"\r\n", 431),
        (b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n", 414),
        (b"POST /invocations HTTP/1.1\r\nContent-Length: x\r\n\r\n", 400),
    ],
    ids=["garbage", "http-version", "long-header", "many-headers", "long-target", "bad-length"],
)
def test_transport_errors_are_json(sk_server, request_bytes, status):
    got, headers, body = split_response(raw_exchange(sk_server.port, request_bytes))
    assert got == status
    assert headers["Content-Type"] == "application/json"
    assert headers["Connection"] == "close"
    assert json.loads(body)["error_code"]


def test_head_requests(sk_server):
    assert sk_server.request("HEAD", "/ping")[::2] == (200, b"")
    assert sk_server.request("HEAD", "/health")[::2] == (200, b"")
    status, headers, body = sk_server.request("HEAD", "/invocations")
    assert (status, body, headers["Allow"]) == (405, b"", "POST")
    assert headers["Content-Type"] == "application/json"
    assert sk_server.request("HEAD", "/version")[0] == 405


def test_body_over_the_limit_without_expect_continue_gets_413_not_a_reset(sk_server):
    body = b"x" * (LIMIT * 4)
    request = (
        b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    )
    status, _headers, answer = split_response(raw_exchange(sk_server.port, request + body))
    assert (status, json.loads(answer)["error_code"]) == (413, "REQUEST_LIMIT_EXCEEDED")


def test_keep_alive_answers_each_request_in_one_send(sk_server):
    """Several requests on one connection; each response arrives whole in one segment."""
    body = json.dumps(iris_payloads()["inputs"]).encode()
    request = (
        b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    with socket.create_connection(("127.0.0.1", sk_server.port), timeout=30) as conn:
        for _ in range(3):
            conn.sendall(request)
            answer = conn.recv(65536)
            status, headers, got = split_response(answer)
            assert status == 200 and "Connection" not in headers
            assert got == b'{"predictions": [0, 1, 2]}'


def test_parquet_and_byte_order_marks_are_accepted(sk_server, runtime_sklearn):
    import pandas as pd

    x, _ = rm.iris_frame()
    buffer = io.BytesIO()
    x.iloc[[0, 60, 120]].to_parquet(buffer)
    status, _, body = sk_server.post(buffer.getvalue(), "application/vnd.apache.parquet")
    assert (status, body) == (200, b'{"predictions": [0, 1, 2]}')
    bom = b"\xef\xbb\xbf" + json.dumps(iris_payloads()["dataframe_split"]).encode()
    assert sk_server.post(bom)[::2] == (200, b'{"predictions": [0, 1, 2]}')
    assert pd  # pandas and pyarrow are in the dev environment

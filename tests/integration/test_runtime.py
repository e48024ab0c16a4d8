"""envbuild/runtime/runner.py as a command, run by path in a model environment (the dev venv).

Predictions are compared byte for byte with what MLflow itself writes for the same model and input
(``mlflow models predict`` and the function it calls), and failures with the documented exit codes.
"""

from __future__ import annotations

import ast
import json
import os
import platform
import socket
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.integration import runtime_models as rm
from tests.interpreters import python

pytestmark = pytest.mark.integration

RUNTIME_FILES = sorted(path.name for path in rm.RUNTIME_DIR.glob("*.py"))
# run as scripts (by path), so they cannot import their siblings relatively
SCRIPTS = {"runner.py", "capture_probe.py"}
NO_MLFLOW = {"ENVBUILD_NO_MLFLOW": "1"}


def write(tmp_path: Path, name: str, payload) -> Path:
    path = tmp_path / name
    path.write_text(payload if isinstance(payload, str) else json.dumps(payload))
    return path


# ------------------------------------------------------------------------------------------
# The files themselves


def test_the_runtime_is_split_into_modules():
    assert {"runner.py", "cli.py", "backends.py", "mlflow_compat.py", "server.py"} <= set(
        RUNTIME_FILES
    )


def test_runtime_files_compile_on_python_38(tmp_path):
    python38 = python("3.8")
    code = (
        "import py_compile, sys\n"
        "for i, source in enumerate(sys.argv[2:]):\n"
        "    py_compile.compile(source, cfile='%s/%d.pyc' % (sys.argv[1], i), doraise=True)\n"
    )
    sources = [str(rm.RUNTIME_DIR / name) for name in RUNTIME_FILES]
    result = subprocess.run(
        [str(python38), "-c", code, str(tmp_path), *sources], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("name", RUNTIME_FILES)
def test_runtime_file_imports_only_the_standard_library_and_its_siblings(name):
    tree = ast.parse((rm.RUNTIME_DIR / name).read_text())
    imported = set()
    siblings = {path.stem for path in rm.RUNTIME_DIR.glob("*.py")}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            assert name not in SCRIPTS, "a file run by path cannot import relatively"
            assert node.level == 1
            targets = [node.module] if node.module else [alias.name for alias in node.names]
            assert set(targets) <= siblings, targets
    for node in tree.body:  # module level: the optional libraries are imported lazily
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level:
            imported.add(node.module.split(".")[0])
    imported.discard("__future__")
    assert imported <= set(sys.stdlib_module_names), imported - set(sys.stdlib_module_names)
    every_import = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
    names = {a.name for n in every_import if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module or "" for n in every_import if isinstance(n, ast.ImportFrom)}
    assert not any(module.split(".")[0] == "envbuild" for module in names)


def _names_used(tree: ast.AST) -> set[str]:
    """Identifiers, attributes, imported names and string constants (docstrings excluded)."""
    docstrings = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr)}
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, ast.Attribute):
            names.add(node.attr)
        elif isinstance(node, ast.alias):
            names.update(node.name.split("."))
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.update(node.module.split("."))
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings
        ):
            names.add(node.value)
    return names


def test_only_mlflow_compat_touches_mlflow_internals():
    private = {
        "scoring_server",
        "_parse_json_data",
        "_split_data_and_params",
        "_get_jsonable_obj",
        "_MLFLOW_IS_IN_SERVING_ENVIRONMENT",
        "exceptions",
    }
    users = {
        name
        for name in RUNTIME_FILES
        if private & _names_used(ast.parse((rm.RUNTIME_DIR / name).read_text()))
    }
    assert users == {"mlflow_compat.py"}


def test_runner_works_when_copied_alone(tmp_path, runtime_tiny):
    runner = rm.copy_runtime(tmp_path / "runtime")
    before = sorted(p.name for p in runner.parent.iterdir())
    # Python's defaults: bytecode written next to the sources, unless the loader refuses
    env = dict(NO_MLFLOW, PYTHONPYCACHEPREFIX="")
    result = rm.run_runner(
        "predict",
        "--model",
        runtime_tiny,
        runner=runner,
        env=env,
        stdin=b'{"inputs": {"a": [2.0], "b": [1]}}',
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == b'{"predictions": [3.0]}'
    info = rm.run_runner("info", "--model", runtime_tiny, runner=runner, env=env)
    assert info.returncode == 0, info.stderr
    assert sorted(p.name for p in runner.parent.iterdir()) == before  # nothing written there


# ------------------------------------------------------------------------------------------
# predict: same bytes as MLflow


def test_predict_json_matches_mlflow_models_predict_cli(runtime_sklearn, tmp_path):
    example = runtime_sklearn / "serving_input_example.json"
    mlflow_out = tmp_path / "mlflow.json"
    cli = subprocess.run(
        [
            str(rm.DEV_PYTHON),
            "-m",
            "mlflow",
            "models",
            "predict",
            "-m",
            str(runtime_sklearn),
            "-i",
            str(example),
            "-o",
            str(mlflow_out),
            "--env-manager",
            "local",
        ],
        capture_output=True,
        text=True,
        env=rm.subprocess_env(),
        timeout=300,
    )
    assert cli.returncode == 0, cli.stderr
    ours = rm.run_runner("predict", "--model", runtime_sklearn, "--input", example)
    assert ours.returncode == 0, ours.stderr
    assert ours.stdout == mlflow_out.read_bytes()
    assert json.loads(ours.stdout)["predictions"] == [0, 0, 0]


def test_predict_csv_matches_mlflow(runtime_sklearn, runtime_iris_csv):
    ours = rm.run_runner("predict", "--model", runtime_sklearn, "--input", runtime_iris_csv)
    assert ours.returncode == 0, ours.stderr
    assert ours.stdout == rm.mlflow_reference(runtime_sklearn, runtime_iris_csv, "csv")
    assert len(json.loads(ours.stdout)["predictions"]) == 150


def test_predict_csv_in_chunks_writes_the_same_document(
    runtime_sklearn, runtime_iris_csv, tmp_path
):
    out = tmp_path / "chunked.json"
    result = rm.run_runner(
        "predict",
        "--model",
        runtime_sklearn,
        "--input",
        runtime_iris_csv,
        "--content-type",
        "csv",
        "--chunk-rows",
        "7",
        "--output",
        out,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == b""
    assert out.read_bytes() == rm.mlflow_reference(runtime_sklearn, runtime_iris_csv, "csv")
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask
    assert b"scored" not in result.stderr  # progress only on a terminal


def test_predict_reads_stdin_and_keeps_stdout_for_predictions(runtime_pyfunc, tmp_path):
    """The model prints to sys.stdout and to fd 1; only the predictions may reach stdout."""
    payload = {
        "dataframe_records": [{"x": 1.5, "name": "ab"}, {"x": 2.0, "name": "c"}],
        "params": {"scale": 3},
    }
    path = write(tmp_path, "scaler.json", payload)
    result = rm.run_runner(
        "predict", "--model", runtime_pyfunc, "--content-type", "json", stdin=path.read_bytes()
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == rm.mlflow_reference(runtime_pyfunc, path, "json")
    assert json.loads(result.stdout) == {
        "predictions": [{"y": 4.5, "label": "AB"}, {"y": 6.0, "label": "C"}]
    }
    assert b"model noise on sys.stdout" in result.stderr
    assert b"model noise on file descriptor 1" in result.stderr


def test_predict_onnx_tensor_input_matches_mlflow(runtime_onnx):
    example = runtime_onnx / "serving_input_example.json"
    result = rm.run_runner("predict", "--model", runtime_onnx, "--input", example)
    assert result.returncode == 0, result.stderr
    assert result.stdout == rm.mlflow_reference(runtime_onnx, example, "json")
    predictions = json.loads(result.stdout)["predictions"]
    assert predictions["label"] == [0, 0, 0]
    assert len(predictions["probabilities"][0]) == 3


@pytest.mark.parametrize(
    "payload",
    [
        {"dataframe_split": {"columns": ["a", "b"], "data": [[1.5, 2], [0.25, 3]]}},
        {"dataframe_records": [{"b": 2, "a": 1.5}, {"a": 0.25, "b": 3}], "params": {"scale": 2}},
        {"instances": [{"a": 1.5, "b": 2}, {"a": 0.25, "b": 3}]},
        {"inputs": {"a": [1.5, 0.25], "b": [2, 3]}, "params": {"scale": -1}},
        {"dataframe_split": {"columns": ["a", "b"], "data": [[1.5, 2.7]]}},
    ],
    ids=["split", "records-params", "instances", "inputs-params", "truncating-cast"],
)
def test_predict_without_mlflow_writes_what_mlflow_writes(runtime_tiny, tmp_path, payload):
    """The stdlib/pandas path (mlflow hidden) reproduces MLflow's parsing and output bytes."""
    path = write(tmp_path, "tiny.json", payload)
    result = rm.run_runner("predict", "--model", runtime_tiny, "--input", path, env=NO_MLFLOW)
    assert result.returncode == 0, result.stderr
    assert b"mlflow" not in result.stderr.lower()
    assert result.stdout == rm.mlflow_reference(runtime_tiny, path, "json")


def test_predict_csv_without_mlflow_writes_what_mlflow_writes(runtime_tiny, tmp_path):
    path = write(tmp_path, "tiny.csv", "a,b\n1.5,2\n0.25,3\n0.5,7\n")
    reference = rm.mlflow_reference(runtime_tiny, path, "csv")
    env = {"ENVBUILD_NO_MLFLOW": "1"}
    whole = rm.run_runner("predict", "--model", runtime_tiny, "--input", path, env=env)
    chunked = rm.run_runner(
        "predict", "--model", runtime_tiny, "--input", path, "--chunk-rows", "2", env=env
    )
    assert whole.returncode == chunked.returncode == 0, whole.stderr + chunked.stderr
    assert whole.stdout == chunked.stdout == reference
    assert json.loads(reference) == {"predictions": [4.75, 6.125, 14.25]}


# ------------------------------------------------------------------------------------------
# predict: exit codes and messages


def test_missing_column_exits_2_naming_it(runtime_sklearn, tmp_path):
    path = write(tmp_path, "bad.json", {"dataframe_records": [{"sepal length (cm)": 5.1}]})
    result = rm.run_runner("predict", "--model", runtime_sklearn, "--input", path)
    assert result.returncode == 2
    assert result.stdout == b""
    last = result.stderr.decode().strip().splitlines()[-1]
    assert "sepal width (cm)" in last and "missing" in last


@pytest.mark.parametrize(
    ("env", "payload", "needle"),
    [
        (NO_MLFLOW, "{not json", "valid JSON"),
        (NO_MLFLOW, '{"data": [[1, 2]]}', "dataframe_split"),
        (NO_MLFLOW, '{"dataframe_split": {"data": [[1, 2]], "extra": 1}}', "extra"),
        (NO_MLFLOW, '{"dataframe_records": [{"a": 1.0, "b": "seven"}]}', "column b"),
        (NO_MLFLOW, '{"instances": [{"a": 1.0}]}', "['b']"),
        ({}, '{"dataframe_records": [{"a": 1.0, "b": "seven"}]}', "column b"),
        ({}, '{"instances": [{"a": 1.0}]}', "['b']"),
    ],
    ids=[
        "syntax",
        "no-format-key",
        "split-keys",
        "uncastable",
        "missing",
        "mlflow-uncastable",
        "mlflow-missing",
    ],
)
def test_bad_input_exits_2_naming_the_field(runtime_tiny, tmp_path, env, payload, needle):
    path = write(tmp_path, "bad.json", payload)
    result = rm.run_runner("predict", "--model", runtime_tiny, "--input", path, env=env)
    assert result.returncode == 2, result.stderr
    assert result.stdout == b""
    assert needle in result.stderr.decode().strip().splitlines()[-1]


def test_model_exception_exits_5_with_its_type_on_one_line(runtime_pyfunc, tmp_path):
    path = write(tmp_path, "neg.json", {"dataframe_records": [{"x": -1.0, "name": "a"}]})
    result = rm.run_runner("predict", "--model", runtime_pyfunc, "--input", path)
    assert result.returncode == 5
    assert result.stdout == b""
    stderr = result.stderr.decode()
    assert "error: model failed to predict: ValueError: boom: negative x\n" in stderr
    assert "Traceback" not in stderr

    debug = rm.run_runner(
        "predict", "--model", runtime_pyfunc, "--input", path, env={"ENVBUILD_DEBUG": "1"}
    )
    assert debug.returncode == 5
    assert b"Traceback (most recent call last)" in debug.stderr
    assert b"raise ValueError" in debug.stderr


def test_model_exception_without_mlflow_exits_5(runtime_tiny, tmp_path):
    path = write(tmp_path, "neg.json", {"inputs": {"a": [-1.0], "b": [1]}})
    result = rm.run_runner("predict", "--model", runtime_tiny, "--input", path, env=NO_MLFLOW)
    assert result.returncode == 5
    assert "ArithmeticError: negative a is not allowed" in result.stderr.decode()


def test_unloadable_model_exits_5(tmp_path, runtime_tiny):
    result = rm.run_runner("predict", "--model", tmp_path / "nowhere", stdin=b"{}")
    assert result.returncode == 5
    assert b"does not exist" in result.stderr

    broken = tmp_path / "broken"
    (broken / "code").mkdir(parents=True)
    (broken / "MLmodel").write_text((runtime_tiny / "MLmodel").read_text())
    (broken / "code" / "envbuild_tiny_loader.py").write_text("raise RuntimeError('no weights')\n")
    result = rm.run_runner("predict", "--model", broken, stdin=b"{}", env=NO_MLFLOW)
    assert result.returncode == 5
    assert "model failed to load" in result.stderr.decode()
    assert "RuntimeError: no weights" in result.stderr.decode()


def test_failed_run_leaves_no_output_file(runtime_tiny, tmp_path):
    path = write(tmp_path, "bad.json", {"instances": [{"a": 1.0}]})
    out = tmp_path / "out.json"
    result = rm.run_runner(
        "predict",
        "--model",
        runtime_tiny,
        "--input",
        path,
        "--output",
        out,
        env=NO_MLFLOW,
    )
    assert result.returncode == 2
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".predictions")] == []


def test_usage_errors_exit_2(runtime_tiny, tmp_path):
    assert rm.run_runner("predict").returncode == 2
    missing = rm.run_runner("predict", "--model", runtime_tiny, "--input", tmp_path / "none.json")
    assert missing.returncode == 2
    assert b"none.json" in missing.stderr


# ------------------------------------------------------------------------------------------
# info


def test_info_describes_the_environment(runtime_sklearn):
    result = rm.run_runner("info", "--model", runtime_sklearn)
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["python_version"] == platform.python_version()
    assert info["mlflow_present"] is True
    import mlflow
    import sklearn

    assert info["mlflow_version"] == mlflow.__version__
    assert info["distributions"]["scikit-learn"] == sklearn.__version__
    assert info["model"]["flavors"] == ["python_function", "sklearn"]
    assert info["model"]["has_signature"] is True


def test_chunk_progress_goes_to_a_terminal_stderr_only(runtime_tiny, tmp_path):
    import pty

    path = write(tmp_path, "rows.csv", "a,b\n" + "1.0,1\n" * 10)
    primary, secondary = pty.openpty()
    try:
        result = subprocess.run(
            [
                str(rm.DEV_PYTHON),
                str(rm.RUNNER),
                "predict",
                "--model",
                str(runtime_tiny),
                "--input",
                str(path),
                "--chunk-rows",
                "4",
            ],
            stdout=subprocess.PIPE,
            stderr=secondary,
            env=rm.subprocess_env(NO_MLFLOW),
            timeout=60,
        )
        os.close(secondary)
        secondary = None
        shown = b""
        while True:
            try:
                data = os.read(primary, 4096)
            except OSError:
                break
            if not data:
                break
            shown += data
    finally:
        os.close(primary)
        if secondary is not None:
            os.close(secondary)
    assert result.returncode == 0
    assert result.stdout == b'{"predictions": [' + b", ".join([b"2.5"] * 10) + b"]}"
    assert b"scored 4 rows" in shown and b"scored 10 rows" in shown


# ------------------------------------------------------------------------------------------
# Hostile input: exit 2 naming the file (and line, column), never a traceback


def last_line(result) -> str:
    return result.stderr.decode().strip().splitlines()[-1]


@pytest.mark.parametrize("literal", ["NaN", "-Infinity", "1e999999"])
def test_bad_numbers_the_model_fails_on_are_bad_input_with_their_place(
    runtime_sklearn, tmp_path, literal
):
    row = '{"sepal length (cm)": ' + literal + ', "sepal width (cm)": 3.5, '
    row += '"petal length (cm)": 1.4, "petal width (cm)": 0.2}'
    path = write(tmp_path, "nan.json", '{"dataframe_records": [\n' + row + "]}")
    result = rm.run_runner("predict", "--model", runtime_sklearn, "--input", path)
    assert result.returncode == 2, result.stderr
    line = last_line(result)
    assert line.startswith(f"error: {path}:2:23: {literal} is not a number"), line
    assert "Traceback" not in result.stderr.decode()


def test_bad_number_in_a_csv_names_line_and_column(runtime_sklearn, tmp_path):
    header = ",".join(rm.iris_frame()[0].columns)
    path = write(tmp_path, "iris.csv", f"{header}\n5.1,3.5,1.4,0.2\n5.1,inf,1.4,0.2\n")
    result = rm.run_runner("predict", "--model", runtime_sklearn, "--input", path)
    assert result.returncode == 2, result.stderr
    assert last_line(result).startswith(
        f"error: {path}:3: column 'sepal width (cm)': inf is not a number"
    )


def test_uncastable_csv_cell_names_line_and_column(runtime_sklearn, tmp_path):
    header = ",".join(rm.iris_frame()[0].columns)
    path = write(tmp_path, "iris.csv", f"{header}\n5.1,3.5,1.4,0.2\n5.1,wide,1.4,0.2\n")
    for env in ({}, NO_MLFLOW):
        result = rm.run_runner("predict", "--model", runtime_sklearn, "--input", path, env=env)
        assert result.returncode == 2, result.stderr
        assert last_line(result).startswith(
            f"error: {path}:3: column 'sepal width (cm)': cannot convert 'wide' to double"
        ) or (env and "needs mlflow" in last_line(result))


def test_no_rows_is_bad_input(runtime_sklearn):
    body = {"dataframe_split": {"columns": list(rm.iris_frame()[0].columns), "data": []}}
    result = rm.run_runner("predict", "--model", runtime_sklearn, stdin=json.dumps(body).encode())
    assert result.returncode == 2
    assert last_line(result).startswith("error: <stdin>: the input has no rows")


@pytest.mark.parametrize("env", [{}, NO_MLFLOW], ids=["mlflow", "plain"])
def test_deeply_nested_json_is_bad_input_naming_the_file(runtime_tiny, tmp_path, env):
    path = write(tmp_path, "deep.json", '{"inputs": ' + "[" * 100_000 + "]" * 100_000 + "}")
    result = rm.run_runner("predict", "--model", runtime_tiny, "--input", path, env=env)
    assert result.returncode == 2, result.stderr
    assert last_line(result).startswith(f"error: {path}: the input nests deeper")
    assert b"RecursionError" not in result.stderr.replace(b"(maximum recursion", b"")


def test_json_syntax_error_names_line_and_column(runtime_tiny, tmp_path):
    path = write(tmp_path, "bad.json", '{"inputs":\n  {"a": [1.0,], "b": [1]}}')
    for env in ({}, NO_MLFLOW):
        result = rm.run_runner("predict", "--model", runtime_tiny, "--input", path, env=env)
        assert result.returncode == 2
        assert last_line(result).startswith(f"error: {path}:2:14: "), last_line(result)


def test_byte_order_mark_is_accepted(runtime_tiny, tmp_path):
    path = tmp_path / "bom.json"
    path.write_bytes(b'\xef\xbb\xbf{"inputs": {"a": [2.0], "b": [1]}}')
    for env in ({}, NO_MLFLOW):
        result = rm.run_runner("predict", "--model", runtime_tiny, "--input", path, env=env)
        assert (result.returncode, result.stdout) == (0, b'{"predictions": [3.0]}'), result.stderr


# ------------------------------------------------------------------------------------------
# --output PATH

TINY_INPUT = b'{"inputs": {"a": [2.0], "b": [1]}}'
TINY_OUTPUT = b'{"predictions": [3.0]}'


def predict_to(model, output, **kwargs):
    return rm.run_runner(
        "predict", "--model", model, "--output", output, stdin=TINY_INPUT, env=NO_MLFLOW, **kwargs
    )


def test_output_through_a_symlink_replaces_the_file_it_points_to(runtime_tiny, tmp_path):
    target = tmp_path / "real.json"
    target.write_text("old")
    target.chmod(0o640)
    link = tmp_path / "link.json"
    link.symlink_to(target.name)
    result = predict_to(runtime_tiny, link)
    assert result.returncode == 0, result.stderr
    assert link.is_symlink() and target.read_bytes() == TINY_OUTPUT
    assert target.stat().st_mode & 0o777 == 0o640  # an existing file keeps its mode


def test_output_to_a_fifo_is_streamed(runtime_tiny, tmp_path):
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    result = predict_to(runtime_tiny, fifo)
    reader.join(60)
    assert result.returncode == 0, result.stderr
    assert got == [TINY_OUTPUT]
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)  # written to, never replaced


def test_output_to_dev_stdout_is_standard_output(runtime_tiny):
    result = predict_to(runtime_tiny, "/dev/stdout")
    assert (result.returncode, result.stdout) == (0, TINY_OUTPUT), result.stderr


def test_output_to_a_folder_is_refused(runtime_tiny, tmp_path):
    result = predict_to(runtime_tiny, tmp_path)
    assert result.returncode == 2
    assert last_line(result) == f"error: {tmp_path}: cannot write output: it is a folder"


def test_a_killed_run_leaves_no_temporary_file_after_the_next_run(runtime_tiny, tmp_path):
    gate = rm.Gate(tmp_path / "gate")  # never released: the run is killed while predicting
    out = tmp_path / "out" / "predictions.json"
    out.parent.mkdir()
    args = [str(rm.DEV_PYTHON), str(rm.RUNNER), "predict", "--model", str(runtime_tiny)]
    args += ["--output", str(out)]
    env = rm.subprocess_env(dict(NO_MLFLOW, RUNTIME_TEST_PREDICT_GATE=str(gate)))
    killed = subprocess.Popen(
        args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env
    )
    killed.stdin.write(TINY_INPUT)
    killed.stdin.close()
    log = rm.ServerLog(killed.stderr, tmp_path / "killed.log")
    log.wait_for("gate: predict waiting")
    killed.kill()
    killed.wait()
    log.join()
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(".predictions-")]
    result = predict_to(runtime_tiny, out)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.parent.iterdir()) == ["predictions.json"]
    assert out.read_bytes() == TINY_OUTPUT


# ------------------------------------------------------------------------------------------
# Command-line values: exit 2, one line


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["serve", "--port", "99999"], "error: argument --port: 99999 is not a port number"),
        (["serve", "--port", "-1"], "error: argument --port: -1 is not a port number"),
        (["serve", "--workers", "0"], "error: argument --workers: 0 must be at least 1"),
        (["predict", "--chunk-rows", "0"], "error: argument --chunk-rows: 0 must be at least 1"),
    ],
)
def test_bad_option_values_exit_2_on_one_line(runtime_tiny, args, message):
    result = rm.run_runner(*args, "--model", runtime_tiny, stdin=b"")
    assert result.returncode == 2
    assert result.stderr.decode().splitlines() == [result.stderr.decode().strip()]
    assert result.stderr.decode().startswith(message)


def test_zero_workers_from_the_environment_exit_2(runtime_tiny):
    result = rm.run_runner("serve", "--model", runtime_tiny, env={"ENVBUILD_WORKERS": "0"})
    assert result.returncode == 2
    assert (
        last_line(result) == "error: environment variable ENVBUILD_WORKERS='0' must be at least 1"
    )


def test_a_busy_port_or_a_bad_host_exit_2_naming_host_and_port(runtime_tiny):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = rm.run_runner(
            "serve", "--model", runtime_tiny, "--port", port, "--host", "127.0.0.1", env=NO_MLFLOW
        )
    assert result.returncode == 2
    assert result.stderr.decode() == (
        f"error: cannot listen on 127.0.0.1:{port}: address already in use\n"
    )
    result = rm.run_runner("serve", "--model", runtime_tiny, "--host", "no-such-host.invalid")
    assert result.returncode == 2
    assert last_line(result).startswith("error: cannot listen on no-such-host.invalid:8080: ")
    assert "unknown error" not in last_line(result)

"""Stage 5 on the host side: running envbuild's runner (or any command) inside an environment.

The runner (``envbuild/runtime/runner.py``) is standard-library code executed *by path* with the
environment's interpreter, so the model's code never runs in envbuild's process and envbuild never
installs itself into the model's environment. This module builds those command lines and picks
the input a model is predicted on by default.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from envbuild import proc
from envbuild.envs import Environment
from envbuild.errors import InputDataError, ModelRunError, UsageError
from envbuild.model import SERVING_INPUT_EXAMPLE, ModelSpec
from envbuild.yamlio import read_text

RUNTIME_DIR = Path(__file__).resolve().parent / "runtime"
RUNNER = RUNTIME_DIR / "runner.py"

# the runner's exit codes (runtime/runner.py) -> envbuild's errors
RUNNER_BAD_INPUT = 2
RUNNER_MODEL_FAILED = 5
# CSV inputs larger than this are scored in chunks of AUTO_CHUNK_ROWS rows (constant memory)
AUTO_CHUNK_BYTES = 64 * 1024 * 1024
AUTO_CHUNK_ROWS = 50_000


def runner_argv(environment: Environment, command: str, *args: str) -> list[str]:
    return [str(environment.python), str(RUNNER), command, *args]


def default_input(model: ModelSpec) -> tuple[Path, str]:
    """The input ``predict`` uses when none is given: the serving example, else the input example.

    MLflow saves ``input_example.json`` in its raw form (a dataframe in split orient, an array, a
    JSON object); ``serving_input_example.json`` is the same wrapped as a scoring request. For an
    older model that has only the raw form, the request is rebuilt the way MLflow 2.x does.
    Returns (path, content type).
    """
    example = model.input_example
    serving = model.path / SERVING_INPUT_EXAMPLE
    if example is not None and example.serving_input_path is not None:
        return example.serving_input_path, "json"
    if serving.is_file():
        return serving, "json"
    if example is None or example.path is None:
        raise UsageError(
            "the model has no saved input example; pass one with -i FILE",
            hint="log the model with input_example=... to get one",
        )
    try:
        raw = json.loads(read_text(example.path))
    except json.JSONDecodeError as exc:
        raise InputDataError(
            f"invalid JSON: {exc.msg}", path=example.path, line=exc.lineno
        ) from None
    kind = (example.type or "").lower()
    if kind == "dataframe":
        orient = (example.format or "split").lower()
        request = {"dataframe_records" if orient == "records" else "dataframe_split": raw}
    elif kind in ("ndarray", "sparse_matrix_csc", "sparse_matrix_csr"):
        request = raw if isinstance(raw, dict) and "inputs" in raw else {"inputs": raw}
    else:
        request = raw
    folder = Path(tempfile.mkdtemp(prefix="envbuild-input-"))
    path = folder / "serving_input.json"
    path.write_text(json.dumps(request), encoding="utf-8")
    return path, "json"


def predict(
    environment: Environment,
    model: ModelSpec,
    *,
    input_path: Path | None,
    output_path: Path | None,
    content_type: str | None,
    chunk_rows: int | None = None,
) -> int:
    """Run the runner's ``predict``; predictions go to ``output_path`` or straight to stdout."""
    if input_path is None:
        input_path, content_type = default_input(model)
    elif str(input_path) != "-" and not input_path.is_file():
        raise InputDataError("input file not found", path=input_path)
    args = ["--model", str(model.path), "--input", str(input_path)]
    if output_path is not None:
        args += ["--output", str(output_path)]
    if content_type:
        args += ["--content-type", content_type]
    if chunk_rows is None and _is_large_csv(input_path, content_type):
        chunk_rows = AUTO_CHUNK_ROWS
    if chunk_rows:
        args += ["--chunk-rows", str(chunk_rows)]
    code = proc.call(runner_argv(environment, "predict", *args), env=environment.run_env())
    return _check_runner(code)


def _is_large_csv(path: Path, content_type: str | None) -> bool:
    """Batch scoring kicks in by itself for CSV files too big to hold comfortably in memory."""
    if (
        str(path) == "-"
        or (content_type or ("csv" if path.suffix.lower() == ".csv" else "")) != "csv"
    ):
        return False
    try:
        return path.stat().st_size > AUTO_CHUNK_BYTES
    except OSError:
        return False


def _check_runner(code: int) -> int:
    """The runner printed its own one-line error; map its exit code onto envbuild's."""
    if code == 0:
        return 0
    if code == RUNNER_BAD_INPUT:
        return int(InputDataError.exit_code)
    if code == RUNNER_MODEL_FAILED:
        return int(ModelRunError.exit_code)
    raise ModelRunError(f"the runner stopped with exit code {code}")


def serve_argv(
    environment: Environment, model: ModelSpec, host: str, port: int, workers: int | None
) -> list[str]:
    args = ["--model", str(model.path), "--host", host, "--port", str(port)]
    if workers:
        args += ["--workers", str(workers)]
    return runner_argv(environment, "serve", *args)


def command_argv(environment: Environment, command: list[str]) -> list[str]:
    """``envbuild run MODEL -- CMD``: CMD resolved on the environment's PATH first."""
    if not command:
        raise UsageError("no command given: envbuild run MODEL -- COMMAND [ARGS...]")
    env = environment.run_env()
    found = shutil.which(command[0], path=env.get("PATH"))
    if found is None:
        raise UsageError(f"command not found in the model's environment: {command[0]}")
    return [found, *command[1:]]


def environment_info(environment: Environment) -> dict[str, object]:
    """The runner's ``info`` inside the environment: Python, marker values, installed dists."""
    if environment.kind == "docker":
        from envbuild.envs import docker

        return docker.info(environment)
    done = proc.run(
        runner_argv(environment, "info"),
        what="listing the environment's distributions",
        error=ModelRunError,
        env=environment.run_env(),
    )
    try:
        return json.loads(done.stdout)
    except ValueError:
        raise ModelRunError(
            "the runner's info output is not JSON", log_path=done.log_path
        ) from None


def predict_to_file(
    environment: Environment,
    model: ModelSpec,
    input_path: Path,
    content_type: str | None,
    output: Path,
) -> None:
    """Run the runner's ``predict`` into ``output``; its one-line error becomes a ModelRunError."""
    if environment.kind == "docker":
        from envbuild.envs import docker

        return docker.predict_to_file(environment, model, input_path, content_type, output)
    args = ["--model", str(model.path), "--input", str(input_path), "--output", str(output)]
    if content_type:
        args += ["--content-type", content_type]
    done = proc.run(
        runner_argv(environment, "predict", *args),
        what="predicting",
        error=ModelRunError,
        env=environment.run_env(),
        check=False,
    )
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        message = lines[-1].removeprefix("error: ") if lines else f"exit {done.returncode}"
        error = InputDataError if done.returncode == RUNNER_BAD_INPUT else ModelRunError
        raise error(message, log_path=done.log_path)

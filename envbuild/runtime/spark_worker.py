"""What runs on Spark executors: find the unpacked archive, check that it suits this machine, start
its interpreter running the runner's ``stream`` command once per Python worker, and feed it the
partition's batches.

Executors have PySpark, pandas and pyarrow, never envbuild: ``envbuild.spark`` ships this module
*by value* (cloudpickle's ``register_pickle_by_value``), and ``envbuild spark-job`` ships it as a
file (``--py-files``). So it imports nothing but the standard library at module level (pandas and
pyspark inside functions), nothing of envbuild, not even its sibling runtime files.

The runner lives as long as the Python worker (Spark reuses workers across tasks): it is kept in
a module registered in ``sys.modules`` under a private name, because a module pickled by value is
a new copy in every task. It exits when the worker does (its stdin closes).

Errors are one line, ``[envbuild:CODE] message``, so the driver can find them in Spark's
exception text (:func:`explain`): ``ARCHIVE`` (not unpacked, unreadable), ``MISMATCH`` (another
platform or C library), ``START`` (the runner or the model failed to start or load), ``INPUT``
(the batch does not fit the model's signature), ``MODEL`` (the model failed on some rows: which
partition, which rows), ``DIED`` (the runner stopped).
"""

from __future__ import annotations

import atexit
import json
import os
import platform
import re
import select
import struct
import subprocess
import sys
import tempfile
import time
import types
from typing import Any, Callable, Dict, Iterator

HEADER, HEADER_SIZE = ">cI", 5  # a format, not a struct.Struct: this module is pickled
MANIFEST = "envbuild-pack.json"
STATE_MODULE = "_envbuild_spark_state"
_MARK = re.compile(r"\[envbuild:([A-Z]+)\] ([^\n]*)")
_LEAKY = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE", "VIRTUAL_ENV")
_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
MAX_ROW_TEXT = 300

Plan = Dict[str, Any]


class ScoringError(Exception):
    """A failure explained in one line, tagged with its code for the driver."""

    def __init__(self, code: str, message: str) -> None:
        text = " ".join(message.split())
        Exception.__init__(self, "[envbuild:%s] %s" % (code, text))
        self.code = code
        self.text = text


def explain(text: str) -> tuple[str, str] | None:
    """``(code, message)`` of the last envbuild error in an exception's text, or None."""
    found = _MARK.findall(text)
    return (found[-1][0], found[-1][1].strip()) if found else None


# ------------------------------------------------------------------------------------------
# this machine and the archive


def host_platform() -> str:
    machine = platform.machine().lower()
    return "%s/%s" % (platform.system().lower(), _ARCH.get(machine, machine))


def host_libc() -> str:
    name, version = platform.libc_ver()
    return ("%s %s" % (name, version)).strip()


def _version(text: str) -> tuple[int, ...]:
    numbers = re.findall(r"\d+", text)
    return tuple(int(n) for n in numbers)


def locate(alias: str) -> str:
    """The folder Spark unpacked ``alias`` into: ``SparkFiles``' root (local mode, standalone,
    Kubernetes), else the task's working folder (YARN links archives there)."""
    candidates = []
    try:
        from pyspark import SparkFiles

        candidates.append(os.path.join(SparkFiles.getRootDirectory(), alias))
    except Exception:
        pass
    candidates.append(os.path.abspath(alias))
    for folder in candidates:
        if os.path.isdir(folder):
            return folder
    raise ScoringError(
        "ARCHIVE",
        "%s was not unpacked on this executor (looked in %s); ship it with --archives FILE#%s"
        % (alias, ", ".join(candidates), alias),
    )


def check_environment(folder: str, expected: dict[str, Any]) -> dict[str, Any]:
    """The unpacked archive's manifest, after checking it suits this executor."""
    try:
        with open(os.path.join(folder, MANIFEST), encoding="utf-8") as handle:
            manifest = json.load(handle)
    except (OSError, ValueError) as exc:
        raise ScoringError(
            "ARCHIVE", "%s has no readable %s (%s)" % (folder, MANIFEST, exc)
        ) from None
    if manifest.get("lock", {}).get("digest") != expected.get("lock"):
        raise ScoringError(
            "MISMATCH",
            "the archive unpacked at %s holds lock %s, not the %s the driver shipped"
            % (folder, manifest.get("lock", {}).get("digest"), expected.get("lock")),
        )
    here = host_platform()
    if manifest.get("platform") != here:
        raise ScoringError(
            "MISMATCH",
            "the archive is for %s (Python %s); this executor is %s"
            % (manifest.get("platform"), manifest.get("python", {}).get("version"), here),
        )
    need, have = str(manifest.get("libc") or ""), host_libc()
    if need and have and need.split()[0] == have.split()[0]:
        if _version(have) < _version(need):
            raise ScoringError(
                "MISMATCH",
                "the archive's Python was built with %s; this executor has %s" % (need, have),
            )
    elif need and have:
        raise ScoringError(
            "MISMATCH", "the archive's Python needs %s; this executor has %s" % (need, have)
        )
    python = os.path.join(folder, manifest.get("python", {}).get("executable", ""))
    if not os.access(python, os.X_OK):
        raise ScoringError("ARCHIVE", "%s is missing or not executable" % python)
    return manifest


def relocate(folder: str, manifest: dict[str, Any], python: str, env: dict[str, str]) -> None:
    """A conda archive's files get the folder it was unpacked in (its ``envbuild/unpack.py``:
    idempotent, and safe for several workers at once)."""
    script = (manifest.get("relocate") or {}).get("script")
    if not script:
        return
    done = subprocess.run(
        [python, "-s", os.path.join(folder, script)],
        capture_output=True,
        env=env,
        check=False,
    )
    if done.returncode != 0:
        lines = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise ScoringError(
            "ARCHIVE",
            "relocating the archive unpacked at %s failed: %s"
            % (folder, lines[-1] if lines else "exit %d" % done.returncode),
        )


# ------------------------------------------------------------------------------------------
# the runner process


def _read_exactly(fd: int, size: int, deadline: float | None) -> bytes:
    chunks: list[bytes] = []
    remaining = size
    while remaining:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError
        chunk = os.read(fd, remaining)
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


class Runner:
    """The packed interpreter running ``runner.py stream --model M``: loaded once, fed frames."""

    def __init__(self, plan: Plan) -> None:
        self.env_dir = locate(plan["env"])
        self.model_dir = locate(plan["model"])
        manifest = check_environment(self.env_dir, plan["expected"])
        python = os.path.join(self.env_dir, manifest["python"]["executable"])
        runner = os.path.join(self.env_dir, manifest["runner"])
        env = {k: v for k, v in os.environ.items() if k not in _LEAKY}
        env["PYTHONNOUSERSITE"] = "1"
        env["PYTHONDONTWRITEBYTECODE"] = "1"  # the archive ships its bytecode
        if plan.get("mlmodel_json"):
            env["ENVBUILD_MLMODEL_JSON"] = plan["mlmodel_json"]
        relocate(self.env_dir, manifest, python, env)
        self.log = tempfile.TemporaryFile(prefix="envbuild-runner-")  # noqa: SIM115 (closed in close())
        self.batches = 0
        self.started = time.monotonic()
        try:
            self.process = subprocess.Popen(
                [python, runner, "stream", "--model", self.model_dir],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self.log,
                env=env,
                cwd=self.model_dir,
            )
        except OSError as exc:
            raise ScoringError("START", "cannot start %s: %s" % (python, exc)) from None
        deadline = time.monotonic() + float(plan.get("timeout") or 300)
        try:
            kind, payload = self._read(deadline)
        except TimeoutError:
            self.close()
            raise ScoringError(
                "START",
                "the model did not load within %s s (env_manager_timeout)" % plan.get("timeout"),
            ) from None
        if kind != b"H":
            message = json.loads(payload.decode("utf-8")).get("message", "") if payload else ""
            self.close()
            raise ScoringError("START", message or "the runner failed to start")
        self.hello: dict[str, Any] = json.loads(payload.decode("utf-8"))
        self.hello["load_seconds"] = round(time.monotonic() - self.started, 3)

    def _tail(self) -> str:
        try:
            self.log.seek(0)
            lines = [line for line in self.log.read().decode("utf-8", "replace").splitlines()]
        except (OSError, ValueError):
            return ""
        lines = [line for line in lines if line.strip()]
        return lines[-1] if lines else ""

    def _read(self, deadline: float | None = None) -> tuple[bytes, bytes]:
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        head = _read_exactly(fd, HEADER_SIZE, deadline)
        if len(head) < HEADER_SIZE:
            code = self.process.wait()
            tail = self._tail()
            raise ScoringError(
                "DIED",
                "the model's runner exited (code %s)%s" % (code, (": " + tail) if tail else ""),
            )
        kind, length = struct.unpack(HEADER, head)
        return kind, _read_exactly(fd, length, deadline)

    def alive(self) -> bool:
        return self.process.poll() is None

    def score(self, payload: bytes) -> tuple[bool, dict[str, Any]]:
        """``(True, {"predictions": ...})`` or ``(False, {"message", "exit_code", ...})``."""
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(struct.pack(HEADER, b"J", len(payload)) + payload)
            self.process.stdin.flush()
        except BrokenPipeError:
            self._read()  # raises DIED with the runner's last words
        kind, answer = self._read()
        self.batches += 1
        return kind == b"R", json.loads(answer.decode("utf-8"))

    def close(self) -> None:
        try:
            if self.process.stdin is not None:
                self.process.stdin.close()
            self.process.wait(timeout=10)
        except Exception:
            self.process.kill()
        self.log.close()


def _state() -> dict[tuple[str, str], Runner]:
    module = sys.modules.get(STATE_MODULE)
    if module is None:
        module = types.ModuleType(STATE_MODULE, "envbuild's runners in this Python worker")
        runners: dict[tuple[str, str], Runner] = {}
        module.runners = runners  # type: ignore[attr-defined]
        module.starts = {}  # type: ignore[attr-defined]
        sys.modules[STATE_MODULE] = module

        def close_all() -> None:
            for runner in list(runners.values()):
                runner.close()

        atexit.register(close_all)
    found: dict[tuple[str, str], Runner] = module.runners
    return found


def runner_for(plan: Plan) -> Runner:
    """This worker's runner for the plan's environment and model, started on first use."""
    runners = _state()
    key = (plan["env"], plan["model"])
    runner = runners.get(key)
    if runner is None or not runner.alive():
        if runner is not None:
            runner.close()
        runner = Runner(plan)
        runners[key] = runner
        starts = sys.modules[STATE_MODULE].starts
        starts[key] = starts.get(key, 0) + 1
    return runner


# ------------------------------------------------------------------------------------------
# batches


def _jsonable(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray)):
        import base64

        return base64.b64encode(bytes(value)).decode("ascii")
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def encode(pdf: Any) -> bytes:
    """A pandas batch as MLflow's ``dataframe_split`` request, as MLflow's own scoring client
    sends it (Python floats keep every digit: ``json`` writes their shortest exact form)."""
    split = pdf.to_dict(orient="split")
    body = {"dataframe_split": {"columns": split["columns"], "data": split["data"]}}
    return json.dumps(body, default=_jsonable, allow_nan=True).encode("utf-8")


_PANDAS = {
    "double": "float64",
    "float": "float32",
    "bigint": "Int64",
    "int": "Int32",
    "smallint": "Int16",
    "tinyint": "Int8",
    "boolean": "boolean",
}


def _column(values: list[Any], spark_type: str) -> Any:
    import pandas as pd

    dtype = _PANDAS.get(spark_type)
    if dtype is not None:
        return pd.Series(values, dtype=dtype)
    if spark_type == "string":
        return pd.Series([None if v is None else str(v) for v in values], dtype=object)
    return pd.Series(values, dtype=object)


def decode(result: dict[str, Any], rows: int, outputs: list[dict[str, str]]) -> list[Any]:
    """The runner's ``{"predictions": ...}`` as one pandas Series per output column."""
    predictions = result.get("predictions", result)
    if isinstance(predictions, dict):  # column-oriented: {"a": [...], "b": [...]}
        names = list(predictions)
        predictions = [dict(zip(names, row)) for row in zip(*predictions.values())]
    if not isinstance(predictions, list):
        predictions = [predictions]
    if len(predictions) != rows:
        raise ScoringError(
            "MODEL", "the model returned %d predictions for %d rows" % (len(predictions), rows)
        )
    columns = []
    for index, output in enumerate(outputs):
        name = output["name"]
        values = []
        for item in predictions:
            if isinstance(item, dict):
                if len(outputs) == 1 and name not in item and len(item) == 1:
                    item = next(iter(item.values()))
                else:
                    item = item.get(name)
            elif len(outputs) > 1 and isinstance(item, list):
                item = item[index] if index < len(item) else None
            values.append(item)
        columns.append(_column(values, output["type"]))
    return columns


def _row_text(pdf: Any, index: int) -> str:
    try:
        text = json.dumps(pdf.iloc[index].to_dict(), default=_jsonable)
    except Exception:
        return ""
    return text if len(text) <= MAX_ROW_TEXT else text[:MAX_ROW_TEXT] + "..."


def _partition() -> int:
    try:
        from pyspark import TaskContext

        context = TaskContext.get()
        return context.partitionId() if context is not None else -1
    except Exception:
        return -1


def _first_failing(runner: Runner, pdf: Any) -> int | None:
    """The first row the model fails on alone (by halving the batch), or None when every half
    scores and only the whole batch fails."""
    low, high = 0, len(pdf)
    while high - low > 1:
        middle = (low + high) // 2
        if not runner.score(encode(pdf.iloc[low:middle]))[0]:
            high = middle
        elif not runner.score(encode(pdf.iloc[middle:high]))[0]:
            low = middle
        else:
            return None
    return low


def predict_batch(runner: Runner, pdf: Any, plan: Plan, offset: int) -> list[Any]:
    """Predictions for one batch (rows ``offset``.. of the partition), or a ScoringError naming
    the partition and the rows the model fails on."""
    inputs = plan.get("inputs")
    if inputs:
        missing = [name for name in inputs if name not in pdf.columns]
        if missing:
            raise ScoringError(
                "INPUT",
                "column %s is missing (the model's signature needs %s)"
                % (", ".join(repr(m) for m in missing), ", ".join(repr(i) for i in inputs)),
            )
        pdf = pdf[list(inputs)]
    ok, answer = runner.score(encode(pdf))
    if ok:
        return decode(answer, len(pdf), plan["outputs"])
    message = str(answer.get("message") or "the model failed")
    code = "INPUT" if answer.get("exit_code") == 2 else "MODEL"
    where = "partition %d, rows %d-%d" % (_partition(), offset, offset + len(pdf) - 1)
    if answer.get("error_code") == "INVALID_PARAMETER_VALUE":  # the batch's columns, not a row
        raise ScoringError(code, "%s: %s" % (where, message))
    row = _first_failing(runner, pdf) if len(pdf) > 1 else 0
    if row is None:
        raise ScoringError(code, "%s: fails as a whole (each half scores): %s" % (where, message))
    raise ScoringError(
        code,
        "partition %d, row %d (%s): %s"
        % (_partition(), offset + row, _row_text(pdf, row), message),
    )


def score_frames(iterator: Iterator[Any], plan: Plan) -> Iterator[Any]:
    """``mapInPandas`` body: each batch with the prediction columns appended."""
    runner = runner_for(plan)
    offset = 0
    for pdf in iterator:
        if len(pdf) == 0:
            continue
        columns = predict_batch(runner, pdf, plan, offset)
        out = pdf.reset_index(drop=True).copy()
        for output, column in zip(plan["outputs"], columns):
            out[output["name"]] = column
        offset += len(pdf)
        yield out


def check_frames(iterator: Iterator[Any], plan: Plan) -> Iterator[Any]:
    """``mapInPandas`` body of the driver's check: start (or reuse) this worker's runner and
    say who it is; the input rows are not scored."""
    import pandas as pd

    for _ in iterator:
        pass
    runner = runner_for(plan)
    info = dict(runner.hello, worker_platform=host_platform(), worker_libc=host_libc())
    yield pd.DataFrame({"info": [json.dumps(info)]})


def describe_frames(iterator: Iterator[Any], plan: Plan) -> Iterator[Any]:
    """``mapInPandas`` body of ``envbuild.spark.probe``: one row per batch saying who scored it
    (the runner's interpreter, its pid, how many batches it has scored in this worker)."""
    import pandas as pd

    runner = runner_for(plan)
    offset = 0
    for pdf in iterator:
        if len(pdf) == 0 and offset:
            continue
        if len(pdf):
            predict_batch(runner, pdf, plan, offset)
        info = dict(runner.hello)
        starts = sys.modules[STATE_MODULE].starts
        info.update(
            partition=_partition(),
            rows=len(pdf),
            worker_pid=os.getpid(),
            runner_batches=runner.batches,
            runner_starts=starts.get((plan["env"], plan["model"]), 0),
            worker_python=sys.executable,
            worker_platform=host_platform(),
            worker_libc=host_libc(),
        )
        offset += len(pdf)
        yield pd.DataFrame({"info": [json.dumps(info)]})


def udf_function(plan: Plan) -> Callable[..., Any]:
    """The body of ``envbuild.spark.predict_udf``: Series (one per input column, in the model's
    signature order, or one struct) in, a Series (or a DataFrame for several outputs) out."""

    def predict(*columns: Any) -> Any:
        import pandas as pd

        if len(columns) == 1 and isinstance(columns[0], pd.DataFrame):
            pdf = columns[0]
        else:
            names = list(plan.get("inputs") or [])
            if len(names) != len(columns):
                names = [str(i) for i in range(len(columns))]
            pdf = pd.DataFrame({name: col for name, col in zip(names, columns)})
        runner = runner_for(plan)
        partition = _partition()
        offset = _offsets.get(partition, 0)
        outputs = predict_batch(runner, pdf, plan, offset)
        _offsets[partition] = offset + len(pdf)
        if plan.get("struct"):
            return pd.DataFrame({o["name"]: c for o, c in zip(plan["outputs"], outputs)})
        return outputs[0]

    return predict


_offsets: dict[int, int] = {}  # rows already scored, per partition (a copy per task)

"""The runner's commands: ``predict`` (score a file), ``serve`` (the HTTP server), ``info``.

Each takes the parsed command line and returns an exit code, raising
:class:`~errors.RunnerError` subclasses for the CLI to print on one line. Errors about the input
file name it (``error: iris.csv:3: column 'sepal width (cm)': ...``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from typing import IO, Any

from . import mlflow_compat
from .backends import CSV, JSON, Backend, load_backend, warn
from .errors import EXIT_OK, BadInput, PredictFailure, RunnerError, UsageError
from .mlmodel import Meta, read_mlmodel
from .output import Output

RUNNER_VERSION = "1.1"
DEFAULT_MAX_BODY_BYTES = 100 * 1024 * 1024
STDIN_NAME = "<stdin>"


def _read_input_bytes(path: str | None) -> bytes:
    if path in (None, "-"):
        return sys.stdin.buffer.read()
    assert path is not None
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise BadInput("cannot read input: %s" % (exc.strerror or exc)).where(path) from None


def cmd_predict(args: argparse.Namespace, stdout_fd: int) -> int:
    source = STDIN_NAME if args.input in (None, "-") else args.input
    if args.input not in (None, "-") and (
        not os.path.exists(args.input) or os.path.isdir(args.input)
    ):
        raise BadInput("input file does not exist").where(args.input)
    output = Output(args.output, stdout_fd)
    output.check()
    content_type = args.content_type
    if content_type is None:
        content_type = CSV if str(args.input or "").lower().endswith(".csv") else JSON
    backend = load_backend(args.model)
    try:
        with output as out:
            _predict(backend, args, content_type, out)
    except BadInput as exc:
        exc.where(source)
        raise
    return EXIT_OK


def _predict(backend: Backend, args: argparse.Namespace, content_type: str, out: IO[str]) -> None:
    from_stdin = args.input in (None, "-")
    if content_type == CSV and args.chunk_rows:
        source = sys.stdin if from_stdin else args.input
        _predict_chunks(backend, source, args.chunk_rows, out)
        return
    if content_type == CSV and not from_stdin:
        data = backend.read_csv_located(args.input)
        try:
            raw = backend.predict(data, None)
        except PredictFailure as exc:
            better = backend.explain(exc, data, CSV, args.input)
            if better is None:
                raise
            raise better from exc
        out.write(backend.to_json(raw, False))
        return
    if content_type == JSON and args.chunk_rows:
        warn("--chunk-rows applies to CSV input only; reading the whole JSON input")
    out.write(backend.score(_read_input_bytes(args.input), content_type))


def _predict_chunks(backend: Backend, source: Any, chunk_rows: int, out: IO[str]) -> None:
    """Score a CSV N rows at a time and write one ``{"predictions": [...]}`` document.

    Items are joined with the separators ``json.dump`` uses, so the bytes equal the unchunked
    output whenever the model's predictions are row-aligned lists.
    """
    show_progress = sys.stderr.isatty()
    rows = 0
    first = True
    out.write('{"predictions": [')
    chunks = backend.iter_csv(source, chunk_rows)
    while True:
        try:
            chunk = next(chunks)
        except StopIteration:
            break
        except BadInput as exc:
            located = backend.locate_csv(exc, source) if isinstance(source, str) else None
            if located is None:
                raise
            raise located from exc
        if len(chunk) == 0:
            continue
        try:
            raw = backend.predict(chunk, None)
        except PredictFailure as exc:
            where = source if isinstance(source, str) else None
            better = backend.explain(exc, chunk, CSV, where)
            if better is None:
                raise
            raise better from exc
        predictions = backend.jsonable(raw)
        if not isinstance(predictions, list):
            raise BadInput(
                "--chunk-rows needs a model whose predictions are a list per row; this model "
                "returned %s. Score without --chunk-rows" % type(predictions).__name__
            )
        for item in predictions:
            out.write(("" if first else ", ") + backend.dumps(item))
            first = False
        rows += len(chunk)
        if show_progress:
            sys.stderr.write("\rscored %d rows" % rows)
            sys.stderr.flush()
    out.write("]}")
    if show_progress:
        sys.stderr.write("\n")


def env_int(name: str, default: int, minimum: int) -> int:
    value = os.environ.get(name)
    if value in (None, ""):
        return default
    assert value is not None
    try:
        number = int(value)
    except ValueError:
        raise UsageError("environment variable %s=%r is not an integer" % (name, value)) from None
    if number < minimum:
        raise UsageError("environment variable %s=%r must be at least %d" % (name, value, minimum))
    return number


class ServingApp:
    """What the HTTP server needs from a model; keeps the server free of model logic."""

    def __init__(self, model_dir: str, meta: Meta) -> None:
        self.model_dir = model_dir
        self.meta = meta
        self.backend: Backend | None = None
        self._openapi: bytes | None = None
        self.mlflow_present = mlflow_compat.available()
        installed = mlflow_compat.installed_version() if self.mlflow_present else None
        self.mlflow_version = installed
        # GET /version answers MLflow's bare version string, as `mlflow models serve` does; without
        # MLflow, the version the model was saved with (whose request formats are served).
        self.version = (installed or str(meta.get("mlflow_version") or RUNNER_VERSION)).encode()

    def load(self) -> None:
        self.backend = load_backend(self.model_dir, self.meta)

    def parquet_problem(self) -> str | None:
        assert self.backend is not None
        return self.backend.parquet_problem()

    def invoke(self, body: bytes, kind: str) -> bytes:
        """Score one request body (``kind``: json, csv or parquet); the response bytes."""
        assert self.backend is not None
        return self.backend.score(body, kind).encode("utf-8")

    def metadata(self, state: dict[str, Any]) -> bytes:
        """``/metadata``: the worker's ``state`` (status, pid, error) and the versions."""
        info = dict(state)
        info["model_uuid"] = self.meta.get("model_uuid")
        info["run_id"] = self.meta.get("run_id")
        info["python_version"] = platform.python_version()
        info["mlflow_version"] = self.mlflow_version
        info["runner_version"] = RUNNER_VERSION
        return json.dumps(info).encode()

    def openapi(self) -> bytes:
        if self._openapi is None:
            from . import openapi

            self._openapi = json.dumps(openapi.build_openapi(self.meta, RUNNER_VERSION)).encode()
        return self._openapi


def cmd_serve(args: argparse.Namespace) -> int:
    from . import server

    workers = args.workers if args.workers is not None else env_int("ENVBUILD_WORKERS", 1, 1)
    max_body = env_int("ENVBUILD_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES, 1)
    env_int("ENVBUILD_THREADS", 1, 1)  # scoring threads per worker, read by the server
    meta = read_mlmodel(args.model)
    app = ServingApp(args.model, meta)
    return server.serve(app, args.host, args.port, workers, max_body)


def marker_environment() -> dict[str, str]:
    """PEP 508 marker values of this interpreter (what packaging's default_environment returns),
    so the host can tell which of a lock's packages apply here."""
    impl = sys.implementation
    version = "%d.%d.%d" % (impl.version.major, impl.version.minor, impl.version.micro)
    if impl.version.releaselevel != "final":
        version += impl.version.releaselevel[0] + str(impl.version.serial)
    return {
        "implementation_name": impl.name,
        "implementation_version": version,
        "os_name": os.name,
        "platform_machine": platform.machine(),
        "platform_release": platform.release(),
        "platform_system": platform.system(),
        "platform_version": platform.version(),
        "python_full_version": platform.python_version(),
        "platform_python_implementation": platform.python_implementation(),
        "python_version": ".".join(platform.python_version_tuple()[:2]),
        "sys_platform": sys.platform,
    }


def cmd_info(args: argparse.Namespace, stdout_fd: int) -> int:
    from importlib import metadata

    distributions: dict[str, str] = {}
    for dist in metadata.distributions():
        try:
            name = dist.metadata["Name"]
        except Exception:
            name = None
        if name and name not in distributions:
            distributions[name] = dist.version
    info: dict[str, Any] = {
        "runner_version": RUNNER_VERSION,
        "python_version": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "executable": sys.executable,
        "platform": platform.platform(),
        "mlflow_present": mlflow_compat.available(),
        "mlflow_version": mlflow_compat.installed_version(),
        "distributions": dict(sorted(distributions.items(), key=lambda kv: kv[0].lower())),
        "markers": marker_environment(),
    }
    if args.model:
        try:
            meta = read_mlmodel(args.model)
            conf = (meta.get("flavors") or {}).get("python_function") or {}
            info["model"] = {
                "model_uuid": meta.get("model_uuid"),
                "run_id": meta.get("run_id"),
                "flavors": sorted(meta.get("flavors") or {}),
                "loader_module": conf.get("loader_module"),
                "python_version": conf.get("python_version"),
                "has_signature": bool(meta.get("signature")),
            }
        except RunnerError as exc:
            info["model"] = {"error": str(exc)}
    with open(stdout_fd, "w", encoding="utf-8", closefd=False) as out:
        json.dump(info, out, indent=2)
        out.write("\n")
    return EXIT_OK

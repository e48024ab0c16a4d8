"""``runner.py stream --model M``: a long-lived scorer fed batches on stdin (for Spark workers).

Why a stream and not ``serve``: a Spark Python worker scores many batches of one partition after
another, and loads the model once for its whole life; a pipe costs no port, no HTTP parsing and
no readiness polling, and the runner dies with its parent (stdin closes). MLflow's ``spark_udf``
does the same with its scoring subprocess.

Frames, both directions: one type byte, a 4-byte big-endian length, then the payload.

- runner -> caller, once the model is loaded: ``H`` + JSON (``pid``, ``executable``,
  ``python_version``, ``platform``, ``mlflow_version``, ``runner_version``); or ``E`` + JSON
  error and the runner exits with its exit code (5: the model failed to load);
- caller -> runner: ``J`` (a JSON body in MLflow's scoring formats, e.g. ``dataframe_split``),
  ``C`` (CSV) or ``P`` (Parquet), each answered by ``R`` + the predictions exactly as
  ``predict`` writes them (``{"predictions": ...}``, MLflow's own encoding when it is there) or
  ``E`` + ``{"message", "exit_code", "error_code"}``; the runner goes on after an error;
- ``Q`` or the end of stdin: the runner exits 0.

Standard output carries frames only (``print`` in model code goes to stderr, see
``output.claim_stdout``).
"""

from __future__ import annotations

import json
import os
import platform
import struct
import sys
from typing import IO, Any

from . import mlflow_compat
from .backends import CSV, JSON, PARQUET, Backend, load_backend
from .errors import EXIT_OK, RunnerError, UsageError

HEADER = struct.Struct(">cI")
HELLO, RESULT, ERROR, QUIT = b"H", b"R", b"E", b"Q"
KINDS = {b"J": JSON, b"C": CSV, b"P": PARQUET}


def read_frame(stream: IO[bytes]) -> tuple[bytes, bytes] | None:
    """The next ``(type, payload)``, or None at a clean end of the stream."""
    head = _read_exactly(stream, HEADER.size)
    if not head:
        return None
    if len(head) < HEADER.size:
        raise UsageError("the input stream ended inside a frame header")
    kind, length = HEADER.unpack(head)
    payload = _read_exactly(stream, length)
    if len(payload) < length:
        raise UsageError(
            "the input stream ended inside a frame (%d of %d bytes)" % (len(payload), length)
        )
    return kind, payload


def _read_exactly(stream: IO[bytes], size: int) -> bytes:
    chunks = []
    remaining = size
    while remaining:
        chunk = stream.read(remaining)
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def write_frame(stream: IO[bytes], kind: bytes, payload: bytes) -> None:
    stream.write(HEADER.pack(kind, len(payload)) + payload)
    stream.flush()


def error_payload(exc: RunnerError) -> bytes:
    return json.dumps(
        {"message": str(exc), "exit_code": exc.exit_code, "error_code": exc.error_code}
    ).encode("utf-8")


def hello(backend: Backend) -> dict[str, Any]:
    from .commands import RUNNER_VERSION

    return {
        "pid": os.getpid(),
        "executable": sys.executable,
        "prefix": sys.prefix,
        "python_version": platform.python_version(),
        "platform": "%s/%s" % (platform.system().lower(), platform.machine()),
        "mlflow_version": mlflow_compat.installed_version() if mlflow_compat.available() else None,
        "backend": type(backend).__name__,
        "runner_version": RUNNER_VERSION,
    }


def cmd_stream(model: str, stdout_fd: int) -> int:
    out = os.fdopen(stdout_fd, "wb", closefd=False)
    source = sys.stdin.buffer
    try:
        backend = load_backend(model)
    except RunnerError as exc:
        write_frame(out, ERROR, error_payload(exc))
        raise
    write_frame(out, HELLO, json.dumps(hello(backend)).encode("utf-8"))
    while True:
        frame = read_frame(source)
        if frame is None or frame[0] == QUIT:
            return EXIT_OK
        kind, payload = frame
        content_type = KINDS.get(kind)
        try:
            if content_type is None:
                raise UsageError("unknown frame type %r (expected J, C, P or Q)" % kind)
            answer = backend.score(payload, content_type).encode("utf-8")
        except RunnerError as exc:
            write_frame(out, ERROR, error_payload(exc))
            continue
        write_frame(out, RESULT, answer)


__all__ = ["cmd_stream", "read_frame", "write_frame"]

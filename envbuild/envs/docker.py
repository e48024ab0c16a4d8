"""The ``docker`` kind: building an image through the Docker Engine API, and running the model in it.

Through the ``docker`` SDK (a library: no ``docker`` CLI needed, and ``DOCKER_HOST`` /
``docker context`` settings of ``docker.from_env()`` apply), with the classic builder's API:

* a build streams its chunks to ``on_line`` (progress on a terminal), keeps the whole output in a
  log file of envbuild's cache, and counts the steps the layer cache answered; the engine reports a
  failed build as a final ``{"error": ...}`` chunk, not an exception, which becomes a BuildError
  (exit 4) with the failing step's output tail and the log's path;
* ``predict`` copies the input into a fresh container and the predictions out of it through the
  API (no bind mount: it works with a remote engine and whatever the input file's owner and mode),
  with no network at all;
* ``serve`` runs the image's server with host networking (the port the runner is told is the
  port it listens on, with or without a bridge network), forwards its output, and stops the
  container on SIGTERM/Ctrl-C.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import signal
import sys
import tarfile
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from envbuild import proc
from envbuild.errors import BuildError, InputDataError, ModelRunError

if TYPE_CHECKING:
    import docker
    from docker.models.images import Image

    from envbuild.envs import Environment
    from envbuild.lock import Lock
    from envbuild.model import ModelSpec

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_STEP = re.compile(r"^Step (\d+)/(\d+) : (.*)$")
_EXIT = re.compile(r"returned a non-zero code: (\d+)")
# the builder's own chatter, left out of a failure's tail (the log keeps everything)
_NOISE = ("--->", "Removing intermediate container", "Using Python ")
TAIL_LINES = 12
IMAGE_MODEL_DIR = "/opt/model"
IO_DIR = "/tmp/envbuild-io"  # predict's input and output inside the container
IMAGE_UID = 10001
ROLE_LABEL = "envbuild.role"


def client() -> docker.DockerClient:
    """A client for the engine ``docker.from_env()`` finds; a BuildError when none answers."""
    try:
        import docker
    except ImportError:  # pragma: no cover - a dependency of envbuild
        raise BuildError(
            "the docker Python package is missing", hint="pip install docker"
        ) from None
    try:
        engine = docker.from_env(timeout=3600)
        engine.ping()
    except Exception as exc:
        raise BuildError(
            f"cannot reach the Docker engine: {_one_line(str(exc))}",
            hint="start Docker (or set DOCKER_HOST); `envbuild image --context DIR` writes the "
            "build context for another builder without an engine",
        ) from None
    return engine


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(_ANSI.sub("", text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def find_image(engine: docker.DockerClient, ref: str) -> Image | None:
    import docker

    try:
        return engine.images.get(ref)
    except docker.errors.ImageNotFound:
        return None


def image_python(engine: docker.DockerClient, ref: str) -> str | None:
    """The Python version a local image declares (``PYTHON_VERSION``, as Docker Hub's python
    images do); None when the image is absent or does not say."""
    image = find_image(engine, ref)
    if image is None:
        return None
    for item in (image.attrs.get("Config") or {}).get("Env") or []:
        name, _, value = item.partition("=")
        if name == "PYTHON_VERSION" and value:
            return value
    return None


# ---------------------------------------------------------------------------------------------
# Building


@dataclass(frozen=True)
class Built:
    """A finished build: the image, its size, and how much the layer cache answered."""

    image_id: str
    size: int | None
    steps: int  # instructions other than FROM
    cached_steps: int  # of those, answered by the layer cache ("Using cache")
    uncached: tuple[str, ...]  # the instructions that ran
    log_path: Path | None
    seconds: float


class _BuildLog:
    """Collects the build's output: whole lines, the current step, its output and cache use."""

    def __init__(self, tag: str, on_line: Callable[[str], None] | None) -> None:
        self.on_line = on_line
        self.pending = ""
        self.step = 0
        self.steps = 0
        self.instruction = ""
        self.step_lines: list[str] = []
        self.cached: set[int] = set()
        self.instructions: dict[int, str] = {}
        self.path: Path | None = None
        self.handle: io.TextIOBase | None = None
        try:
            slug = re.sub(r"[^a-zA-Z0-9]+", "-", tag).strip("-")[:40]
            self.path = (
                proc.logs_dir()
                / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-docker-build-{slug}.log"
            )
            self.handle = self.path.open("w", encoding="utf-8")
        except OSError:  # a log is a convenience; never fail the build because of it
            self.path, self.handle = None, None

    def write(self, text: str) -> None:
        if self.handle is not None:
            self.handle.write(proc.redact(_ANSI.sub("", text)))
            self.handle.flush()

    def feed(self, text: str) -> None:
        self.write(text)
        self.pending += text
        *lines, self.pending = re.split(r"\r\n|\n|\r", self.pending)
        for line in lines:
            self._line(_ANSI.sub("", line).rstrip())

    def _line(self, line: str) -> None:
        match = _STEP.match(line)
        if match:
            self.step, self.steps = int(match.group(1)), int(match.group(2))
            self.instruction = match.group(3)
            self.instructions[self.step] = self.instruction
            self.step_lines = []
            if self.on_line:
                self.on_line(f"step {self.step}/{self.steps}: {self.instruction}")
            return
        if line.strip() == "---> Using cache":
            self.cached.add(self.step)
        if not line.strip() or line.lstrip().startswith(_NOISE):
            return
        self.step_lines.append(line)
        if self.on_line:
            self.on_line(f"step {self.step}/{self.steps}: {line.strip()}")

    def close(self) -> None:
        if self.pending:
            self._line(_ANSI.sub("", self.pending).rstrip())
            self.pending = ""
        if self.handle is not None:
            self.handle.close()
            self.handle = None

    def uncached(self) -> tuple[str, ...]:
        """The instructions the builder ran (FROM steps are not counted: they add no layer)."""
        return tuple(
            text
            for step, text in sorted(self.instructions.items())
            if step not in self.cached and not text.upper().startswith("FROM ")
        )

    def tail(self) -> str:
        lines = [line for line in self.step_lines if line.strip()]
        return "\n".join(proc.redact(line) for line in lines[-TAIL_LINES:])


def _failure_hint(text: str, instruction: str) -> str:
    lowered = text.lower()
    if instruction.upper().startswith("FROM") or "pull access denied" in lowered:
        return (
            "the base image is not on this engine and could not be pulled: pull or build it "
            "first, or choose another with --base-image"
        )
    if "certificate" in lowered or "unknownissuer" in lowered or "ssl" in lowered:
        return (
            "the build could not verify an HTTPS certificate: behind a TLS-intercepting proxy, "
            "pass its CA bundle with --ca-cert FILE (or set SSL_CERT_FILE)"
        )
    if "hash mismatch" in lowered or ("hashes" in lowered and "match" in lowered):
        return (
            "a downloaded file does not match the hash in the lock: the lock or the index is "
            "wrong; lock again with `envbuild lock`"
        )
    if any(
        word in lowered for word in ("dns error", "name resolution", "unreachable", "timed out")
    ):
        return "the build could not reach the index: try --network host"
    return "the log has the whole build output"


def build(
    engine: docker.DockerClient,
    context: Path,
    tag: str,
    *,
    network: str | None = "host",
    build_args: Mapping[str, str] | None = None,
    platform: str | None = None,
    nocache: bool = False,
    target: str | None = None,
    on_line: Callable[[str], None] | None = None,
) -> Built:
    """``docker build`` of ``context`` into ``tag`` with the classic builder, streamed and logged."""
    import docker

    started = time.monotonic()
    log = _BuildLog(tag, on_line)
    image_id = ""
    error: str | None = None
    options: dict[str, Any] = {}
    if platform:
        options["platform"] = platform
    if target:
        options["target"] = target
    try:
        for chunk in engine.api.build(
            path=str(context),
            tag=tag,
            rm=True,
            forcerm=True,
            pull=False,
            nocache=nocache,
            network_mode=None if network in (None, "", "default") else network,
            buildargs=dict(build_args or {}),
            decode=True,
            **options,
        ):
            if "stream" in chunk:
                log.feed(str(chunk["stream"]))
            elif "status" in chunk:  # pulling the base image
                log.write(f"{chunk.get('id', '')} {chunk['status']}\n")
            if "aux" in chunk and isinstance(chunk["aux"], dict) and "ID" in chunk["aux"]:
                image_id = str(chunk["aux"]["ID"])
            if "error" in chunk:
                error = str(chunk.get("error") or "")
                log.write(f"\nERROR: {error}\n")
                break
    except docker.errors.APIError as exc:
        error = exc.explanation if isinstance(exc.explanation, str) else str(exc)
        log.write(f"\nERROR: {error}\n")
    except Exception as exc:  # the connection dropped, the engine stopped...
        error = f"{type(exc).__name__}: {exc}"
        log.write(f"\nERROR: {error}\n")
    finally:
        log.close()
    if error is not None:
        instruction = _one_line(log.instruction, 90)
        where = f" at step {log.step}/{log.steps} ({instruction})" if log.step else ""
        tail = log.tail()
        code = _EXIT.search(error)
        reason = f"exit {code.group(1)}" if code else proc.redact(_one_line(error))
        raise BuildError(
            f"the image build failed{where}: {reason}" + (f":\n{tail}" if tail else ""),
            hint=_failure_hint(f"{error}\n{tail}", log.instruction),
            log_path=log.path,
        )
    image = engine.images.get(image_id or tag)
    return Built(
        image_id=image.id,
        size=image.attrs.get("Size"),
        steps=sum(1 for text in log.instructions.values() if not text.upper().startswith("FROM ")),
        cached_steps=len(log.cached),
        uncached=log.uncached(),
        log_path=log.path,
        seconds=time.monotonic() - started,
    )


# ---------------------------------------------------------------------------------------------
# Running the model in a container


def _image(environment: Environment) -> str:
    return environment.details["image"]


def _write_fd(fd: int, data: bytes) -> None:
    """Write to our stdout/stderr the way a child process sharing them would."""
    (sys.stdout if fd == 1 else sys.stderr).flush()
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _owned(info: tarfile.TarInfo, mode: int) -> tarfile.TarInfo:
    info.mode, info.uid, info.gid, info.mtime = mode, IMAGE_UID, IMAGE_UID, time.time()
    return info


def _input_archive(source: Path | None, name: str) -> IO[bytes]:
    """A tar of ``envbuild-io/`` (plus ``envbuild-io/NAME`` with the bytes of ``source``) owned
    by the image's user, who writes the output there. Spooled to disk past 8 MiB and streamed
    to the engine, so a large input is never held in memory."""
    spool = tempfile.SpooledTemporaryFile(max_size=8 << 20)  # noqa: SIM115 - the caller closes it
    with tarfile.open(fileobj=spool, mode="w") as tar:
        folder = _owned(tarfile.TarInfo("envbuild-io"), 0o755)
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)
        if source is not None:
            member = _owned(tarfile.TarInfo(f"envbuild-io/{name}"), 0o644)
            member.size = source.stat().st_size
            with source.open("rb") as handle:
                tar.addfile(member, handle)
    spool.seek(0)
    return spool


def _read_archive_file(chunks: Iterable[bytes]) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(b"".join(chunks)), mode="r") as tar:
        for member in tar.getmembers():
            if member.isfile():
                handle = tar.extractfile(member)
                return handle.read() if handle is not None else b""
    return b""


@contextlib.contextmanager
def _input(input_path: Path) -> Iterator[tuple[Path, str]]:
    """The input as a file and its name in the container (the suffix tells the runner CSV);
    standard input is saved to a temporary file first (a tar member needs its size)."""
    if str(input_path) != "-":
        if not input_path.is_file():
            raise InputDataError("input file not found", path=input_path)
        yield input_path, "input" + "".join(input_path.suffixes[-1:]).lower()
        return
    with tempfile.NamedTemporaryFile(prefix="envbuild-stdin-") as saved:
        shutil.copyfileobj(sys.stdin.buffer, saved)
        saved.flush()
        yield Path(saved.name), "input"


@dataclass(frozen=True)
class _Ran:
    code: int
    stdout: bytes
    stderr: bytes  # empty when it was streamed
    output: bytes | None  # IO_DIR/output, when the run succeeded and asked for one


def _run_runner(
    environment: Environment,
    command: list[str],
    *,
    input_file: tuple[Path, str] | None = None,
    output: bool = False,
    stream_stderr: bool = False,
) -> _Ran:
    """One runner command in a throwaway container with no network: the input is copied in
    before it starts, ``IO_DIR/output`` copied out after it ends, the container removed."""
    engine = client()
    container = engine.containers.create(
        _image(environment),
        command,
        network_mode="none",
        labels={ROLE_LABEL: command[0]},
        environment=_passed_env(),
    )
    try:
        source, name = input_file or (None, "")
        with _input_archive(source, name) as archive:
            container.put_archive("/tmp", archive)
        container.start()
        if stream_stderr:  # the runner's stdout is its stderr too (model noise): both to fd 2
            for chunk in container.logs(stream=True, follow=True, stdout=True, stderr=True):
                _write_fd(2, chunk)
        code = int(container.wait().get("StatusCode", 1))
        stdout = container.logs(stdout=True, stderr=False)
        stderr = b"" if stream_stderr else container.logs(stdout=False, stderr=True)
        result = None
        if output and code == 0:
            stream, _ = container.get_archive(f"{IO_DIR}/output")
            result = _read_archive_file(stream)
    except KeyboardInterrupt:
        container.kill()
        raise
    finally:
        container.remove(force=True)
    return _Ran(code, stdout, stderr, result)


def _predict_command(name: str, content_type: str | None, chunk_rows: int | None) -> list[str]:
    command = ["predict", "--model", IMAGE_MODEL_DIR, "--input", f"{IO_DIR}/{name}"]
    command += ["--output", f"{IO_DIR}/output"]
    if content_type:
        command += ["--content-type", content_type]
    if chunk_rows:
        command += ["--chunk-rows", str(chunk_rows)]
    return command


def predict(
    environment: Environment,
    model: ModelSpec,
    *,
    input_path: Path | None,
    output_path: Path | None,
    content_type: str | None,
    chunk_rows: int | None = None,
) -> int:
    """``envbuild predict --kind docker``: the runner's ``predict`` in a throwaway container
    without network; predictions to ``output_path`` or to stdout, byte for byte as the runner
    writes them (through a file, not the engine's log, which can drop a last unfinished line)."""
    from envbuild.cache import atomic_write
    from envbuild.execute import (
        AUTO_CHUNK_ROWS,
        RUNNER_BAD_INPUT,
        RUNNER_MODEL_FAILED,
        _is_large_csv,
        default_input,
    )

    if input_path is None:
        input_path, content_type = default_input(model)
    if chunk_rows is None and _is_large_csv(input_path, content_type):
        chunk_rows = AUTO_CHUNK_ROWS  # as with a venv: big CSV files are scored in chunks
    with _input(input_path) as (source, name):
        ran = _run_runner(
            environment,
            _predict_command(name, content_type, chunk_rows),
            input_file=(source, name),
            output=True,
            stream_stderr=True,
        )
    if ran.code == 0 and ran.output is not None:
        if output_path is not None:
            atomic_write(output_path, ran.output)
        else:
            _write_fd(1, ran.output)
        return 0
    if ran.code == RUNNER_BAD_INPUT:
        return int(InputDataError.exit_code)
    if ran.code == RUNNER_MODEL_FAILED:
        return int(ModelRunError.exit_code)
    raise ModelRunError(f"the runner stopped with exit code {ran.code} in the container")


def predict_to_file(
    environment: Environment,
    model: ModelSpec,
    input_path: Path,
    content_type: str | None,
    output: Path,
) -> None:
    """``execute.predict_to_file`` for an image (reproduce): the runner's one-line error becomes
    an InputDataError or ModelRunError."""
    from envbuild.cache import atomic_write
    from envbuild.execute import RUNNER_BAD_INPUT

    with _input(input_path) as (source, name):
        ran = _run_runner(
            environment,
            _predict_command(name, content_type, None),
            input_file=(source, name),
            output=True,
        )
    if ran.code == 0 and ran.output is not None:
        atomic_write(output, ran.output)
        return
    lines = [line for line in ran.stderr.decode(errors="replace").splitlines() if line.strip()]
    message = lines[-1].removeprefix("error: ") if lines else f"exit {ran.code}"
    error = InputDataError if ran.code == RUNNER_BAD_INPUT else ModelRunError
    raise error(message)


def info(environment: Environment) -> dict[str, object]:
    """``execute.environment_info`` for an image: the runner's ``info`` (Python, installed
    distributions) in a container of it."""
    import json

    ran = _run_runner(environment, ["info", "--model", IMAGE_MODEL_DIR])
    try:
        if ran.code != 0:
            raise ValueError
        return json.loads(ran.stdout)
    except ValueError:
        tail = ran.stderr.decode(errors="replace").strip().splitlines()[-3:]
        raise ModelRunError(
            f"the runner's info failed in the container (exit {ran.code}): " + " ".join(tail)
        ) from None


def environment_for_reproduce(
    spec: ModelSpec, lock: Lock, *, on_progress: Callable[[str], None] | None = None
) -> Environment:
    """``reproduce --kind docker``'s build step: the image of exactly ``lock`` (reused when it
    exists), as an Environment that ``info`` and ``predict_to_file`` run in."""
    from envbuild.image import ImageOptions, ensure_image

    return ensure_image(spec, ImageOptions(), lock=lock, on_progress=on_progress).environment()


def _passed_env() -> dict[str, str]:
    """The runner's own settings, passed on when set here (as a venv run would see them)."""
    names = ("ENVBUILD_DEBUG", "ENVBUILD_NO_MLFLOW", "ENVBUILD_MAX_BODY_BYTES", "ENVBUILD_WORKERS")
    return {name: os.environ[name] for name in names if os.environ.get(name)}


class _Stop(Exception):
    """SIGTERM arrived while the server container runs."""


def serve(environment: Environment, host: str, port: int, workers: int | None) -> int:
    """``envbuild serve --kind docker``: the image's server in the foreground; returns its exit
    code. Host networking: ``--host``/``--port`` are where it listens, as with a venv."""
    command = ["serve", "--model", IMAGE_MODEL_DIR, "--host", host, "--port", str(port)]
    if workers:
        command += ["--workers", str(workers)]
    ping = (
        f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{port}/ping', timeout=4)"
    )
    engine = client()
    container = engine.containers.create(
        _image(environment),
        command,
        network_mode="host",
        labels={ROLE_LABEL: "serve"},
        environment=_passed_env(),
        name=f"envbuild-serve-{uuid.uuid4().hex[:12]}",
        healthcheck={
            "test": ["CMD", "/opt/env/bin/python", "-c", ping],
            "interval": 10 * 10**9,
            "timeout": 5 * 10**9,
            "start_period": 60 * 10**9,
            "retries": 3,
        }
        if port
        else {"test": ["NONE"]},
    )

    def on_term(_signum: int, _frame: object) -> None:
        raise _Stop

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        stream = engine.api.attach(container.id, stdout=True, stderr=True, stream=True, demux=True)
        container.start()
        try:
            for out, err in stream:
                if out:
                    _write_fd(1, out)
                if err:
                    _write_fd(2, err)
        except (_Stop, KeyboardInterrupt):
            container.stop(timeout=20)
        return int(container.wait().get("StatusCode", 1))
    finally:
        signal.signal(signal.SIGTERM, previous)
        container.remove(force=True)

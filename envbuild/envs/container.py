"""The ``docker`` kind's environments: envbuild's runner in containers of the model's image.

* ``predict`` copies the input into a fresh container and the predictions out of it through the
  API (no bind mount: it works with a remote engine and whatever the input file's owner and mode),
  with no network at all; the predictions are relayed byte for byte (through a file in the
  container, not the engine's log, which can drop a last unfinished line);
* ``serve`` runs the image's server with host networking (the port the runner is told is the
  port it listens on, with or without a bridge network), relays its output, and stops the
  container on SIGTERM/Ctrl-C.

The container's output is the user's output, as a child process's would be: it is relayed
through the :class:`~envbuild.envs.base.Streams` the caller gives (the CLI's), or to this
process's standard streams.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import sys
import tarfile
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, BinaryIO

from envbuild.envs.base import Environment, Streams
from envbuild.envs.process import predict_args, runner_error, runner_exit
from envbuild.errors import ModelRunError, UsageError
from envbuild.files import atomic_write, temporary_directory, write_output
from envbuild.image import layout
from envbuild.image.engine import client
from envbuild.runtime_files import mlmodel_variables

if TYPE_CHECKING:
    from envbuild.inputs import ModelInput
    from envbuild.model import ModelSpec


class StdStreams:
    """This process's standard output and error, written as a child sharing them would."""

    @staticmethod
    def _write(handle: BinaryIO, data: bytes) -> None:
        handle.write(data)
        handle.flush()

    def stdout(self, data: bytes) -> None:
        sys.stdout.flush()
        self._write(sys.stdout.buffer, data)

    def stderr(self, data: bytes) -> None:
        sys.stderr.flush()
        self._write(sys.stderr.buffer, data)


def _owned(info: tarfile.TarInfo, mode: int) -> tarfile.TarInfo:
    info.mode, info.uid, info.gid, info.mtime = mode, layout.UID, layout.UID, time.time()
    return info


def _input_archive(source: Path | None, name: str) -> IO[bytes]:
    """A tar of ``envbuild-io/`` (plus ``envbuild-io/NAME`` with the bytes of ``source``) owned
    by the image's user, who writes the output there. Spooled to disk past 8 MiB and streamed
    to the engine, so a large input is never held in memory."""
    spool = tempfile.SpooledTemporaryFile(max_size=8 << 20)  # noqa: SIM115 - the caller closes it
    folder_name = Path(layout.IO_DIR).name
    with tarfile.open(fileobj=spool, mode="w") as tar:
        folder = _owned(tarfile.TarInfo(folder_name), 0o755)
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)
        if source is not None:
            member = _owned(tarfile.TarInfo(f"{folder_name}/{name}"), 0o644)
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
def _input_file(data: ModelInput) -> Iterator[tuple[Path, str]]:
    """The input as a file and its name in the container (the suffix tells the runner CSV);
    standard input is saved to a private temporary file first (a tar member needs its size)."""
    if not data.is_stdin:
        yield data.path, "input" + "".join(data.path.suffixes[-1:]).lower()
        return
    with temporary_directory("stdin") as folder:
        saved = folder / "input"
        with saved.open("wb") as handle:
            shutil.copyfileobj(sys.stdin.buffer, handle)
        yield saved, "input"


@dataclass(frozen=True)
class _Ran:
    code: int
    stdout: bytes
    stderr: bytes  # empty when it was streamed
    output: bytes | None  # IO_DIR/output, when the run succeeded and asked for one


def _passed_env() -> dict[str, str]:
    """The runner's own settings, passed on when set here (as a venv run would see them)."""
    names = ("ENVBUILD_DEBUG", "ENVBUILD_NO_MLFLOW", "ENVBUILD_MAX_BODY_BYTES", "ENVBUILD_WORKERS")
    return {name: os.environ[name] for name in names if os.environ.get(name)}


@dataclass(frozen=True)
class ContainerEnvironment(Environment):
    """An image of the model: the runner runs in throwaway containers of ``image``."""

    image: str = ""
    model_dir: str = layout.MODEL_DIR  # where the image holds the model (another on a shared image)

    def _run(
        self,
        model: ModelSpec | None,
        command: list[str],
        *,
        input_file: tuple[Path, str] | None = None,
        output: bool = False,
        streams: Streams | None = None,
    ) -> _Ran:
        """One runner command in a throwaway container with no network: the input is copied in
        before it starts, ``IO_DIR/output`` copied out after it ends, the container removed.
        With ``streams``, the container's output is relayed to its stderr as it comes (the
        runner's stdout is the model's noise there: predictions go to the output file)."""
        engine = client()
        container = engine.containers.create(
            self.image,
            command,
            network_mode="none",
            labels={layout.ROLE_LABEL: command[0]},
            environment=_passed_env() | (mlmodel_variables(model) if model else {}),
        )
        try:
            source, name = input_file or (None, "")
            with _input_archive(source, name) as archive:
                container.put_archive(str(Path(layout.IO_DIR).parent), archive)
            container.start()
            if streams is not None:
                for chunk in container.logs(stream=True, follow=True, stdout=True, stderr=True):
                    streams.stderr(chunk)
            code = int(container.wait().get("StatusCode", 1))
            stdout = container.logs(stdout=True, stderr=False)
            stderr = b"" if streams is not None else container.logs(stdout=False, stderr=True)
            result = None
            if output and code == 0:
                stream, _ = container.get_archive(f"{layout.IO_DIR}/output")
                result = _read_archive_file(stream)
        except KeyboardInterrupt:
            container.kill()
            raise
        finally:
            container.remove(force=True)
        return _Ran(code, stdout, stderr, result)

    def _predict_command(self, data: ModelInput, name: str, chunk_rows: int | None) -> list[str]:
        args = predict_args(
            self.model_dir, data, f"{layout.IO_DIR}/output", chunk_rows, f"{layout.IO_DIR}/{name}"
        )
        return ["predict", *args]

    def predict(
        self,
        model: ModelSpec,
        data: ModelInput,
        *,
        output_path: Path | None,
        chunk_rows: int | None = None,
        streams: Streams | None = None,
    ) -> int:
        streams = streams or StdStreams()
        with _input_file(data) as (source, name):
            ran = self._run(
                model,
                self._predict_command(data, name, data.chunk_rows(chunk_rows)),
                input_file=(source, name),
                output=True,
                streams=streams,
            )
        if ran.code == 0 and ran.output is not None:
            if output_path is not None:
                write_output(output_path, ran.output)
            else:
                streams.stdout(ran.output)
            return 0
        return runner_exit(ran.code)

    def predict_to_file(self, model: ModelSpec, data: ModelInput, output: Path) -> None:
        with _input_file(data) as (source, name):
            ran = self._run(
                model,
                self._predict_command(data, name, None),
                input_file=(source, name),
                output=True,
            )
        if ran.code == 0 and ran.output is not None:
            atomic_write(output, ran.output)
            return
        raise runner_error(ran.code, ran.stderr.decode(errors="replace"))

    def info(self, model: ModelSpec | None = None) -> dict[str, Any]:
        ran = self._run(model, ["info", "--model", self.model_dir])
        try:
            if ran.code != 0:
                raise ValueError
            data = json.loads(ran.stdout)
        except ValueError:
            tail = ran.stderr.decode(errors="replace").strip().splitlines()[-3:]
            raise ModelRunError(
                f"the runner's info failed in the container (exit {ran.code}): " + " ".join(tail)
            ) from None
        return data if isinstance(data, dict) else {}

    def serve(
        self,
        model: ModelSpec,
        host: str,
        port: int,
        workers: int | None,
        streams: Streams | None = None,
    ) -> int:
        """The image's server in the foreground; returns its exit code. Host networking:
        ``host``/``port`` are where it listens, as with a venv."""
        streams = streams or StdStreams()
        command = ["serve", "--model", self.model_dir, "--host", host, "--port", str(port)]
        if workers:
            command += ["--workers", str(workers)]
        engine = client()
        container = engine.containers.create(
            self.image,
            command,
            network_mode="host",
            labels={layout.ROLE_LABEL: "serve"},
            environment=_passed_env() | mlmodel_variables(model),
            name=f"envbuild-serve-{uuid.uuid4().hex[:12]}",
            healthcheck={
                "test": ["CMD", *layout.ping_command(port, str(self.python))],
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
            stream = engine.api.attach(
                container.id, stdout=True, stderr=True, stream=True, demux=True
            )
            container.start()
            try:
                for out, err in stream:
                    if out:
                        streams.stdout(out)
                    if err:
                        streams.stderr(err)
            except (_Stop, KeyboardInterrupt):
                container.stop(timeout=20)
            return int(container.wait().get("StatusCode", 1))
        finally:
            signal.signal(signal.SIGTERM, previous)
            container.remove(force=True)

    def exec(self, command: list[str]) -> int:
        raise UsageError("`envbuild run` does not run commands in images; use docker run")


class _Stop(Exception):
    """SIGTERM arrived while the server container runs."""

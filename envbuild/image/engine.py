"""The Docker engine: a client, and image builds with the classic builder, streamed and logged.

Through the ``docker`` SDK (a library: no ``docker`` CLI needed, and ``DOCKER_HOST`` /
``docker context`` settings of ``docker.from_env()`` apply). A build streams its chunks to
``on_line`` (progress on a terminal), keeps the whole output in a log file of envbuild's cache,
and counts the steps the layer cache answered; the engine reports a failed build as a final
``{"error": ...}`` chunk, not an exception, which becomes a BuildError (exit 4) with the failing
step's output tail and the log's path. Running containers of envbuild's images is
``envs/container.py``'s job.
"""

from __future__ import annotations

import io
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from envbuild import proc
from envbuild.errors import BuildError
from envbuild.redact import redact

if TYPE_CHECKING:
    import docker
    from docker.models.images import Image

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_STEP = re.compile(r"^Step (\d+)/(\d+) : (.*)$")
_EXIT = re.compile(r"returned a non-zero code: (\d+)")
# the builder's own chatter, left out of a failure's tail (the log keeps everything)
_NOISE = ("--->", "Removing intermediate container", "Using Python ")
TAIL_LINES = 12


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


def image_python(
    engine: docker.DockerClient, ref: str, *, ask: bool = False, executable: str = "python"
) -> str | None:
    """The Python version of a local image: what it declares (``PYTHON_VERSION``, as Docker
    Hub's python images do), else, with ``ask``, what its ``python`` says in a throwaway
    container without network. None when the image is absent or has no Python."""
    image = find_image(engine, ref)
    if image is None:
        return None
    for item in (image.attrs.get("Config") or {}).get("Env") or []:
        name, _, value = item.partition("=")
        if name == "PYTHON_VERSION" and value:
            return value
    if not ask:
        return None
    import docker as sdk

    try:
        out = engine.containers.run(
            image.id,
            [executable, "-c", "import platform; print(platform.python_version())"],
            entrypoint=[],
            network_mode="none",
            remove=True,
            stdout=True,
            stderr=False,
        )
    except (sdk.errors.ContainerError, sdk.errors.APIError):
        return None
    text = out.decode(errors="replace").strip() if isinstance(out, bytes) else str(out).strip()
    return text if re.fullmatch(r"\d+\.\d+(\.\d+)?\S*", text) else None


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
            self.handle.write(redact(_ANSI.sub("", text)))
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
        return "\n".join(redact(line) for line in lines[-TAIL_LINES:])


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
        reason = f"exit {code.group(1)}" if code else redact(_one_line(error))
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

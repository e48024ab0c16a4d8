"""A real Docker engine and local ``python:X.Y-slim`` stand-ins for the Docker tests.

No registry is reachable here: ``scripts/docker-engine`` installs and starts Debian's engine
(no iptables, no bridge: containers and builds get a network only with host networking), and
``scripts/base-images`` builds ``python:X.Y-slim`` from a cached debootstrap rootfs plus the
pyenv interpreter, labelled ``envbuild.test-standin=1``. Both are idempotent and fast when
everything is there (well under a second), so every test session can call them.

Use the session fixtures from a test module or conftest (assigned, not imported by name, so
ruff's F811 does not fire on the test functions' parameters)::

    from tests.integration import docker_images

    docker_engine = docker_images.docker_engine            # -> docker.DockerClient
    python_slim_images = docker_images.python_slim_images  # -> {"3.11": "envbuild-test/python:3.11-slim", ...}

or call the functions directly. Failure policy (``require_docker``): with ``CI`` set a missing
engine or image fails the test, elsewhere it skips with the reason, so CI cannot go green by
silently skipping the Docker tests.

Images built by these helpers use the classic builder with host networking; the proxy's CA
bundle must be copied in at build time for anything in the image to reach PyPI over HTTPS
(``add_host_ca``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    import docker

REPO = Path(__file__).resolve().parents[2]
DOCKER_ENGINE_SCRIPT = REPO / "scripts" / "docker-engine"
BASE_IMAGES_SCRIPT = REPO / "scripts" / "base-images"
STANDIN_LABEL = "envbuild.test-standin"
# the stand-ins' test-only names (scripts/base-images), given to envbuild as ENVBUILD_BASE_IMAGE:
# an engine that also holds Docker Hub's python:X.Y-slim, or another project's, is not confused
BASE_IMAGE = "envbuild-test/python:{python}-slim"
DEFAULT_PYTHON_MINORS = ("3.11", "3.10")
# Where add_host_ca puts the bundle inside images, and the variables that name it.
CA_IN_IMAGE = "/etc/ssl/certs/envbuild-host-ca.pem"
CA_ENV_VARS = ("SSL_CERT_FILE", "PIP_CERT", "REQUESTS_CA_BUNDLE")

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_state: dict[str, object] = {}


class DockerUnavailableError(RuntimeError):
    """The engine could not be installed or started, or a base image could not be built."""


class ImageBuildError(RuntimeError):
    """``docker build`` failed; ``log`` holds the whole build output (ANSI codes removed)."""

    def __init__(self, message: str, log: str):
        super().__init__(f"{message}\n--- build log tail ---\n{_tail(log, 40)}")
        self.log = log


def _tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _run_script(args: Sequence[str], timeout: float) -> str:
    """Run one of the scripts; return its stdout, raise DockerUnavailableError on failure."""
    try:
        proc = subprocess.run(
            [str(a) for a in args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DockerUnavailableError(f"{Path(args[0]).name}: {exc}") from exc
    if proc.returncode != 0:
        raise DockerUnavailableError(
            f"{Path(args[0]).name} {' '.join(map(str, args[1:]))} exited {proc.returncode}:\n"
            + _tail(proc.stderr or proc.stdout)
        )
    return proc.stdout


# --------------------------------------------------------------------------- engine, images
def ensure_engine(*, timeout: float = 900) -> None:
    """Install (first time) and start the Docker engine unless it answers; once per process.

    Runs ``scripts/docker-engine`` (apt-get install docker.io, debootstrap, patchelf, binutils when
    missing; dockerd without iptables/bridge). Raises DockerUnavailableError.
    """
    if _state.get("engine"):
        return
    _run_script([DOCKER_ENGINE_SCRIPT], timeout)
    _state["engine"] = True


def client() -> docker.DockerClient:
    """A ``docker.from_env()`` client for the running engine (started if needed)."""
    ensure_engine()
    cached = _state.get("client")
    if cached is None:
        import docker

        cached = docker.from_env(timeout=1800)
        _state["client"] = cached
    return cached  # type: ignore[return-value]


def base_image_tag(python_minor: str) -> str:
    """The tag of the stand-in for Docker Hub's slim image of ``python_minor`` ("3.11")."""
    if not re.fullmatch(r"\d+\.\d+", python_minor):
        raise ValueError(f"expected a Python minor version like '3.11', got {python_minor!r}")
    return BASE_IMAGE.format(python=python_minor)


def _image_exists(tag: str) -> bool:
    import docker

    try:
        client().images.get(tag)
    except docker.errors.ImageNotFound:
        return False
    return True


def ensure_base_images(
    python_minors: Iterable[str] = DEFAULT_PYTHON_MINORS, *, timeout: float = 1800
) -> dict[str, str]:
    """Make sure ``python:X.Y-slim`` exists for each X.Y; returns {X.Y: tag}.

    Missing ones are built by one ``scripts/base-images`` call (about 40 s for the Debian
    rootfs the first time on a machine, then 10-20 s per version); present ones cost one
    ``images.get``. Raises DockerUnavailableError (e.g. no pyenv build of that version).
    """
    tags = {minor: base_image_tag(minor) for minor in python_minors}
    missing = [minor for minor, tag in tags.items() if not _image_exists(tag)]
    if missing:
        _run_script([BASE_IMAGES_SCRIPT, *missing], timeout)
        still = [tags[m] for m in missing if not _image_exists(tags[m])]
        if still:
            raise DockerUnavailableError(f"scripts/base-images did not produce {still}")
    return tags


def ensure_base_image(python_minor: str) -> str:
    """Make sure the stand-in ``python:X.Y-slim`` exists; returns its tag."""
    return ensure_base_images([python_minor])[python_minor]


def ensure_debian_slim(*, timeout: float = 1800) -> str:
    """The stand-in for ``debian:bookworm-slim`` (no Python: the base of conda images), under
    the test-only tag ``envbuild-test/debian:bookworm-slim`` (``scripts/base-images
    --debian-slim``, tagged again on every call); returns the tag, for ``--base-image``."""
    out = _run_script([BASE_IMAGES_SCRIPT, "--debian-slim"], timeout).strip().splitlines()
    tag = out[-1] if out else ""
    if not tag or not _image_exists(tag):
        raise DockerUnavailableError(f"scripts/base-images --debian-slim did not produce {tag!r}")
    return tag


def require_docker(python_minors: Iterable[str] = ()) -> dict[str, str]:
    """Engine plus the given base images, for fixtures: skip (or, with CI set, fail) if not.

    Returns {X.Y: tag} for ``python_minors`` (empty when none asked).
    """
    try:
        ensure_engine()
        return ensure_base_images(python_minors)
    except (DockerUnavailableError, ValueError) as exc:
        if os.environ.get("CI"):
            pytest.fail(f"Docker test infrastructure unavailable on CI: {exc}", pytrace=False)
        pytest.skip(f"Docker unavailable: {exc}")


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[docker.DockerClient]:
    """Session fixture: a client for a running engine (skip/fail per require_docker). At the end,
    the untagged images the session's builds left (the classic builder keeps a multi-stage
    build's earlier stages as untagged images: hundreds of MB each) are removed: all of them
    descend from the stand-ins, whose label they carry."""
    require_docker()
    engine = client()
    yield engine
    engine.images.prune(filters={"dangling": True, "label": f"{STANDIN_LABEL}=1"})


@pytest.fixture(scope="session")
def debian_slim_image(docker_engine: docker.DockerClient) -> str:
    """Session fixture: the tag of the stand-in for debian:bookworm-slim (see ensure_debian_slim),
    with envbuild pointed at it (``ENVBUILD_CONDA_BASE_IMAGE``) for the rest of the session."""
    try:
        tag = ensure_debian_slim()
        os.environ["ENVBUILD_CONDA_BASE_IMAGE"] = tag
        return tag
    except DockerUnavailableError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"Docker test infrastructure unavailable on CI: {exc}", pytrace=False)
        pytest.skip(f"Docker unavailable: {exc}")


@pytest.fixture(scope="session")
def python_slim_images(docker_engine: docker.DockerClient) -> dict[str, str]:
    """Session fixture: {X.Y: tag} of the stand-ins for DEFAULT_PYTHON_MINORS (3.11, 3.10), and
    envbuild pointed at them (``ENVBUILD_BASE_IMAGE``) for the rest of the session, so that it
    never uses whatever image is tagged python:X.Y-slim on this engine."""
    images = require_docker(DEFAULT_PYTHON_MINORS)
    os.environ["ENVBUILD_BASE_IMAGE"] = BASE_IMAGE
    return images


# --------------------------------------------------------------------------- build and run
def host_ca_bundle() -> Path:
    """The CA bundle this machine trusts (it includes the TLS proxy's CA)."""
    for candidate in (
        os.environ.get("SSL_CERT_FILE"),
        os.environ.get("REQUESTS_CA_BUNDLE"),
        "/etc/ssl/certs/ca-certificates.crt",
    ):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    raise FileNotFoundError("no CA bundle found (SSL_CERT_FILE, /etc/ssl/certs)")


def ca_dockerfile_lines(filename: str = "host-ca.pem") -> str:
    """Dockerfile lines that install ``filename`` (from the context) as the CA bundle that
    Python's ssl, pip and requests use: COPY plus ENV SSL_CERT_FILE/PIP_CERT/REQUESTS_CA_BUNDLE."""
    env = " ".join(f"{name}={CA_IN_IMAGE}" for name in CA_ENV_VARS)
    return f"COPY {filename} {CA_IN_IMAGE}\nENV {env}\n"


def add_host_ca(context: Path, filename: str = "host-ca.pem") -> str:
    """Copy the host CA bundle into the build ``context``; return ca_dockerfile_lines()."""
    shutil.copyfile(host_ca_bundle(), Path(context) / filename)
    return ca_dockerfile_lines(filename)


def build_image(
    context: Path,
    tag: str,
    *,
    dockerfile: str | None = None,
    buildargs: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
    nocache: bool = False,
    timeout: float = 1800,
) -> tuple[str, str]:
    """Classic-builder build of ``context`` with host networking; returns (image id, log).

    ``dockerfile`` is the Dockerfile's text (written to the context) or None to use the
    context's own. A failed build arrives as a final ``{"error": ...}`` chunk, not an
    exception: it is raised here as ImageBuildError with the log.
    """
    context = Path(context)
    if dockerfile is not None:
        (context / "Dockerfile").write_text(dockerfile)
    chunks: list[str] = []
    image_id = ""
    for chunk in client().api.build(
        path=str(context),
        tag=tag,
        rm=True,
        forcerm=True,
        network_mode="host",
        buildargs=dict(buildargs or {}),
        labels=dict(labels or {}),
        nocache=nocache,
        timeout=int(timeout),
        decode=True,
    ):
        if "stream" in chunk:
            chunks.append(chunk["stream"])
        if "error" in chunk:
            chunks.append(chunk["error"])
            raise ImageBuildError(f"docker build of {tag} failed", _clean("".join(chunks)))
        if "aux" in chunk and "ID" in chunk["aux"]:
            image_id = chunk["aux"]["ID"]
    log = _clean("".join(chunks))
    if not image_id:
        image_id = client().images.get(tag).id
    return image_id, log


def _clean(text: str) -> str:
    return _ANSI.sub("", text)


def run_in_image(
    image: str,
    command: str | Sequence[str],
    *,
    environment: Mapping[str, str] | None = None,
    volumes: Mapping[str, Mapping[str, str]] | None = None,
    user: str | None = None,
) -> str:
    """``docker run --rm --network host IMAGE COMMAND``; returns stdout+stderr as text.

    A non-zero exit raises ``docker.errors.ContainerError`` (its ``stderr`` has the output).
    """
    extra: dict[str, object] = {}
    if user:
        extra["user"] = user
    out = client().containers.run(
        image,
        command if isinstance(command, str) else list(command),
        network_mode="host",
        remove=True,
        stdout=True,
        stderr=True,
        environment=dict(environment or {}),
        volumes=dict(volumes or {}),
        **extra,
    )
    return _clean(out.decode("utf-8", "replace"))


def remove_image(ref: str) -> None:
    """Remove an image the test built (never a stand-in base image); missing is fine."""
    import docker

    try:
        image = client().images.get(ref)
    except docker.errors.ImageNotFound:
        return
    if (image.labels or {}).get(STANDIN_LABEL) == "1" and ref.startswith("envbuild-test/python:"):
        raise ValueError(f"refusing to remove the stand-in base image {ref}")
    client().images.remove(ref, force=True, noprune=False)

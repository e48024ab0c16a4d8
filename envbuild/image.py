"""``envbuild image``: a model folder -> a Docker build context -> a small, layered, non-root image.

This module decides *what* to build and lays out the build context; ``envs/docker.py`` talks to
the engine and ``dockerfile.py`` renders the Dockerfile. The decisions:

* **Lock**: the model's own ``pylock.toml`` when it still matches the model's requirements and
  covers ``linux/<arch>`` for the model's Python minor; otherwise one envbuild resolves for exactly
  that target into its cache (the same cache entry ``envbuild env`` uses on a Linux host of that
  architecture, so a venv and an image of one model install the same packages). Never written into
  the model folder. A lock that names local files (``file://`` indexes, find-links folders) is
  refused: the build cannot reach them.
* **Base**: ``python:X.Y-slim`` for the lock's Python ``X.Y``; another ``--base-image`` must have the
  same ``X.Y`` (checked before the build when the image is present, and by the build itself).
* **uv in the build stage**: when envbuild runs on Linux with the image's architecture, the very
  uv binary envbuild uses is copied into the context (no network step, exactly the same version);
  otherwise (a Mac, a cross-architecture build) the base image's pip installs ``uv==<that
  version>`` from the index.
* **Build-only inputs**: the CA bundle (``--ca-cert``, else ``$SSL_CERT_FILE``, else
  ``$PIP_CERT``) goes into the context's ``build/`` folder and is used by the build stage only;
  index URLs (possibly with credentials) are build args declared in the build stage only. The
  final stage starts again from the base and copies only ``/opt/env``, the lock, the runner and the
  model, so neither the CA nor the index settings reach the image.
* **Context**: assembled in a folder of its own (no ``.dockerignore`` needed): files get mode
  0644/0755 whatever their mode on disk (the image's non-root user must read them), symlinks
  inside the model folder are copied as the files they point to, symlinks leaving it are refused.
"""

from __future__ import annotations

import hashlib
import os
import platform as _platform
import re
import shutil
import stat
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from envbuild.__about__ import __version__
from envbuild.envspec import EnvSpec, read_env
from envbuild.errors import BuildError, ModelError, UsageError
from envbuild.lock import PYLOCK_NAME, Lock, read_lock
from envbuild.model import ModelSpec, load_model
from envbuild.targets import Platform, parse_platform, python_minor

if TYPE_CHECKING:
    from envbuild.envs import Environment
    from envbuild.python import Interpreter

RUNTIME_DIR = Path(__file__).resolve().parent / "runtime"
IMAGE_ENV = "/opt/env"  # where the template installs the environment
IMAGE_PYTHON = "/opt/env/bin/python"
# the whole runtime folder: runner.py loads its sibling modules by path
RUNTIME_FILES = tuple(sorted(path.name for path in RUNTIME_DIR.glob("*.py")))
REUSE_REPOSITORY = "envbuild"
LABEL_PREFIX = "envbuild"
UV_SOURCES = ("auto", "binary", "pip")
# index settings the build stage may need (for credentials): uv's for the install, pip's for
# installing uv itself when it is not copied in
_UV_ARGS = ("UV_INDEX_URL", "UV_EXTRA_INDEX_URL", "UV_FIND_LINKS", "UV_INSECURE_HOST")
_PIP_ARGS = {
    "UV_INDEX_URL": "PIP_INDEX_URL",
    "UV_EXTRA_INDEX_URL": "PIP_EXTRA_INDEX_URL",
    "UV_INSECURE_HOST": "PIP_TRUSTED_HOST",
}


@dataclass(frozen=True)
class ImageOptions:
    """The knobs of ``envbuild image`` (and of ``--kind docker``, with their defaults)."""

    tag: str | None = None  # None: envbuild/<model>:<lock12>-<model12>
    base_image: str | None = None  # None: python:X.Y-slim
    platform: str | None = None  # None: linux on this machine's architecture
    python: str | None = None  # X.Y[.Z]: lock for this Python instead of the model's
    network: str = "host"
    ca_cert: Path | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    offline: bool = False
    uv_source: str = "auto"  # auto, binary (copy envbuild's uv), pip (install it in the build)
    nocache: bool = False  # build without the engine's layer cache (benchmarks)


@dataclass(frozen=True)
class ImagePlan:
    """Everything one image build depends on, decided before any file is written."""

    model: ModelSpec
    env: EnvSpec
    lock: Lock
    lock_source: str  # model, cache, given
    base_image: str
    platform: Platform
    platform_given: bool
    tag: str
    model_digest: str
    labels: dict[str, str]
    ca_cert: Path | None
    ca_source: str | None  # --ca-cert, SSL_CERT_FILE, PIP_CERT
    uv_binary: Path | None  # None: pip installs uv in the build stage
    uv_version: str
    build_args: dict[str, str] = field(repr=False)  # may hold credentials: never print values
    network: str = "host"
    warnings: tuple[str, ...] = ()

    @property
    def python_minor(self) -> str:
        return self.lock.python_minor

    def to_dict(self) -> dict[str, object]:
        return {
            "model": str(self.model.path),
            "tag": self.tag,
            "base_image": self.base_image,
            "platform": self.platform.name,
            "python": self.lock.python,
            "lock_digest": self.lock.digest,
            "lock_source": self.lock_source,
            "model_digest": self.model_digest,
            "ca_cert": str(self.ca_cert) if self.ca_cert else None,
            "ca_source": self.ca_source,
            "uv": "copied" if self.uv_binary else f"pip install uv=={self.uv_version}",
            "build_args": sorted(self.build_args),
            "labels": dict(self.labels),
            "warnings": list(self.warnings),
        }


# ---------------------------------------------------------------------------------------------
# The model's files and digest


def model_files(root: Path) -> Iterator[tuple[str, Path, bool]]:
    """``(relative posix path, real file, executable)`` for every file of the model, sorted.

    Symlinks are followed when they stay inside the folder (the image gets the file they point
    to) and refused when they leave it: a model is untrusted input and must not pull a file of
    this machine into an image.
    """
    root_real = Path(os.path.realpath(root))
    found: list[tuple[str, Path, bool]] = []
    seen_dirs: set[str] = set()

    def inside(target: Path) -> bool:
        return target == root_real or root_real in target.parents

    def walk(folder: Path, rel: str) -> None:
        real = os.path.realpath(folder)
        if real in seen_dirs:
            return  # a symlink loop inside the model
        seen_dirs.add(real)
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            path = Path(entry.path)
            name = f"{rel}{entry.name}"
            target = Path(os.path.realpath(path))
            if entry.is_symlink() and not inside(target):
                raise ModelError(
                    f"symlink {name} points outside the model folder ({target})",
                    path=root,
                    hint="copy the file into the model folder instead of linking to it",
                )
            if entry.is_symlink() and not target.exists():
                raise ModelError(f"symlink {name} is dangling", path=root)
            if target.is_dir():
                walk(path, f"{name}/")
            elif target.is_file():
                mode = target.stat().st_mode
                found.append((name, target, bool(mode & stat.S_IXUSR)))
            # sockets, fifos and devices are not model files: skipped

    walk(root, "")
    yield from found


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_digest(root: Path) -> str:
    """``sha256:`` over the model's files (paths, executable bits, contents): the model's identity
    in an image. Modification times and owners do not count."""
    digest = hashlib.sha256()
    for rel, real, executable in model_files(root):
        digest.update(f"{rel}\0{int(executable)}\0{_file_sha256(real)}\n".encode())
    return "sha256:" + digest.hexdigest()


# ---------------------------------------------------------------------------------------------
# Target, base image, lock


def image_platform(text: str | None) -> Platform:
    """``--platform`` (Linux only), default: Linux on this machine's architecture."""
    if text:
        target = parse_platform(text)
    else:
        try:
            target = parse_platform(f"linux/{_platform.machine().lower()}")
        except UsageError:
            target = parse_platform("linux/amd64")
    if not target.name.startswith("linux/"):
        raise UsageError(
            f"images are Linux images: --platform {text} is not a Linux platform",
            field="--platform",
            hint="use linux/amd64 or linux/arm64",
        )
    return target


def default_base_image(minor: str) -> str:
    return f"python:{minor}-slim"


def _target_python(env: EnvSpec, python: str | None) -> str:
    if python:
        from envbuild.targets import parse_python

        return parse_python(python)
    if env.python is None:
        raise ModelError(
            "the model does not say which Python it needs",
            path=env.model_path,
            hint="pass the Python to build for: --python X.Y",
        )
    return env.python.version


def model_lock_problem(lk: Lock, env: EnvSpec, target: Platform, minor: str) -> str | None:
    """Why the model's own lock cannot serve this image (None when it can)."""
    if lk.input_digest != env.digest():
        return "it no longer matches the model's requirements"
    if target.name not in lk.platforms:
        return f"it targets {', '.join(lk.platforms)}, not {target.name}"
    if lk.python_minor != minor:
        return f"it is for Python {lk.python}, the image is for Python {minor}"
    return None


def image_lock(
    spec: ModelSpec,
    env: EnvSpec,
    python: str,
    target: Platform,
    *,
    offline: bool = False,
    warnings: list[str] | None = None,
    on_progress: Callable[[str], None] | None = None,
) -> tuple[Lock, str]:
    """The lock to install in the image and where it came from (``model`` or ``cache``)."""
    own = spec.path / PYLOCK_NAME
    if own.is_file():
        lk = read_lock(own)
        problem = model_lock_problem(lk, env, target, python_minor(python))
        if problem is None:
            return lk, "model"
        if warnings is not None:
            warnings.append(
                f"{PYLOCK_NAME} is not used for the image: {problem}; envbuild resolved its own "
                f"lock for {target.name} (run `envbuild lock {spec.path} --platform "
                f"{target.name}` to update the model's)"
            )
    from envbuild.cache import publish
    from envbuild.lock import lock as resolve_lock
    from envbuild.lockstage import LOCK_LAYOUT

    # The same key as lockstage's: on a Linux host of this architecture, `envbuild env` and the
    # image share one cached lock (and so install the same packages).
    blob = "\n".join([LOCK_LAYOUT, env.digest(), python, target.name])
    key = hashlib.sha256(blob.encode()).hexdigest()[:32]

    def build(tmp: Path) -> dict[str, str]:
        resolve_lock(
            spec,
            env=env,
            python=python,
            platforms=[target.name],
            offline=offline,
            output=tmp / PYLOCK_NAME,
            on_progress=on_progress,
        )
        return {"python": python, "python_minor": python_minor(python)}

    entry, _ = publish("locks", key, build)
    return read_lock(entry / PYLOCK_NAME), "cache"


_LOCAL_ARTIFACT = re.compile(r'(?m)(?:\burl\s*=\s*"file:[^"]*"|\bpath\s*=\s*"[^"]*")')


def check_lock_is_portable(lk: Lock) -> None:
    """Refuse a lock that installs from this machine's disk: the build cannot reach it."""
    match = _LOCAL_ARTIFACT.search(lk.text)
    if match is None:
        return
    raise BuildError(
        f"the lock installs from a local file or folder ({match.group(0)}), which the image "
        "build cannot reach",
        path=lk.path,
        hint="lock from an index the build can reach: remove local --find-links / file:// "
        "indexes from pip's and uv's settings (e.g. PIP_CONFIG_FILE=/dev/null) and run again",
    )


# ---------------------------------------------------------------------------------------------
# Build-only inputs


def ca_bundle(
    given: Path | None, environ: Mapping[str, str] | None = None
) -> tuple[Path | None, str | None]:
    """The CA bundle the build stage trusts, and where it came from."""
    env = os.environ if environ is None else environ
    if given is not None:
        if not Path(given).is_file():
            raise UsageError("CA certificate file not found", path=given, field="--ca-cert")
        return Path(given), "--ca-cert"
    for name in ("SSL_CERT_FILE", "PIP_CERT"):
        value = env.get(name)
        if value and Path(value).is_file():
            return Path(value), name
    return None, None


def index_build_args(uv_via_pip: bool, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Index settings for the build stage, as build args (never written to a file).

    The lock names every file's URL, so an index matters to the install only for its
    credentials; settings local to this machine (``file://``, folders) are left out, the build
    cannot reach them anyway.
    """
    from envbuild.indexes import IndexConfig, configure

    config = configure(environ=environ)
    portable = IndexConfig(
        index_url=config.index_url
        if config.index_url is not None and not config.index_url.is_local
        else None,
        extra_index_urls=tuple(s for s in config.extra_index_urls if not s.is_local),
        find_links=tuple(s for s in config.find_links if not s.is_local),
        trusted_hosts=config.trusted_hosts,
    )
    values = portable.child_env({})
    args = {name: values[name] for name in _UV_ARGS if values.get(name)}
    if uv_via_pip:
        args.update({_PIP_ARGS[k]: v for k, v in args.items() if k in _PIP_ARGS})
    return args


def uv_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("uv")
    except metadata.PackageNotFoundError:
        from envbuild import proc

        done = proc.run([proc.uv_bin(), "--version"], what="asking uv its version", log=False)
        return done.stdout.split()[1]


def uv_for_image(target: Platform, source: str) -> Path | None:
    """The uv binary to copy into the build stage, or None to install uv there with pip."""
    if source not in UV_SOURCES:
        raise UsageError(f"unknown uv source {source!r} (expected {', '.join(UV_SOURCES)})")
    here = image_platform(None) if sys.platform.startswith("linux") else None
    usable = here is not None and here.name == target.name
    if source == "pip" or (source == "auto" and not usable):
        return None
    if not usable:
        raise UsageError(f"envbuild's uv binary cannot run on {target.name}")
    from envbuild import proc

    return Path(proc.uv_bin())


# ---------------------------------------------------------------------------------------------
# Names and labels


def repository_name(spec: ModelSpec) -> str:
    """A Docker repository path component from the model folder's name."""
    name = re.sub(r"[^a-z0-9]+", "-", spec.path.name.lower()).strip("-")
    return name or "model"


def reuse_tag(spec: ModelSpec, lock_digest: str, digest: str) -> str:
    """``envbuild/<model>:<lock12>-<model12>``: the tag ``--kind docker`` builds and reuses."""
    lock12 = lock_digest.split(":", 1)[-1][:12]
    model12 = digest.split(":", 1)[-1][:12]
    return f"{REUSE_REPOSITORY}/{repository_name(spec)}:{lock12}-{model12}"


def image_labels(
    spec: ModelSpec,
    lk: Lock,
    digest: str,
    base_image: str,
    tag: str,
    extra: Mapping[str, str],
) -> dict[str, str]:
    """OCI annotations plus envbuild's own (model, lock, version); ``--label`` wins on conflict.

    No ``org.opencontainers.image.created``: a build time in the Dockerfile would make every
    rebuild differ; the engine records the image's creation time anyway.
    """
    version = tag.rsplit(":", 1)[1] if ":" in tag.rsplit("/", 1)[-1] else "latest"
    labels = {
        "org.opencontainers.image.title": repository_name(spec),
        "org.opencontainers.image.description": f"MLflow model {spec.path.name} served by "
        f"envbuild (flavors: {', '.join(spec.flavor_names)})",
        "org.opencontainers.image.version": version,
        "org.opencontainers.image.base.name": base_image,
        f"{LABEL_PREFIX}.version": __version__,
        f"{LABEL_PREFIX}.lock.digest": lk.digest,
        f"{LABEL_PREFIX}.python": lk.python,
        f"{LABEL_PREFIX}.model.digest": digest,
    }
    if spec.model_uuid:
        labels[f"{LABEL_PREFIX}.model.uuid"] = spec.model_uuid
    if spec.run_id:
        labels[f"{LABEL_PREFIX}.model.run-id"] = spec.run_id
    if spec.mlflow_version:
        labels[f"{LABEL_PREFIX}.model.mlflow-version"] = spec.mlflow_version
    labels.update(extra)
    return labels


def parse_labels(values: Sequence[str]) -> dict[str, str]:
    """``--label K=V`` (repeatable) -> dict."""
    out: dict[str, str] = {}
    for value in values:
        key, sep, text = value.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"expected --label KEY=VALUE, got {value!r}", field="--label")
        out[key.strip()] = text
    return out


# ---------------------------------------------------------------------------------------------
# Planning and the context


def plan_image(
    model: str | os.PathLike[str] | ModelSpec,
    options: ImageOptions | None = None,
    *,
    env: EnvSpec | None = None,
    lock: Lock | None = None,
    on_progress: Callable[[str], None] | None = None,
) -> ImagePlan:
    """Decide everything about the image (lock, base, tag, labels, build inputs); no Docker.

    ``lock`` installs exactly that lock (``reproduce``) instead of choosing one; it must cover
    the target platform.
    """
    options = options or ImageOptions()
    spec = model if isinstance(model, ModelSpec) else load_model(model)
    env = env if env is not None else read_env(spec)
    warnings: list[str] = [*spec.warnings, *env.warnings]
    target = image_platform(options.platform)
    if lock is not None:
        if target.name not in lock.platforms:
            raise UsageError(
                f"the lock targets {', '.join(lock.platforms)}, not {target.name}",
                path=lock.path,
                hint=f"lock for it: envbuild lock MODEL --platform +{target.name}",
            )
        lk, source = lock, "given"
    else:
        python = _target_python(env, options.python)
        lk, source = image_lock(
            spec,
            env,
            python,
            target,
            offline=options.offline,
            warnings=warnings,
            on_progress=on_progress,
        )
    warnings.extend(w for w in lk.warnings if w not in warnings)
    check_lock_is_portable(lk)
    base = options.base_image or default_base_image(lk.python_minor)
    if on_progress:
        on_progress("hashing the model's files")
    digest = model_digest(spec.path)
    tag = options.tag or reuse_tag(spec, lk.digest, digest)
    uv_binary = uv_for_image(target, options.uv_source)
    ca_cert, ca_source = ca_bundle(options.ca_cert)
    return ImagePlan(
        model=spec,
        env=env,
        lock=lk,
        lock_source=source,
        base_image=base,
        platform=target,
        platform_given=bool(options.platform),
        tag=tag,
        model_digest=digest,
        labels=image_labels(spec, lk, digest, base, tag, options.labels),
        ca_cert=ca_cert,
        ca_source=ca_source,
        uv_binary=uv_binary,
        uv_version=uv_version(),
        build_args=index_build_args(uv_via_pip=uv_binary is None),
        network=options.network,
        warnings=tuple(dict.fromkeys(warnings)),
    )


def dockerfile_text(plan: ImagePlan) -> str:
    from envbuild.dockerfile import DockerfileInputs, render_dockerfile

    return render_dockerfile(
        DockerfileInputs(
            base_image=plan.base_image,
            python_minor=plan.python_minor,
            model_name=plan.model.path.name,
            envbuild_version=__version__,
            uv_version=plan.uv_version,
            uv_binary=plan.uv_binary is not None,
            ca_cert=plan.ca_cert is not None,
            network=plan.network,
            build_arg_names=tuple(sorted(plan.build_args)),
            labels=plan.labels,
        )
    )


def _copy(source: Path, target: Path, executable: bool) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    os.chmod(target, 0o755 if executable else 0o644)


def write_context(plan: ImagePlan, folder: Path) -> Path:
    """Write the complete build context into ``folder`` (absent or empty); returns it."""
    folder = Path(folder)
    model_root = Path(os.path.realpath(plan.model.path))
    if model_root in (Path(os.path.realpath(folder)), *Path(os.path.realpath(folder)).parents):
        raise UsageError(
            "the context folder is inside the model folder",
            path=folder,
            field="--context",
            hint="write the context somewhere else: it holds a copy of the model",
        )
    if folder.exists() and any(folder.iterdir()):
        raise UsageError(
            "the context folder is not empty",
            path=folder,
            field="--context",
            hint="give a new or empty folder",
        )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "Dockerfile").write_text(dockerfile_text(plan), encoding="utf-8")
    (folder / PYLOCK_NAME).write_text(plan.lock.text, encoding="utf-8")
    for name in RUNTIME_FILES:
        _copy(RUNTIME_DIR / name, folder / "runtime" / name, False)
    (folder / "model").mkdir()
    for rel, real, executable in model_files(plan.model.path):
        _copy(real, folder / "model" / rel, executable)
    build = folder / "build"
    build.mkdir()
    if plan.uv_binary is not None:
        _copy(plan.uv_binary, build / "uv", True)
    if plan.ca_cert is not None:
        _copy(plan.ca_cert, build / "ca.pem", False)
    for path in (folder / "Dockerfile", folder / PYLOCK_NAME):
        os.chmod(path, 0o644)
    for path in [folder, *folder.rglob("*")]:  # whatever the umask: COPY keeps these modes
        if path.is_dir():
            os.chmod(path, 0o755)
    return folder


# ---------------------------------------------------------------------------------------------
# Building (through envs/docker.py)


@dataclass(frozen=True)
class ImageResult:
    """A built (or reused) image, or a written context."""

    plan: ImagePlan
    image_id: str | None
    size: int | None
    built: bool  # False: reused an existing image (--kind docker)
    seconds: float
    steps: int = 0
    cached_steps: int = 0
    uncached: tuple[str, ...] = ()
    log_path: Path | None = None
    context: Path | None = None

    def environment(self) -> Environment:
        """The image as an Environment (``--kind docker``): where its interpreter is inside."""
        from envbuild.envs import Environment

        return Environment(
            kind="docker",
            path=Path(IMAGE_ENV),
            python=Path(IMAGE_PYTHON),
            key=self.plan.tag,
            lock_digest=self.plan.lock.digest,
            interpreter_version=self.plan.lock.python,
            built=self.built,
            seconds=self.seconds,
            details={"image": self.plan.tag, "image_id": str(self.image_id)},
        )

    def interpreter(self) -> Interpreter:
        """The image's Python, described like a discovered interpreter."""
        from envbuild.python import Interpreter

        return Interpreter(
            path=IMAGE_PYTHON,
            version=self.plan.lock.python,
            implementation="cpython",
            cache_tag="",
            platform=self.plan.platform.name,
            source="image",
            reason=f"in the image {self.plan.tag} (base {self.plan.base_image})",
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "image": self.plan.tag if self.context is None else None,
            "id": self.image_id,
            "size": self.size,
            "built": self.built,
            "seconds": round(self.seconds, 3),
            "steps": self.steps,
            "cached_steps": self.cached_steps,
            "uncached": list(self.uncached),
            "log": str(self.log_path) if self.log_path else None,
            "context": str(self.context) if self.context else None,
            **self.plan.to_dict(),
        }


def _check_base(client: object, plan: ImagePlan) -> None:
    from envbuild.envs import docker as engine

    found = engine.image_python(client, plan.base_image)
    if found is not None and python_minor(found) != plan.python_minor:
        raise UsageError(
            f"the base image {plan.base_image} has Python {found}, but the model's lock is for "
            f"Python {plan.lock.python}",
            field="--base-image",
            hint=f"use a base image with Python {plan.python_minor}, e.g. "
            f"{default_base_image(plan.python_minor)}",
        )


def build_image(
    plan: ImagePlan,
    *,
    nocache: bool = False,
    on_progress: Callable[[str], None] | None = None,
) -> ImageResult:
    """Assemble the context in a temporary folder and build ``plan.tag`` with the engine."""
    from envbuild.envs import docker as engine

    started = time.monotonic()
    client = engine.client()
    _check_base(client, plan)
    with tempfile.TemporaryDirectory(prefix="envbuild-image-") as tmp:
        context = write_context(plan, Path(tmp) / "context")
        built = engine.build(
            client,
            context,
            plan.tag,
            network=plan.network,
            build_args=plan.build_args,
            platform=plan.platform.name if plan.platform_given else None,
            nocache=nocache,
            on_line=on_progress,
        )
    return ImageResult(
        plan=plan,
        image_id=built.image_id,
        size=built.size,
        built=True,
        seconds=time.monotonic() - started,
        steps=built.steps,
        cached_steps=built.cached_steps,
        uncached=built.uncached,
        log_path=built.log_path,
    )


def ensure_image(
    model: str | os.PathLike[str] | ModelSpec,
    options: ImageOptions | None = None,
    *,
    env: EnvSpec | None = None,
    lock: Lock | None = None,
    on_progress: Callable[[str], None] | None = None,
) -> ImageResult:
    """``--kind docker``: reuse ``envbuild/<model>:<lock12>-<model12>`` when it exists and was
    built by this envbuild version, else build it."""
    from envbuild.envs import docker as engine

    options = options or ImageOptions()
    started = time.monotonic()
    plan = plan_image(model, options, env=env, lock=lock, on_progress=on_progress)
    client = engine.client()
    found = engine.find_image(client, plan.tag)
    if found is not None and found.labels.get(f"{LABEL_PREFIX}.version") == __version__:
        return ImageResult(
            plan=plan,
            image_id=found.id,
            size=found.attrs.get("Size"),
            built=False,
            seconds=time.monotonic() - started,
        )
    if on_progress:
        on_progress(f"building the image {plan.tag}")
    return build_image(plan, nocache=options.nocache, on_progress=on_progress)

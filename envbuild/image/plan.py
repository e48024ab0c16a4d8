"""Planning an image: everything one build depends on, decided before any file is written.

``context.py`` lays out the build context, ``dockerfile.py`` renders the Dockerfile, ``engine.py``
talks to the engine, ``build.py`` puts them together. The decisions made here:

* **Lock**: the one lock policy (``lock.select.select_lock``) for the target ``linux/<arch>`` and
  the model's Python: the model's own ``pylock.toml`` when it serves it, else one resolved into
  envbuild's cache (the same cache entry ``envbuild env`` uses on a Linux host of that
  architecture, so a venv and an image of one model install the same packages). Never written into
  the model folder. Files the lock takes from this machine (``file://`` indexes, find-links
  folders) are copied into the build stage and installed from there (``local_sources.py``).
* **Base**: ``python:X.Y-slim`` for the lock's Python ``X.Y``, or for a CUDA lock whose framework
  loads the system's CUDA an ``nvidia/cuda`` runtime base into which the build stage installs
  Python (``gpu.py``, from ``cuda_bases.toml``); another ``--base-image`` must have the same
  ``X.Y`` (checked before the build when the image is present, and by the build itself).
  A kind whose lock has a base that brings its own Python (``--kind conda``) needs no Python in
  the base image: ``debian:bookworm-slim`` by default.
* **Kind** (``--kind``, else the automatic choice): which environment goes to ``/opt/env``: a
  virtualenv made in the build stage (venv), or a conda prefix (conda). A conda prefix is
  installed *on the host* by py-rattler for its final path ``/opt/env`` (rattler's
  ``alternative_target_prefix``: placeholders replaced with ``/opt/env``, nothing run in it) and
  copied into the build stage from the context (``env/``); the build stage then installs the pip
  half into it with uv. Why on the host: the conda packages come from channels the build may not
  reach (a ``file://`` channel, a mirror with credentials), the host's package cache already holds
  them, and installing needs py-rattler, which a base without Python cannot run; every package is
  checked against the lock's sha256 on the way. The cost: the prefix travels in the context (as
  large as the environment), and the host must be Linux of the image's architecture.
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

import os
import platform as _platform
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from envbuild.__about__ import __version__
from envbuild.envspec import EnvSpec, virtualenv_warnings
from envbuild.errors import BuildError, UsageError
from envbuild.image.context import model_digest
from envbuild.image.gpu import BaseChoice, choose_base
from envbuild.image.layout import LABEL_PREFIX, REUSE_REPOSITORY
from envbuild.image.local_sources import LocalFile, plan_local_files
from envbuild.indexes import IndexSetting
from envbuild.lock.pylock import Lock
from envbuild.lock.select import LockChoice, select_lock
from envbuild.model import ModelSpec
from envbuild.target import (
    BaseLock,
    Platform,
    Target,
    choose_accelerator,
    model_python,
    parse_platform,
)

if TYPE_CHECKING:
    from envbuild.sources import Provenance

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
    accelerator: str | None = None  # --accelerator as given (decided by image_target)
    torch_index_url: str | None = None  # a mirror of PyTorch's indexes
    kind: str | None = None  # venv or conda; None: the automatic choice


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
    gpu: BaseChoice | None = None  # the accelerator and the base it needs (gpu.py)
    python_install: bool = False  # the base has no Python: the build stage installs it
    local_files: tuple[LocalFile, ...] = ()  # copied into the build stage (local_sources.py)
    install_lock: str | None = None  # the build stage's lock when local files are in it
    prestaged: bool = False  # --offline: packages installed here, copied into the build stage
    kind: str = "venv"
    base: BaseLock | None = None  # what /opt/env holds below the pip half (a conda lock)
    offline: bool = False  # install the base from the package cache only

    @property
    def python_minor(self) -> str:
        return self.lock.python_minor

    def to_dict(self) -> dict[str, object]:
        return {
            "model": str(self.model.path),
            "kind": self.kind,
            "tag": self.tag,
            "base_image": self.base_image,
            "platform": self.platform.name,
            "python": self.lock.python,
            "lock_digest": self.lock.digest,
            "lock_source": self.lock_source,
            "base_lock_digest": self.base.digest if self.base else None,
            "model_digest": self.model_digest,
            "ca_cert": str(self.ca_cert) if self.ca_cert else None,
            "ca_source": self.ca_source,
            "uv": "copied" if self.uv_binary else f"pip install uv=={self.uv_version}",
            "build_args": sorted(self.build_args),
            "labels": dict(self.labels),
            "accelerator": self.gpu.to_dict() if self.gpu else None,
            "python_install": self.python_install,
            "local_files": [f.name for f in self.local_files],
            "offline": self.prestaged,
            "warnings": list(self.warnings),
        }


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


DEFAULT_BASE_IMAGE = "python:{python}-slim"
NO_PYTHON_BASE_IMAGE = "debian:bookworm-slim"  # for an environment that brings its own Python


def no_python_base_image() -> str:
    """The base of an image whose environment brings its own Python (a conda prefix):
    ``debian:bookworm-slim``, or the image ``$ENVBUILD_CONDA_BASE_IMAGE`` names (a mirror)."""
    return os.environ.get("ENVBUILD_CONDA_BASE_IMAGE") or NO_PYTHON_BASE_IMAGE


def default_base_image(minor: str) -> str:
    """Docker Hub's ``python:X.Y-slim``, or the mirror ``$ENVBUILD_BASE_IMAGE`` names (a template
    with ``{python}``: ``registry.example/python:{python}-slim``)."""
    template = os.environ.get("ENVBUILD_BASE_IMAGE") or DEFAULT_BASE_IMAGE
    if "{python}" not in template:
        raise UsageError(
            f"ENVBUILD_BASE_IMAGE={template!r} has no {{python}} in it",
            hint="write it as a template, e.g. registry.example/python:{python}-slim",
        )
    return template.replace("{python}", minor)


def check_lock_is_portable(lk: Lock) -> None:
    """Refuse a lock that installs from this machine's disk where its files are not copied
    (a shared environment's image; a model's image copies them, ``local_sources.py``)."""
    local = lk.local_packages
    if not local:
        return
    shown = ", ".join(f"{p.name} {p.version}" for p in local[:3])
    raise BuildError(
        f"the lock installs {shown} from a local file or folder, which the image build cannot "
        "reach",
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


def index_build_args(
    uv_via_pip: bool,
    environ: Mapping[str, str] | None = None,
    *,
    torch_index: IndexSetting | None = None,
    python_install: bool = False,
) -> dict[str, str]:
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
    if (
        torch_index is not None
        and not torch_index.is_local
        and torch_index.redacted != (torch_index.value)
    ):  # a mirror with credentials: the build's downloads from it need them
        portable = replace(portable, extra_index_urls=(*portable.extra_index_urls, torch_index))
    values = portable.child_env({})
    args = {name: values[name] for name in _UV_ARGS if values.get(name)}
    env = os.environ if environ is None else environ
    if python_install and env.get("UV_PYTHON_INSTALL_MIRROR"):
        args["UV_PYTHON_INSTALL_MIRROR"] = env["UV_PYTHON_INSTALL_MIRROR"]
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
    source: Provenance | None = None,
    base: BaseLock | None = None,
) -> dict[str, str]:
    """OCI annotations plus envbuild's own (model, lock, version, and for a model URI where it
    came from: ``envbuild.model.uri``, ``.registered-name``, ``.version``, ``.run-id``, the
    tracking server without credentials); ``--label`` wins on conflict.

    No ``org.opencontainers.image.created``: a build time in the Dockerfile would make every
    rebuild differ; the engine records the image's creation time anyway.
    """
    version = tag.rsplit(":", 1)[1] if ":" in tag.rsplit("/", 1)[-1] else "latest"
    remote = source is not None and not source.is_local
    name = (source.registered_name or source.uri) if source is not None and remote else None
    labels = {
        "org.opencontainers.image.title": repository_name(spec),
        "org.opencontainers.image.description": f"MLflow model {name or spec.path.name} served "
        f"by envbuild (flavors: {', '.join(spec.flavor_names)})",
        "org.opencontainers.image.version": version,
        "org.opencontainers.image.base.name": base_image,
        f"{LABEL_PREFIX}.version": __version__,
        f"{LABEL_PREFIX}.lock.digest": lk.digest,
        f"{LABEL_PREFIX}.python": lk.python,
        f"{LABEL_PREFIX}.model.digest": digest,
    }
    if base is not None:
        labels[f"{LABEL_PREFIX}.{base.name}.lock.digest"] = base.digest
    if spec.model_uuid:
        labels[f"{LABEL_PREFIX}.model.uuid"] = spec.model_uuid
    if spec.run_id:
        labels[f"{LABEL_PREFIX}.model.run-id"] = spec.run_id
    if spec.mlflow_version:
        labels[f"{LABEL_PREFIX}.model.mlflow-version"] = spec.mlflow_version
    if source is not None:
        labels.update(source.labels())
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


def image_target(env: EnvSpec, options: ImageOptions) -> Target:
    """The image's target: the model's Python (or ``--python``) on ``linux/<arch>``."""
    platform = image_platform(options.platform)
    accelerator, reason = choose_accelerator(env, options.accelerator)
    return Target(
        python=model_python(env, options.python),
        platforms=(platform,),
        python_from_model=not options.python,
        accelerator=accelerator,
        accelerator_reason=reason,
    )


def plan_image(
    model: ModelSpec,
    env: EnvSpec,
    options: ImageOptions | None = None,
    *,
    lock: LockChoice | None = None,
    source: Provenance | None = None,
    on_progress: Callable[[str], None] | None = None,
) -> ImagePlan:
    """Decide everything about the image (lock, base, tag, labels, build inputs); no Docker.

    ``lock`` installs exactly that lock (``reproduce``) instead of choosing one; it must cover
    the target platform. ``source`` (a model URI's provenance) is recorded in the labels only:
    the default tag stays keyed by the lock and the model's files.
    """
    from envbuild.envs.base import IMAGE
    from envbuild.envs.registry import DEFAULT_KIND, choose_kind, imaging_backend

    options = options or ImageOptions()
    warnings: list[str] = [*model.warnings, *env.warnings]
    target = image_platform(options.platform)
    base_lock: BaseLock | None = None
    if lock is not None:
        kind = options.kind or DEFAULT_KIND
        if target.name not in lock.lock.platforms:
            raise UsageError(
                f"the lock targets {', '.join(lock.lock.platforms)}, not {target.name}",
                path=lock.lock.path,
                hint=f"lock for it: envbuild lock MODEL --platform +{target.name}",
            )
        choice = lock
    else:
        kind = choose_kind(env, options.kind, IMAGE).name
        lock_target = imaging_backend(kind).image_target(env, options, on_progress=on_progress)
        base_lock = lock_target.base
        if base_lock is None:
            warnings.extend(virtualenv_warnings(env))
        else:
            warnings.extend(base_lock.warnings)
        from envbuild.indexes import configure

        indexes = configure(
            model_options=env.index_options, torch_index_url=options.torch_index_url
        )
        choice = select_lock(
            model,
            env,
            lock_target,
            offline=options.offline,
            indexes=indexes,
            on_progress=on_progress,
        )
    lk = choice.lock
    warnings.extend(
        w for w in [*choice.warnings, *lk.warnings] if w not in warnings and not _local_note(w)
    )
    local_files, install_lock = plan_local_files(lk, target)
    if options.offline:  # installed here (prestage.py), local files included: nothing to copy
        local_files, install_lock = (), None
    if local_files:
        warnings.append(
            f"{len(local_files)} file(s) the lock takes from this machine are copied into the "
            "build stage and installed from there (hashes checked); the image does not keep them"
        )
    gpu = choose_base(lk)
    warnings.extend(gpu.warnings)
    if base_lock is not None:
        base = options.base_image or no_python_base_image()
        python_install = False
    else:
        base = options.base_image or gpu.base_image or default_base_image(lk.python_minor)
        python_install = gpu.python_install and not options.base_image
    if on_progress:
        on_progress("hashing the model's files")
    digest = model_digest(model.path)
    tag = options.tag or reuse_tag(model, lk.digest, digest)
    uv_binary = uv_for_image(target, options.uv_source)
    if python_install and uv_binary is None:
        raise UsageError(
            f"the base {base} has no Python, and envbuild can copy its uv binary into the build "
            f"only on a Linux host of {target.name}",
            field="--base-image",
            hint="build on such a host, or pass a --base-image with CUDA and Python "
            f"{lk.python_minor}",
        )
    ca_cert, ca_source = ca_bundle(options.ca_cert)
    labels = {**gpu.labels(), **options.labels}
    return ImagePlan(
        model=model,
        env=env,
        lock=lk,
        lock_source=choice.source,
        base_image=base,
        platform=target,
        platform_given=bool(options.platform),
        tag=tag,
        model_digest=digest,
        labels=image_labels(model, lk, digest, base, tag, labels, source, base_lock),
        ca_cert=ca_cert,
        ca_source=ca_source,
        uv_binary=uv_binary,
        uv_version=uv_version(),
        build_args=index_build_args(
            uv_via_pip=uv_binary is None,
            torch_index=_torch_index(lk, options.torch_index_url),
            python_install=python_install,
        ),
        network=options.network,
        warnings=tuple(dict.fromkeys(warnings)),
        gpu=gpu,
        python_install=python_install,
        local_files=local_files,
        install_lock=install_lock,
        prestaged=options.offline,
        kind=kind,
        base=base_lock,
        offline=options.offline,
    )


def _local_note(warning: str) -> bool:
    """The lock commands' warning that local files do not install in an image: an image
    copies them now."""
    return warning.startswith("the lock refers to local files for ")


def _torch_index(lk: Lock, mirror: str | None) -> IndexSetting | None:
    """The PyTorch index (or mirror) the lock's torch family comes from, for its credentials."""
    from envbuild.accelerator import has_index
    from envbuild.indexes import configure

    if not (lk.accelerator and has_index(lk.accelerator) and lk.indexes.get("accelerator-index")):
        return None
    return configure(torch_index_url=mirror).torch_index(lk.accelerator)

"""The conda half of the lock policy: which conda lock a conda environment (or image) is built from,
and ``envbuild lock --kind conda``'s two files.

A conda environment has two lock halves, kept beside each other in the model folder:

* ``pixi.lock`` — the conda packages (rattler's lock file format, see
  :mod:`envbuild.conda.lockfile` for why), solved for the target platform from ``conda.yaml``'s
  channels and specs. The conda solve decides the Python;
* ``pylock.conda.toml`` — the pip half: the model's pip requirements (the same ones a virtualenv
  gets) resolved by uv for *that* Python on the same platform, *around* the Python packages the
  conda half installs (each pinned to its conda version and left out, so pip never replaces a
  conda package). Its ``[tool.envbuild]`` records the conda half: ``conda-lock`` (the digest of
  ``pixi.lock``) and ``conda-input-digest`` (of the conda specs and channels,
  :meth:`CondaSpec.digest`) with the specs themselves, so ``lock --check`` tells an edited
  ``conda.yaml`` from a replaced ``pixi.lock``. The two digests together are the environment's
  identity (its cache key).

Why ``pylock.conda.toml`` rather than ``pylock.toml``: the pip half of a conda environment is
for the channel's Python and leaves out what conda installs, so it is not the lock a virtualenv
or a ``python:X.Y-slim`` image of the same model needs; with its own name (PEP 751 allows
``pylock.NAME.toml``) a model can carry both and each kind finds its own.

The policy (:func:`select_conda_lock`), as for pip locks (``select.py``): the model's own
``pixi.lock`` when its ``pylock.conda.toml`` says it was solved from the current ``conda.yaml``
and it is for the target platform (and the asked channels, when channels are asked); otherwise
one solved into envbuild's cache (``CACHE/conda-locks/KEY/pixi.lock``), keyed by everything that
changes a solve — the specs' digest, the platform and its virtual packages, the channels'
canonical URLs in priority order, the as-of date — and reused until one of them changes. The pip
half is then chosen by the generic :func:`~envbuild.lock.select.select_lock` for the
:class:`~envbuild.target.Target` whose ``base`` is the chosen :class:`CondaBase`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from envbuild.cache import publish
from envbuild.conda.channels import resolve_channels, select_channels
from envbuild.conda.lockfile import LOCK_NAME as CONDA_LOCK_NAME
from envbuild.conda.lockfile import CondaLock, read_lock, write_lock
from envbuild.conda.platforms import (
    DEFAULT_PLATFORM,
    FROM_TARGET,
    CondaPlatform,
    conda_platform,
    subdir_of,
)
from envbuild.conda.spec import CondaSpec, conda_spec
from envbuild.envspec import EnvSpec
from envbuild.errors import EnvbuildError, LockMismatchError
from envbuild.target import PLATFORMS, Target, host_platform, parse_python

if TYPE_CHECKING:
    from envbuild.indexes import IndexConfig
    from envbuild.lock.pylock import Lock
    from envbuild.model import ModelSpec

PIP_LOCK_NAME = "pylock.conda.toml"
CACHE_KIND = "conda-locks"
LAYOUT = "conda-lock-1"  # bump when what a cached conda lock holds changes
LOCK_ARGS = "--kind conda"
_TO_TARGET = {subdir: name for name, subdir in FROM_TARGET.items()}


def host_subdir() -> str:
    """This machine's conda subdir, from envbuild's own platform names (no py-rattler import)."""
    here = host_platform()
    return FROM_TARGET.get(here.name, DEFAULT_PLATFORM) if here else DEFAULT_PLATFORM


@dataclass(frozen=True)
class CondaRequest:
    """What the conda half is solved (or chosen) for."""

    platform: str | None = None  # conda subdir or envbuild name (linux/amd64); None: linux-64
    python: str | None = None  # X.Y[.Z] replacing conda.yaml's python (--python)
    channels: tuple[str, ...] = ()  # --channel, before the model's
    override_channels: bool = False  # --override-channels: only --channel
    cuda: str | None = None  # the target has this CUDA (__cuda)
    as_of: str | None = None  # RFC 3339 UTC: the solver's exclude_newer
    offline: bool = False

    @property
    def subdir(self) -> str:
        return subdir_of(self.platform) if self.platform else DEFAULT_PLATFORM

    @property
    def channels_asked(self) -> bool:
        return bool(self.channels) or self.override_channels

    def spec(self, env: EnvSpec) -> CondaSpec:
        return conda_spec(env, python=parse_python(self.python) if self.python else None)

    def target_platform(self) -> CondaPlatform:
        return conda_platform(self.subdir, cuda=self.cuda)

    def channel_names(self, spec: CondaSpec) -> tuple[str, ...]:
        return select_channels(spec.channels, extra=self.channels, override=self.override_channels)

    def exclude_newer(self) -> datetime | None:
        if self.as_of is None:
            return None
        return datetime.fromisoformat(self.as_of.replace("Z", "+00:00"))


@dataclass(frozen=True)
class CondaBase:
    """A chosen conda lock, as the base of its environment's pip half (``target.BaseLock``)."""

    lock: CondaLock
    spec: CondaSpec = field(compare=False)
    source: str = "model"  # model, cache, given
    reason: str | None = field(default=None, compare=False)  # why the model's was not used
    warnings: tuple[str, ...] = field(default=(), compare=False)

    name = "conda"
    pip_lock_name = PIP_LOCK_NAME
    lock_args = LOCK_ARGS

    @property
    def digest(self) -> str:
        return self.lock.digest

    @property
    def python_version(self) -> str:
        version = self.lock.python_version
        if version is None:
            raise LockMismatchError(
                "the conda lock has no python package",
                path=self.lock.path,
                hint="add python to conda.yaml and lock again: envbuild lock MODEL --kind conda",
            )
        return version

    def constraints(self) -> tuple[str, ...]:
        return provided_distributions(self.lock)

    def record(self) -> dict[str, Any]:
        return {
            "conda-lock": self.lock.digest,
            "conda-input-digest": self.spec.digest(),
            "conda-platform": self.lock.platform,
            "conda-channels": list(self.lock.channels),
            "conda-dependencies": sorted(d.spec for d in self.spec.dependencies),
        }

    def problem(self, tool: Mapping[str, Any]) -> str | None:
        if tool.get("conda-input-digest") != self.spec.digest():
            return "it was made from another conda.yaml"
        if tool.get("conda-lock") != self.lock.digest:
            return "it was made with another conda lock"
        return None

    @property
    def lock_file(self) -> tuple[str, str]:
        return CONDA_LOCK_NAME, self.lock.text

    @property
    def path(self) -> Path | None:
        return self.lock.path

    def install_for(
        self,
        folder: Path,
        final: str,
        *,
        offline: bool = False,
        on_progress: Callable[[str], None] | None = None,
    ) -> None:
        from envbuild.conda.install import install

        install(
            self.lock,
            folder,
            offline=offline,
            channels=resolve_channels(self.lock.channels),
            target_prefix=Path(final),
            progress=(lambda step: on_progress(str(step))) if on_progress else None,
        )

    def target(self, *, python_from_model: bool = True) -> Target:
        """The pip half's target: the conda lock's Python on its platform, over this base."""
        return Target(
            python=self.python_version,
            platforms=(PLATFORMS[_TO_TARGET[self.lock.platform]],),
            python_from_model=python_from_model,
            base=self,
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "path": str(self.lock.path) if self.lock.path else None,
            "digest": self.lock.digest,
            "source": self.source,
            "reason": self.reason,
            "platform": self.lock.platform,
            "python": self.lock.python_version,
            "packages": len(self.lock.records),
        }


def provided_distributions(lock: CondaLock) -> tuple[str, ...]:
    """``name==version`` for each Python package of the conda lock (noarch python, or built
    for a python), python itself excepted: the pip half is resolved with these pinned and
    leaves them out. Conda names are taken as PyPI names (true for nearly every package); a
    conda version that is not a PEP 440 version is left out."""
    out = []
    for record in lock.records:
        if record.name == "python":
            continue
        needs_python = record.noarch == "python" or any(
            d.split()[0] == "python" for d in record.depends if d.split()
        )
        if not needs_python:
            continue
        try:
            Version(record.version)
        except InvalidVersion:
            continue
        out.append(f"{canonicalize_name(record.name)}=={record.version}")
    return tuple(sorted(out))


# ---------------------------------------------------------------------------------------------
# choosing the conda half


def cache_key(spec: CondaSpec, request: CondaRequest) -> str:
    """A cached conda lock's key: everything the solve depends on."""
    channels = [c.url for c in resolve_channels(request.channel_names(spec))]
    blob = json.dumps(
        {
            "layout": LAYOUT,
            "inputs": spec.digest(),
            "platform": request.target_platform().to_dict(),
            "channels": channels,
            "as_of": request.as_of,
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def solve_for(spec: CondaSpec, request: CondaRequest) -> CondaLock:
    """Solve ``spec`` for ``request`` (nothing written)."""
    from envbuild.conda.solve import solve

    channels = resolve_channels(request.channel_names(spec), path=_conda_file(spec))
    return solve(
        spec,
        request.target_platform(),
        channels=channels,
        exclude_newer=request.exclude_newer(),
        offline=request.offline,
    )


def model_conda_problem(
    model_path: Path, spec: CondaSpec, request: CondaRequest
) -> tuple[CondaLock | None, str | None]:
    """The model's own ``pixi.lock`` and why it cannot serve ``request`` (None: it can)."""
    from envbuild.lock.pylock import read_lock as read_pip_lock

    own = model_path / CONDA_LOCK_NAME
    if not own.is_file():
        return None, None
    try:
        lock = read_lock(own)
    except EnvbuildError as exc:
        return None, exc.message
    pip_half = model_path / PIP_LOCK_NAME
    if not pip_half.is_file():
        return lock, f"{PIP_LOCK_NAME}, which records what it was solved from, is missing"
    try:
        tool = read_pip_lock(pip_half).tool
    except EnvbuildError as exc:
        return lock, f"{PIP_LOCK_NAME} cannot be read: {exc.message}"
    if tool.get("conda-input-digest") != spec.digest():
        return lock, "it no longer matches conda.yaml"
    if tool.get("conda-lock") != lock.digest:
        return lock, f"it is not the conda lock {PIP_LOCK_NAME} was made with"
    if lock.platform != request.subdir:
        return lock, f"it is for {lock.platform}, not {request.subdir}"
    if request.channels_asked:
        wanted = tuple(c.url for c in resolve_channels(request.channel_names(spec)))
        if lock.channels != wanted:
            return lock, f"it was solved from {', '.join(lock.channels)}, not {', '.join(wanted)}"
    if request.cuda is not None and not any(
        v.startswith(f"__cuda={request.cuda}=") for v in lock.virtual_packages
    ):
        return lock, f"it was not solved for CUDA {request.cuda}"
    return lock, None


def select_conda_lock(
    env: EnvSpec,
    request: CondaRequest,
    *,
    on_progress: Callable[[str], None] | None = None,
) -> CondaBase:
    """The model's own conda lock when it serves ``request``, else one solved into (or reused
    from) envbuild's cache (see the module docstring)."""
    spec = request.spec(env)
    own, reason = model_conda_problem(env.model_path, spec, request)
    if own is not None and reason is None:
        return CondaBase(own, spec, "model", None, own.warnings)
    key = cache_key(spec, request)

    def build(tmp: Path) -> dict[str, str]:
        if on_progress is not None:
            on_progress(f"solving the conda packages for {request.subdir}")
        write_lock(solve_for(spec, request), tmp / CONDA_LOCK_NAME)
        return {"platform": request.subdir, "inputs": spec.digest()}

    entry, _ = publish(CACHE_KIND, key, build)
    cached = read_lock(entry / CONDA_LOCK_NAME)
    warnings = list(spec.warnings)
    if reason is not None:
        warnings.insert(
            0,
            f"{CONDA_LOCK_NAME} is not used: {reason}; envbuild solved its own conda lock for "
            f"{request.subdir} (run `envbuild lock {env.model_path} {LOCK_ARGS}` to update the "
            "model's)",
        )
    return CondaBase(cached, spec, "cache", reason, tuple(warnings))


def _conda_file(spec: CondaSpec) -> Path | None:
    for dep in spec.dependencies:
        if dep.origin.file.endswith((".yaml", ".yml")):
            return spec.origin_path(dep)
    return None


# ---------------------------------------------------------------------------------------------
# envbuild lock --kind conda: both halves into the model folder, and --check


@dataclass(frozen=True)
class CondaLocks:
    """Both halves of a conda environment's lock, as ``envbuild lock --kind conda`` wrote or
    checked them."""

    conda: CondaLock
    pip: Lock
    conda_changed: bool | None = None  # None: checked, not written
    warnings: tuple[str, ...] = ()

    @property
    def pip_lock(self) -> Lock:
        return self.pip

    def to_dict(self) -> dict[str, object]:
        return {
            "kind": "conda",
            "conda": {**self.conda.to_dict(), "changed": self.conda_changed},
            "pip": self.pip.to_dict(),
            "warnings": list(self.warnings),
        }

    def summary(self, *, checked: bool, shown: Callable[[Path], str] = str) -> list[str]:
        """What ``envbuild lock`` prints: each file, what happened to it, its digest."""
        conda, pip = self.conda, self.pip

        def verb(changed: bool | None) -> str:
            return "up to date" if checked else ("wrote" if changed else "unchanged")

        python = conda.python_version or "?"
        return [
            f"{shown(conda.path) if conda.path else '-'}: {verb(self.conda_changed)}: "
            f"{len(conda.records)} conda packages (python {python}) for {conda.platform} from "
            f"{', '.join(conda.channels)}",
            f"digest {conda.digest}",
            f"{shown(pip.path) if pip.path else '-'}: {verb(pip.changed)}: "
            f"{len(pip.packages)} pip packages for Python {pip.python} on "
            f"{', '.join(pip.platforms)}" + (f" as of {pip.as_of}" if pip.as_of else ""),
            f"digest {pip.digest}",
        ]


def lock_conda_model(
    model: ModelSpec,
    env: EnvSpec,
    request: CondaRequest,
    *,
    output: str | os.PathLike[str] | None = None,
    indexes: IndexConfig | None = None,
    on_progress: Callable[[str], None] | None = None,
) -> CondaLocks:
    """Solve the conda half, resolve the pip half over it, and write both into the model folder
    (``output`` names a folder instead), each only when its bytes change, the conda lock first:
    an interrupted run leaves a pip half that no longer names it, which ``--check`` reports."""
    from envbuild.lock.uv import resolve

    folder = Path(output) if output is not None else model.path
    spec = request.spec(env)
    if on_progress is not None:
        on_progress(f"solving {len(spec.dependencies)} conda spec(s) for {request.subdir}")
    conda = solve_for(spec, request)
    base = CondaBase(conda, spec, "given")
    pip = resolve(
        env,
        base.target(python_from_model=request.python is None),
        as_of=request.as_of,
        offline=request.offline,
        indexes=indexes,
        on_progress=on_progress,
    )
    conda_path = folder / CONDA_LOCK_NAME
    try:
        conda_changed = conda_path.read_bytes() != conda.text.encode("utf-8")
    except OSError:
        conda_changed = True
    written = write_lock(conda, conda_path) if conda_changed else _with_path(conda, conda_path)
    pip = pip.write_changed(folder / PIP_LOCK_NAME)
    warnings = tuple(dict.fromkeys([*spec.warnings, *conda.warnings, *pip.warnings]))
    return CondaLocks(written, pip, conda_changed, warnings)


def check_conda_model(
    model: ModelSpec,
    env: EnvSpec,
    request: CondaRequest,
    *,
    folder: str | os.PathLike[str] | None = None,
) -> CondaLocks:
    """``lock --check --kind conda``: both halves exist, the conda one was solved from the
    current ``conda.yaml`` (for the asked platform), the pip one from the current requirements
    and over that very conda lock. Resolves nothing; LockMismatchError (exit 3) naming what
    changed otherwise."""
    from envbuild.lock.check import _shown, verify
    from envbuild.lock.pylock import read_lock as read_pip_lock

    where = Path(folder) if folder is not None else model.path
    hint = f"run `envbuild lock {_shown(model.path)} {LOCK_ARGS}` to update them"
    conda_path, pip_path = where / CONDA_LOCK_NAME, where / PIP_LOCK_NAME
    for path in (conda_path, pip_path):
        if not path.is_file():
            raise LockMismatchError("no lock file", path=path, hint=hint)
    conda = read_lock(conda_path)
    pip = read_pip_lock(pip_path)
    tool = pip.tool
    spec = request.spec(env)
    if tool.get("conda-input-digest") != spec.digest():
        raise LockMismatchError(
            "out of date: " + describe_conda_change(tool, spec),
            path=conda_path,
            hint=hint,
        )
    if tool.get("conda-lock") != conda.digest:
        raise LockMismatchError(
            f"{CONDA_LOCK_NAME} is not the conda lock {PIP_LOCK_NAME} was made with "
            f"(it records {str(tool.get('conda-lock'))[:19]}…, the file is {conda.digest[:19]}…)",
            path=conda_path,
            hint=hint,
        )
    if request.platform is not None and conda.platform != request.subdir:
        raise LockMismatchError(
            f"locked for {conda.platform}, not {request.subdir}", path=conda_path, hint=hint
        )
    python = conda.python_version
    verify(env, pip, python=python, platforms=[_TO_TARGET.get(conda.platform, conda.platform)])
    return CondaLocks(conda, pip, None, ())


def describe_conda_change(tool: Mapping[str, Any], spec: CondaSpec) -> str:
    """What changed in ``conda.yaml`` since the pip half recorded its specs (one line)."""
    before = set(tool.get("conda-dependencies") or [])
    now = {d.spec: d for d in spec.dependencies}
    parts = [f"{now[text].origin} adds {text}" for text in sorted(set(now) - before)]
    parts += [f"{text} was removed" for text in sorted(before - set(now))]
    if not parts:
        parts.append("conda.yaml's channels changed")
    shown = "; ".join(parts[:6]) + (f"; and {len(parts) - 6} more" if len(parts) > 6 else "")
    return shown


def _with_path(lock: CondaLock, path: Path) -> CondaLock:
    from dataclasses import replace

    return replace(lock, path=path)

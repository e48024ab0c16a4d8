"""The ``conda`` kind: a conda prefix built with py-rattler (no conda, mamba or micromamba) from the
model's ``conda.yaml``, plus its pip half, in envbuild's cache.

* ``plan`` chooses the conda half (``lock.conda.select_conda_lock``: the model's ``pixi.lock`` when
  it still matches ``conda.yaml``, else one solved into the cache), because the conda solve decides
  the Python; the target it returns carries that lock as its ``base``, so the one lock policy
  (``select_lock``) then chooses the pip half for that Python on this machine's platform,
  resolved around the Python packages conda installs;
* ``build`` installs both halves in place in ``CACHE/conda/KEY`` (``conda.install.build_env``:
  the key is both halves' digests; crash- and concurrency-safe as venvs are; see that module for
  why a prefix is built at its final path);
* the :class:`CondaEnvironment` runs the runner with the prefix's Python and the variables conda's
  activation sets (``CONDA_PREFIX``, ``PATH``); the packages' activation and link scripts run only
  with ``package_scripts``.

The automatic choice (``prefers``): a model whose ``conda.yaml`` lists conda packages beyond the
toolchain (python, pip, setuptools, wheel), or whose Python has no interpreter of its ``X.Y`` on
this machine while it has a ``conda.yaml`` (the channel brings the interpreter), gets this kind
when no ``--kind`` is given.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from packaging.utils import canonicalize_name

from envbuild.envs.base import BaseCheck, BuildOptions, Plan, Progress
from envbuild.envs.process import ProcessEnvironment
from envbuild.envspec import CONDA_TOOLING, EnvSpec
from envbuild.errors import BuildError, InterpreterNotFound, UsageError
from envbuild.model import ModelSpec
from envbuild.python import Interpreter, looks_like_version

if TYPE_CHECKING:
    from envbuild.conda.lockfile import CondaLock
    from envbuild.image.plan import ImageOptions
    from envbuild.lock.conda import CondaBase, CondaLocks, CondaRequest
    from envbuild.lock.request import LockRequest
    from envbuild.lock.select import LockChoice
    from envbuild.target import Target


@dataclass(frozen=True)
class CondaEnvironment(ProcessEnvironment):
    """A conda prefix: the runner runs with its Python and conda's activation variables."""

    conda_lock: CondaLock | None = field(default=None, compare=False, repr=False)
    package_scripts: bool = False  # run the packages' etc/conda/activate.d scripts

    def run_env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        from envbuild.conda.activate import activation_env

        return activation_env(self.path, base, run_scripts=self.package_scripts)

    def verify_base(self) -> BaseCheck | None:
        """The prefix's conda packages (``conda-meta/*.json``) against the conda lock: name,
        version, build string and channel of each, and every file they installed (its sha256
        as installed, links by existence)."""
        if self.conda_lock is None:
            return None
        return verify_prefix(self.path, self.conda_lock)


def verify_prefix(prefix: Path, lock: CondaLock) -> BaseCheck:
    """See :meth:`CondaEnvironment.verify_base`."""
    installed: dict[str, dict[str, object]] = {}
    for meta in sorted((prefix / "conda-meta").glob("*.json")):
        try:
            data = json.loads(meta.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and isinstance(data.get("name"), str):
            installed[data["name"]] = data
    locked = {r.name: r for r in lock.records}
    missing = sorted(f"{r}" for name, r in locked.items() if name not in installed)
    extra = sorted(
        f"{name}={data.get('version')}={data.get('build')}"
        for name, data in installed.items()
        if name not in locked
    )
    different: list[str] = []
    owned: set[str] = set()
    for name in sorted(set(locked) & set(installed)):
        record, data = locked[name], installed[name]
        for key, want in (
            ("version", record.version),
            ("build", record.build),
            ("channel", record.channel),
        ):
            have = str(data.get(key) or "")
            if key == "channel":
                have = have if have.endswith("/") else have + "/"
            if have != want:
                different.append(f"{name}: locked {key} {want}, installed {have}")
        different.extend(f"{name}: {problem}" for problem in _file_problems(prefix, data))
        owned.update(_distributions(data))
    return BaseCheck(
        name="conda",
        checked=len(locked),
        missing=tuple(missing),
        extra=tuple(extra),
        different=tuple(different),
        distributions=frozenset(owned),
    )


def _file_problems(prefix: Path, data: Mapping[str, object]) -> list[str]:
    paths = data.get("paths_data")
    entries = paths.get("paths") if isinstance(paths, dict) else None
    out: list[str] = []
    for entry in entries or []:
        if not isinstance(entry, dict) or not isinstance(entry.get("_path"), str):
            continue
        rel = entry["_path"]
        target = prefix / rel
        if entry.get("path_type") == "softlink":
            if not os.path.lexists(target):
                out.append(f"{rel} is missing")
            continue
        want = entry.get("sha256_in_prefix") or entry.get("sha256")
        if not isinstance(want, str):
            continue
        try:
            have = _sha256(target)
        except OSError:
            out.append(f"{rel} is missing")
            continue
        if have != want:
            out.append(f"{rel} changed (sha256 {have[:12]}…, installed as {want[:12]}…)")
    return out


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _distributions(data: Mapping[str, object]) -> set[str]:
    """The Python distributions a conda package installed (its ``*.dist-info`` folders)."""
    out: set[str] = set()
    files = data.get("files")
    for item in files if isinstance(files, list) else []:
        if not isinstance(item, str):
            continue
        parts = item.split("/")
        for part in parts[:-1]:
            if part.endswith((".dist-info", ".egg-info")):
                stem = part.rsplit(".", 1)[0]
                out.add(canonicalize_name(stem.split("-", 1)[0]))
    return out


def _request(options: BuildOptions, *, platform: str | None = None) -> CondaRequest:
    from envbuild.lock.conda import CondaRequest, host_subdir

    if options.python and not looks_like_version(options.python):
        raise UsageError(
            "--kind conda takes --python X.Y[.Z] (the channel brings the interpreter), not an "
            "interpreter path",
            field="--python",
        )
    return CondaRequest(
        platform=platform or host_subdir(),
        python=options.python,
        offline=options.offline,
    )


def _interpreter(base: CondaBase, where: str) -> Interpreter:
    version = base.python_version
    return Interpreter(
        path="bin/python",  # in the prefix, once built
        version=version,
        implementation="cpython",
        cache_tag="",
        platform=base.lock.platform,
        source="conda",
        reason=f"the conda package python={version} ({where})",
    )


class CondaBackend:
    """A conda prefix from ``conda.yaml`` (py-rattler), plus its pip half, cached by both."""

    name: ClassVar[str] = "conda"

    def can_build(self, env: EnvSpec) -> str | None:
        if not (env.conda_dependencies or env.channels):
            return "the model has no conda.yaml (or it lists no conda packages)"
        from importlib.util import find_spec

        if find_spec("rattler") is None:  # looked up, not imported (0.1 s on every command)
            return "py-rattler is not installed (pip install py-rattler)"
        return None

    def prefers(self, env: EnvSpec, options: BuildOptions) -> str | None:
        if self.can_build(env) is not None:
            return None
        if options.python and not looks_like_version(options.python):
            return None  # an interpreter was given: that is a virtualenv
        conda_level = [
            d.spec for d in env.conda_dependencies if canonicalize_name(d.name) not in CONDA_TOOLING
        ]
        if conda_level:
            shown = ", ".join(conda_level[:4]) + (" ..." if len(conda_level) > 4 else "")
            return f"conda.yaml needs conda packages ({shown})"
        version = options.python or (env.python.version if env.python else None)
        if version is None:
            return None
        from envbuild.python import find_interpreter

        try:
            find_interpreter(version)
        except InterpreterNotFound:
            return (
                f"no Python {version} interpreter is installed here; the conda channel brings one"
            )
        return None

    def plan(self, env: EnvSpec, options: BuildOptions) -> Plan:
        from envbuild.lock.conda import select_conda_lock

        reason = self.can_build(env)
        if reason is not None:
            raise BuildError(f"--kind conda: {reason}", path=env.model_path)
        base = select_conda_lock(env, _request(options))
        where = "the model's pixi.lock" if base.source == "model" else "solved into the cache"
        return Plan(
            self.name,
            base.target(python_from_model=options.python is None),
            _interpreter(base, where),
            base.warnings,
            {"conda_lock": base.to_dict()},  # reported (env --json); the lock is target.base
        )

    def build(
        self,
        plan: Plan,
        model: ModelSpec,
        env: EnvSpec,
        lock: LockChoice | None,
        options: BuildOptions,
        *,
        on_progress: Progress | None = None,
    ) -> CondaEnvironment:
        from envbuild.conda.channels import resolve_channels
        from envbuild.conda.install import build_env
        from envbuild.lock.conda import CondaBase

        base = plan.target.base if plan.target is not None else None
        if not isinstance(base, CondaBase):
            raise UsageError("the conda kind builds from the plan its own plan() made")
        if lock is None:
            raise UsageError("the conda kind needs the pip half's lock")
        if on_progress:
            on_progress("building the conda environment")
        built = build_env(
            base.lock,
            pip_lock=lock.lock,
            offline=options.offline,
            link_scripts=options.package_scripts,
            channels=resolve_channels(base.lock.channels),
            compile_bytecode=options.compile_bytecode,
            progress=(lambda step: on_progress(str(step))) if on_progress else None,
            on_line=(lambda line: on_progress(line.strip()) if line.strip() else None)
            if on_progress
            else None,
            on_wait=(lambda: on_progress("waiting for another build of this environment"))
            if on_progress
            else None,
        )
        return CondaEnvironment(
            kind=self.name,
            path=built.path,
            python=built.python,
            key=built.key,
            lock_digest=lock.lock.digest,
            interpreter_version=built.python_version,
            built=built.built,
            seconds=built.seconds,
            details={
                "conda_lock": str(base.lock.path) if base.lock.path else "",
                "conda_lock_digest": base.lock.digest,
                "conda_lock_source": base.source,
                "conda_packages": built.details.get("packages", ""),
                "platform": built.platform,
            },
            conda_lock=base.lock,
            package_scripts=options.package_scripts,
        )

    def lock_files(self, model: ModelSpec) -> tuple[Path, ...]:
        from envbuild.lock.conda import CONDA_LOCK_NAME, PIP_LOCK_NAME

        return (model.path / CONDA_LOCK_NAME, model.path / PIP_LOCK_NAME)

    def lock(
        self,
        model: ModelSpec,
        env: EnvSpec,
        request: LockRequest,
        *,
        check: bool = False,
        on_progress: Progress | None = None,
    ) -> CondaLocks:
        """``envbuild lock --kind conda``: ``pixi.lock`` and ``pylock.conda.toml``."""
        from envbuild.lock.asof import parse_as_of
        from envbuild.lock.conda import CondaRequest, check_conda_model, lock_conda_model

        if len(request.platforms) > 1:
            raise UsageError(
                "a conda lock is for one platform: pass one --platform", field="--platform"
            )
        conda_request = CondaRequest(
            platform=request.platforms[0] if request.platforms else None,
            python=request.python,
            channels=request.channels,
            override_channels=request.override_channels,
            cuda=request.cuda,
            as_of=parse_as_of(request.as_of, model),
            offline=request.offline,
        )
        folder = request.output or request.folder
        if check:
            return check_conda_model(model, env, conda_request, folder=folder)
        from envbuild.indexes import configure

        indexes = configure(
            index_url=request.index_url,
            extra_index_urls=request.extra_index_urls,
            find_links=request.find_links,
            model_options=env.index_options,
            trust_model_indexes=request.trust_model_indexes,
        )
        return lock_conda_model(
            model,
            env,
            conda_request,
            output=folder,
            indexes=indexes,
            on_progress=on_progress,
        )

    def image_target(
        self, env: EnvSpec, options: ImageOptions, *, on_progress: Progress | None = None
    ) -> Target:
        """A conda image: the conda half for ``linux/<arch>``, its Python, the pip half over it."""
        from envbuild.image.plan import image_platform
        from envbuild.lock.conda import select_conda_lock

        reason = self.can_build(env)
        if reason is not None:
            raise BuildError(f"--kind conda: {reason}", path=env.model_path)
        platform = image_platform(options.platform)
        build_options = BuildOptions(kind=self.name, python=options.python, offline=options.offline)
        base = select_conda_lock(
            env, _request(build_options, platform=platform.name), on_progress=on_progress
        )
        return base.target(python_from_model=options.python is None)

"""Write a capture into the model folder: the three env files, the lock and the expected output.

All five files are rendered first — the lock needs a resolution, which can fail — and only then
written, each by atomic rename (``cache.atomic_write``), so a failed capture leaves the model's
files as they were and a reader never sees half a file:

* ``requirements.txt``: the pins (and the ``--extra-index-url`` a labelled build needs);
* ``python_env.yaml``: ``python: X.Y.Z`` (exact), its ``build_dependencies`` kept (else the
  logging environment's pip/setuptools/wheel), ``dependencies: [-r requirements.txt]``;
* ``conda.yaml``: channels, name and non-Python conda packages kept, ``python=X.Y.Z``, ``pip``,
  and the same pins under ``pip:``;
* ``pylock.toml``: the installed versions of the whole dependency closure, resolved by uv with
  ``envbuild.lock`` (each ``==`` its installed version, so nothing is chosen afresh; uv only adds
  the hashes and files the index has for those versions). Its ``[tool.envbuild]`` table records
  the input digest of the rewritten files, so ``envbuild lock --check`` passes right away and
  ``envbuild predict`` builds from it;
* ``envbuild_expected_output.json``: the predictions on the input example, as ``envbuild
  predict`` writes them (MLflow's ``{"predictions": ...}``), for reproduction checks.

The env files are written in the names MLmodel declares (``env: {virtualenv: ..., conda: ...}``),
else MLflow's default names.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from envbuild.capturing.engine import Capture
from envbuild.envspec import CONDA_TOOLING, EnvSpec, read_env
from envbuild.errors import EnvbuildError, ModelError, ResolutionError
from envbuild.files import atomic_write, temporary_directory
from envbuild.lock.pylock import PYLOCK_NAME, Lock, lock_from_text
from envbuild.lock.toml import render
from envbuild.model import (
    DEFAULT_CONDA,
    DEFAULT_PYTHON_ENV,
    DEFAULT_REQUIREMENTS,
    MLMODEL,
    ModelSpec,
    load_model,
)
from envbuild.requirements import Origin, make_requirement
from envbuild.target import host_platform
from envbuild.yamlio import load_yaml, scalar_text

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, from PyPI
    import tomli as tomllib

EXPECTED_OUTPUT = "envbuild_expected_output.json"
DEFAULT_CHANNELS = ("conda-forge",)
DEFAULT_ENV_NAME = "mlflow-env"


@dataclass(frozen=True)
class Written:
    """What ``capture --write`` (and the hook) wrote into the model folder."""

    path: Path
    files: tuple[str, ...]  # relative names, in the order written
    removed: tuple[str, ...]
    lock: Lock

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "files": list(self.files),
            "removed": list(self.removed),
            "lock": {
                "path": str(self.path / PYLOCK_NAME),
                "digest": self.lock.digest,
                "python": self.lock.python,
                "platforms": list(self.lock.platforms),
                "package_count": len(self.lock.packages),
                "input_digest": self.lock.input_digest,
            },
        }


# ---------------------------------------------------------------------------------------------
# Rendering


def env_file_names(spec: ModelSpec) -> tuple[str, str, str]:
    """(requirements.txt, python_env.yaml, conda.yaml) as this model names them."""
    env = spec.pyfunc.env if spec.pyfunc is not None else None
    python_env = (env.virtualenv if env is not None else None) or DEFAULT_PYTHON_ENV
    conda = (env.conda if env is not None else None) or DEFAULT_CONDA
    return DEFAULT_REQUIREMENTS, python_env, conda


def _existing_yaml(path: Path) -> Mapping[str, Any]:
    if not path.is_file():
        return {}
    try:
        doc = load_yaml(path)
    except ModelError:
        return {}  # unreadable: replaced by a fresh one
    return doc if isinstance(doc, Mapping) else {}


def _dump(doc: Mapping[str, Any]) -> str:
    return yaml.safe_dump(dict(doc), sort_keys=False, default_flow_style=False)


def _plain(value: Any) -> Any:
    """YAML values read with positions -> plain strings/lists (for writing back)."""
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    text = scalar_text(value)
    return text if text is not None else value


def render_env_files(spec: ModelSpec, capture: Capture) -> dict[str, str]:
    """The three env files' new text, with the same pins in each (name -> text)."""
    req_name, venv_name, conda_name = env_file_names(spec)
    lines = capture.requirement_lines()
    files = {req_name: "".join(f"{line}\n" for line in lines)}

    old_venv = _existing_yaml(spec.path / venv_name)
    build = old_venv.get("build_dependencies")
    build = _plain(build) if isinstance(build, list) and build else list(capture.build_tools)
    python_env: dict[str, Any] = {"python": capture.python_version}
    if build:
        python_env["build_dependencies"] = build
    python_env["dependencies"] = [f"-r {req_name}"]
    files[venv_name] = _dump(python_env)

    old_conda = _existing_yaml(spec.path / conda_name)
    channels = old_conda.get("channels")
    channels = _plain(channels) if isinstance(channels, list) else list(DEFAULT_CHANNELS)
    pip_spec = "pip"
    kept: list[Any] = []
    for dep in old_conda.get("dependencies") or ():
        text = scalar_text(dep) if not isinstance(dep, Mapping) else None
        if text is None:
            continue  # the old pip: list, replaced below
        name = _conda_name(text)
        if name == "pip":
            pip_spec = text.strip()
        elif name not in CONDA_TOOLING and canonicalize_name(name) not in _captured_names(capture):
            kept.append(text.strip())  # a conda-only package (cudatoolkit, libgomp, ...)
    conda: dict[str, Any] = {
        "channels": channels,
        "dependencies": [f"python={capture.python_version}", pip_spec, *kept, {"pip": lines}],
        "name": scalar_text(old_conda.get("name")) or DEFAULT_ENV_NAME,
    }
    files[conda_name] = _dump(conda)
    return files


def _captured_names(capture: Capture) -> set[str]:
    return {p.key for p in capture.closure}


def _conda_name(spec: str) -> str:
    name = spec.split("::")[-1].strip()
    for i, ch in enumerate(name):
        if ch in "=<>!~ [":
            return name[:i].lower()
    return name.lower()


# ---------------------------------------------------------------------------------------------
# The lock of the installed versions


def _stage(spec: ModelSpec, files: Mapping[str, str], folder: Path) -> tuple[ModelSpec, EnvSpec]:
    """A copy of MLmodel and the new env files: read back exactly as envbuild will read them."""
    shutil.copy2(spec.mlmodel_path, folder / MLMODEL)
    for name, text in files.items():
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    staged = load_model(folder)
    return staged, read_env(staged)


def _check_round_trip(env: EnvSpec, capture: Capture) -> None:
    written = sorted(r.text for r in env.requirements)
    if written != sorted(capture.requirements) or (
        env.python is None or env.python.version != capture.python_version
    ):
        raise EnvbuildError(  # a bug: what envbuild reads back is not what it wrote
            f"the rewritten files read back differently ({env.source}: {len(written)} "
            f"requirements, Python {env.python.text if env.python else None})"
        )


def lock_platforms(platforms: Iterable[str] | None) -> list[str]:
    """The lock's targets: the given ones, else this machine's platform and linux/amd64."""
    if platforms:
        return list(platforms)
    names = ["linux/amd64"]
    host = host_platform()
    if host is not None and host.name not in names:
        names.append(host.name)
    return names


def lock_installed(
    staged: ModelSpec,
    env: EnvSpec,
    capture: Capture,
    *,
    platforms: Iterable[str] | None = None,
    extra_index_urls: Sequence[str] = (),
    offline: bool = False,
    on_progress: Callable[[str], None] | None = None,
) -> Lock:
    """A pylock.toml of the closure at its installed versions, recorded as made from ``env``."""
    from envbuild.indexes import configure
    from envbuild.lock.uv import resolve
    from envbuild.target import Target

    local = capture.local_builds
    if local:
        shown = ", ".join(f"{p.name} {p.version}" for p in local)
        raise ResolutionError(
            f"cannot lock the installed versions: {shown} "
            f"{'was' if len(local) == 1 else 'were'} installed from a local folder or file "
            "(a local build), which no package index has",
            hint="publish the package to an index and install it from there (pass that index "
            "with --extra-index-url), or ship its code with the model (code_paths)",
        )
    pins = [
        make_requirement(p.requirement, Origin("installed", None), root=staged.path, shown="")
        for p in capture.closure
    ]
    resolution = replace(env, requirements=tuple(pins), constraints=(), index_options=())
    indexes = list(dict.fromkeys([*capture.extra_index_urls, *extra_index_urls]))
    try:
        lk = resolve(
            resolution,
            Target.for_model(
                resolution, python=capture.python_version, platforms=lock_platforms(platforms)
            ),
            offline=offline,
            indexes=configure(extra_index_urls=indexes),
            on_progress=on_progress,
        )
    except ResolutionError as exc:
        labelled = [p for p in capture.closure if p.label]
        hint = exc.hint
        if labelled:
            shown = ", ".join(
                f"{p.requirement} (from {p.index or 'an unknown index'})" for p in labelled
            )
            hint = (
                f"labelled builds need their index to be reachable: {shown}; pass a mirror "
                "with --extra-index-url"
            )
        else:
            hint = (
                "a version that is on no index (a local build, a private index, a deleted "
                "release) cannot be locked; pass its index with --extra-index-url"
                + (f"; {exc.hint}" if exc.hint else "")
            )
        raise ResolutionError(
            f"cannot lock the installed versions: {exc.message}",
            hint=hint,
            log_path=exc.log_path,
        ) from None
    doc = tomllib.loads(lk.text)
    tool = doc["tool"]["envbuild"]
    tool["input-digest"] = env.digest()
    tool["requirements"] = sorted(r.text for r in env.requirements)
    tool["source"] = "installed"  # the versions of the logging environment, not a resolution
    return lock_from_text(render(doc), warnings=[*lk.warnings, *_lock_differences(lk, capture)])


def _lock_differences(lk: Lock, capture: Capture) -> list[str]:
    """Warnings when the lock is not exactly the installed closure (it should be)."""
    locked: dict[str, set[str]] = {}
    for package in lk.packages:
        locked.setdefault(canonicalize_name(package.name), set()).add(package.version)
    out = []
    for captured in capture.closure:
        versions = locked.get(captured.key, set())
        if (
            not any(_same_version(captured.version, v) for v in versions)
            and captured.source is None
        ):
            out.append(
                f"{captured.name} {captured.version} is installed but the lock has "
                f"{', '.join(sorted(versions)) or 'no version of it'}"
            )
    extra = sorted(set(locked) - {p.key for p in capture.closure})
    if extra:
        out.append(
            f"the lock adds {', '.join(extra)}, not installed in the logging environment "
            "(needed on another target platform, or a missing dependency)"
        )
    return out


def _same_version(a: str, b: str) -> bool:
    try:
        return Version(a) == Version(b)
    except InvalidVersion:
        return a == b


# ---------------------------------------------------------------------------------------------
# Writing


def write_capture(
    spec: ModelSpec,
    capture: Capture,
    *,
    platforms: Iterable[str] | None = None,
    extra_index_urls: Sequence[str] = (),
    offline: bool = False,
    on_progress: Callable[[str], None] | None = None,
) -> Written:
    """Render the env files, the lock and the expected output, then write them all (atomically
    each); nothing is written when any of them fails."""
    files = render_env_files(spec, capture)
    with temporary_directory("capture") as tmp:
        staged, env = _stage(spec, files, tmp)
        _check_round_trip(env, capture)
        lk = lock_installed(
            staged,
            env,
            capture,
            platforms=platforms,
            extra_index_urls=extra_index_urls,
            offline=offline,
            on_progress=on_progress,
        )
    files[PYLOCK_NAME] = lk.text
    removed: list[str] = []
    if capture.expected_output is not None:
        files[EXPECTED_OUTPUT] = capture.expected_output
    elif (spec.path / EXPECTED_OUTPUT).exists():
        removed.append(EXPECTED_OUTPUT)  # predictions of an older capture: no longer true
    for name, text in files.items():
        atomic_write(spec.path / name, text)
    for name in removed:
        (spec.path / name).unlink(missing_ok=True)
    written_lock = lock_from_text(lk.text, path=spec.path / PYLOCK_NAME, warnings=lk.warnings)
    return Written(path=spec.path, files=tuple(files), removed=tuple(removed), lock=written_lock)

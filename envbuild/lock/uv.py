"""Resolving an :class:`EnvSpec` for a :class:`Target` into a :class:`Lock`, with uv.

A model's env files pin the top-level packages at best. Rebuilding its environment exactly needs
every transitive package pinned, with hashes, for the Python version and platform where it will
run, which is often not the machine running envbuild. So:

* uv resolves (``uv pip compile --format pylock.toml``) once per target platform, for the target
  Python version (no interpreter of that version is needed), optionally limited to the releases
  that existed at a date (``as_of``; uv's ``--exclude-newer``);
* the per-platform results are merged into one document (a package that differs between the
  targets carries a ``marker``; ``environments`` lists the targets, so installing the lock
  anywhere else fails loudly instead of installing wrong wheels) and rendered in envbuild's
  canonical form (``toml.py``): same inputs and date, same bytes;
* envbuild's own facts (target Python and platforms, the accelerator, the digest of the model's
  requirements, the as-of date, the indexes) go under ``[tool.envbuild]``.

An accelerator with a PyTorch index (``cpu``, ``cu121``, ``rocm6.0``; see ``accelerator.py``) is
given to uv as an *explicit* index that only the torch family is pinned to: uv's
``[[tool.uv.index]] explicit = true`` with ``[tool.uv.sources]``, which ``uv pip compile`` reads
from a ``pyproject.toml`` input (``--torch-backend`` would do the routing too, but knows no mirror).
Sources apply to direct requirements only, so a family package that arrives as a dependency
(``torchmetrics`` requiring ``torch``) is added as a direct, unconstrained requirement and the
resolution run again; it was in the result anyway, only its source changes.

:func:`resolve` writes nothing the caller can see (uv works in a private temporary folder);
writing the lock is :meth:`Lock.write`. uv's ``upload-time`` of every file is kept: it is a
recorded fact of the index (deterministic) and lets anyone audit an ``--as-of`` lock. uv's header
comment (it holds temporary paths) is dropped.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from packaging.requirements import Requirement as PkgRequirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from envbuild import accelerator as accel
from envbuild import proc
from envbuild.envspec import EnvSpec
from envbuild.errors import ResolutionError
from envbuild.files import temporary_directory
from envbuild.indexes import IndexConfig, IndexSetting, configure
from envbuild.lock.asof import as_of_from_settings
from envbuild.lock.explain import explain_failure
from envbuild.lock.pylock import (
    CREATED_BY,
    LOCK_VERSION,
    PYLOCK_NAME,
    Lock,
    LockedPackage,
    file_name,
    local_files_warnings,
    lock_from_text,
)
from envbuild.lock.toml import render, toml_string
from envbuild.redact import redact
from envbuild.target import Platform, Target, python_minor

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, from PyPI
    import tomli as tomllib

# uv settings that would change a resolution without the lock saying so. Index variables are
# set again from the gathered settings (indexes.py); UV_EXCLUDE_NEWER becomes the recorded as-of.
_UV_HIDDEN_INPUTS = (
    "UV_CONSTRAINT",
    "UV_OVERRIDE",
    "UV_EXCLUDE",
    "UV_RESOLUTION",
    "UV_PRERELEASE",
    "UV_EXCLUDE_NEWER",
    "UV_PYTHON_PLATFORM",
    "UV_NO_BINARY",
    "UV_ONLY_BINARY",
)


@dataclass(frozen=True)
class _Job:
    """Everything one ``resolve()`` call needs: shared by the per-platform uv runs."""

    env: EnvSpec
    target: Target
    as_of: str | None
    offline: bool
    indexes: IndexConfig
    workdir: Path
    uv: str  # found once: uv's finder is not thread-safe (sysconfig's lazy init)
    requirements: tuple[str, ...] = ()  # what uv is given (family pins retargeted)
    torch_index: IndexSetting | None = None  # explicit index of the torch family, if any
    excludes: tuple[str, ...] = ()  # left out of the resolution (CUDA libraries for cpu)


_INPUT = {False: "requirements.in", True: "pyproject.toml"}
# the explicit index's credentials reach uv as variables (uv's per-index settings), never a file
_INDEX_VARIABLE = "UV_INDEX_" + accel.INDEX_NAME.upper().replace("-", "_")


def write_inputs(job: _Job, extra: Sequence[str] = ()) -> Path:
    """uv's input in the work folder: ``requirements.in``, or with an explicit torch index a
    ``pyproject.toml`` whose sources pin the family names among the requirements to it."""
    lines = [*job.requirements, *extra]
    if job.torch_index is None:
        path = job.workdir / _INPUT[False]
        path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
        return path
    family = accel.family_of(job.target.accelerator)
    names = sorted({canonicalize_name(PkgRequirement(line).name) for line in lines} & family)
    marker = accel.platform_marker(job.target.accelerator or "")
    pin = f"index = {toml_string(accel.INDEX_NAME)}"
    if marker:
        pin += f", marker = {toml_string(marker)}"
    text = "\n".join(
        [
            "[project]",
            'name = "envbuild-resolution"',
            'version = "0"',
            "dependencies = [",
            *[f"  {toml_string(line)}," for line in lines],
            "]",
            "",
            "[tool.uv.sources]",
            *[f"{name} = {{ {pin} }}" for name in names],
            "",
            "[[tool.uv.index]]",
            f"name = {toml_string(accel.INDEX_NAME)}",
            f"url = {toml_string(_strip_credentials(job.torch_index.value))}",
            "explicit = true",
            "",
        ]
    )
    path = job.workdir / _INPUT[True]
    path.write_text(text, encoding="utf-8")
    return path


def _uv_command(job: _Job, target: Platform, out_dir: Path) -> list[str]:
    args = [
        job.uv,
        "pip",
        "compile",
        str(job.workdir / _INPUT[job.torch_index is not None]),
        "--format",
        "pylock.toml",
        "--output-file",
        str(out_dir / PYLOCK_NAME),
        "--python-version",
        job.target.python,
        "--python-platform",
        target.uv_platform,
        # the interpreter uv may use to build an sdist's metadata; never searched for or
        # downloaded (the target version need not be installed)
        "--python",
        sys.executable,
        "--no-header",
        "--quiet",
        "--color",
        "never",
        "--no-progress",
    ]
    if (job.workdir / "constraints.txt").is_file():
        args += ["--constraints", str(job.workdir / "constraints.txt")]
    if job.excludes:
        args += ["--excludes", str(job.workdir / "excludes.txt")]
    for name in _base_names(job.target):
        # installed by the base (conda): resolved at its version, left out of the pip half
        args += ["--no-emit-package", name]
    if job.as_of:
        args += ["--exclude-newer", job.as_of]
    if job.offline:
        args.append("--offline")
    return args


def _base_names(target: Target) -> list[str]:
    if target.base is None:
        return []
    return sorted({c.split("==", 1)[0] for c in target.base.constraints()})


def _child_env(job: _Job) -> dict[str, str]:
    env = job.indexes.child_env(proc.base_env())
    for name in _UV_HIDDEN_INPUTS:
        env.pop(name, None)
    if job.torch_index is not None:
        parts = urlsplit(job.torch_index.value)
        if parts.username:
            env[f"{_INDEX_VARIABLE}_USERNAME"] = unquote(parts.username)
        if parts.password:
            env[f"{_INDEX_VARIABLE}_PASSWORD"] = unquote(parts.password)
    return env


def _resolve_one(job: _Job, target: Platform) -> dict[str, Any]:
    """Run uv for one platform; its parsed pylock document, or a ResolutionError explaining."""
    out_dir = Path(tempfile.mkdtemp(prefix="out-", dir=job.workdir))
    done = proc.run(
        _uv_command(job, target, out_dir),
        what=f"resolving for {target.name} python {job.target.python}",
        error=ResolutionError,
        cwd=job.workdir,  # so that no project's pyproject.toml / uv.toml is picked up
        env=_child_env(job),
        check=False,
    )
    if done.returncode != 0:
        raise explain_failure(
            done.stderr,
            env=job.env,
            python=job.target.python,
            python_from_model=job.target.python_from_model,
            platform=target if len(job.target.platforms) > 1 else None,
            as_of=job.as_of,
            offline=job.offline,
            index=str(job.indexes.record().get("index-url")),
            log_path=done.log_path,
            accelerator=job.target.accelerator,
            torch_index=job.torch_index.redacted if job.torch_index else None,
            torch_index_source=job.torch_index.source if job.torch_index else None,
        )
    text = (out_dir / PYLOCK_NAME).read_text(encoding="utf-8")
    return tomllib.loads(text)


def _strip_credentials(url: str) -> str:
    """File URLs in a lock carry no credentials: installers get them from netrc/keyring/env."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if not (parts.username or parts.password):
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def _clean_file(entry: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(entry)
    if isinstance(out.get("url"), str):
        out["url"] = _strip_credentials(out["url"])
    if isinstance(out.get("hashes"), Mapping):
        out["hashes"] = dict(sorted(out["hashes"].items()))
    return out


def _version_key(version: str) -> tuple[int, Any]:
    try:
        return (0, Version(version))
    except InvalidVersion:
        return (1, version)


def _or_markers(markers: Sequence[str]) -> str:
    if len(markers) == 1:
        return markers[0]
    return " or ".join(f"({m})" for m in markers)


def merge(
    results: Sequence[tuple[Platform, Mapping[str, Any]]],
) -> list[dict[str, Any]]:
    """Combine per-platform resolutions into one package list.

    A (name, version) chosen for every target needs no marker, and its wheels are the union of
    each target's; one chosen for some targets only gets the marker of those targets, so that an
    installer on any target picks exactly what uv resolved for it.
    """
    all_names = [platform.name for platform, _ in results]
    groups: dict[tuple[str, str, str], dict[str, Any]] = {}
    seen_on: dict[tuple[str, str, str], list[Platform]] = {}
    for platform, doc in results:
        for package in doc.get("packages", []):
            key = (
                str(canonicalize_name(str(package["name"]))),
                str(package.get("version", "")),
                str(package.get("marker", "")),
            )
            seen_on.setdefault(key, []).append(platform)
            merged = groups.get(key)
            if merged is None:
                merged = {k: v for k, v in package.items() if k not in ("wheels", "marker")}
                for single in ("sdist", "archive", "vcs"):
                    if isinstance(merged.get(single), Mapping):
                        merged[single] = _clean_file(merged[single])
                merged["wheels"] = {}
                if package.get("marker"):
                    merged["marker"] = package["marker"]
                groups[key] = merged
            for wheel in package.get("wheels", []):
                clean = _clean_file(wheel)
                merged["wheels"].setdefault(file_name(clean), clean)
    packages = []
    for key, merged in groups.items():
        wheels = [merged["wheels"][name] for name in sorted(merged["wheels"])]
        merged["wheels"] = wheels
        if not wheels:
            del merged["wheels"]
        platforms = sorted({p.name: p for p in seen_on[key]}.values())
        if [p.name for p in platforms] != sorted(all_names):
            where = _or_markers([p.marker for p in platforms])
            own = merged.get("marker")
            merged["marker"] = f"({own}) and ({where})" if own else where
        packages.append(merged)
    packages.sort(
        key=lambda p: (p["name"], _version_key(p.get("version", "")), p.get("marker", ""))
    )
    return packages


def _document(job: _Job, packages: list[dict[str, Any]]) -> dict[str, Any]:
    env = job.env
    tool: dict[str, Any] = {
        "python": job.target.python,
        "platforms": [p.name for p in job.target.platforms],
    }
    if job.target.accelerator:
        tool["accelerator"] = job.target.accelerator
        if job.target.accelerator_reason:
            tool["accelerator-reason"] = job.target.accelerator_reason
    if job.torch_index is not None:
        tool["accelerator-index"] = job.torch_index.redacted
    if job.excludes:
        tool["left-out"] = list(job.excludes)
    if env.python is not None:
        tool["model-python"] = env.python.specifier
    if job.as_of:
        tool["as-of"] = job.as_of
    tool["input-digest"] = env.digest()
    if job.target.base is not None:
        tool["base"] = job.target.base.name
        tool.update(job.target.base.record())
    tool.update(job.indexes.record())
    tool["requirements"] = sorted(redact(r.text) for r in env.requirements)
    if env.constraints:
        tool["constraints"] = sorted(redact(r.text) for r in env.constraints)
    return {
        "lock-version": LOCK_VERSION,
        "environments": [p.marker for p in job.target.platforms],
        "requires-python": f"=={python_minor(job.target.python)}.*",
        "created-by": CREATED_BY,
        "packages": packages,
        "tool": {"envbuild": tool},
    }


def _lock_warnings(
    job: _Job,
    results: Sequence[tuple[Platform, Mapping[str, Any]]],
    packages: Sequence[LockedPackage],
) -> list[str]:
    out: list[str] = []
    for platform, doc in results:
        for package in doc.get("packages", []):
            if not package.get("wheels") and package.get("sdist"):
                out.append(
                    f"{package['name']}=={package.get('version')} has no wheel for {platform.name}"
                    f" (Python {job.target.python}): it will be built from source at install time"
                )
    out.extend(_retarget_warnings(job))
    if job.excludes:
        out.append(
            f"--accelerator {job.target.accelerator}: left out {', '.join(job.excludes)} "
            "(CUDA libraries a CPU build does not load; the packages that require them are "
            "installed without them)"
        )
    out.extend(local_files_warnings(packages, job.indexes.local_advice()))
    missing = sorted(
        {
            str(p["name"])
            for _, doc in results
            for p in doc.get("packages", [])
            for f in [*p.get("wheels", []), p.get("sdist") or {}]
            if f and not f.get("hashes")
        }
    )
    if missing:
        out.append(
            f"no hash recorded for files of {', '.join(missing)}: "
            "`uv pip sync --require-hashes` will refuse them"
        )
    return list(dict.fromkeys(out))


def _retarget_warnings(job: _Job) -> list[str]:
    out = []
    for req, given in zip(job.env.requirements, job.requirements, strict=True):
        if given != req.text:
            out.append(
                f"{req.text} ({req.origin}) is resolved as {given} for --accelerator "
                f"{job.target.accelerator}"
            )
    return out


def _resolve_round(job: _Job, extra: Sequence[str]) -> list[tuple[Platform, Mapping[str, Any]]]:
    write_inputs(job, extra)
    if job.excludes:
        (job.workdir / "excludes.txt").write_text(
            "".join(f"{name}\n" for name in job.excludes), encoding="utf-8"
        )
    if len(job.target.platforms) == 1:
        platform = job.target.platforms[0]
        return [(platform, _resolve_one(job, platform))]
    with ThreadPoolExecutor(max_workers=len(job.target.platforms)) as pool:
        futures = [(t, pool.submit(_resolve_one, job, t)) for t in job.target.platforms]
        return [(t, f.result()) for t, f in futures]


def _resolve_all(job: _Job) -> tuple[_Job, list[tuple[Platform, Mapping[str, Any]]]]:
    """Every target platform resolved, then again while a round changes what uv is given:

    * with an explicit torch index, the family packages that came in as dependencies are made
      direct (so that their source applies);
    * for ``--accelerator cpu``, the ``nvidia-*`` CUDA libraries other packages pull in on Linux
      (xgboost's ``nvidia-nccl-cu12``) are left out (uv's ``--excludes``): a CPU build never loads
      them. One the model asks for by name is kept.
    """
    extra: list[str] = []
    direct = {canonicalize_name(PkgRequirement(line).name) for line in job.requirements}
    family = accel.family_of(job.target.accelerator)
    results: list[tuple[Platform, Mapping[str, Any]]] = []
    for _ in range(4):  # each round only adds names: a few at most
        results = _resolve_round(job, extra)
        found = {
            str(canonicalize_name(str(p["name"])))
            for _, doc in results
            for p in doc.get("packages", [])
        }
        missing: list[str] = []
        if job.torch_index is not None:
            missing = sorted((found & family) - direct - {canonicalize_name(e) for e in extra})
        left_out: list[str] = []
        if job.target.accelerator == "cpu":
            left_out = sorted(n for n in found if accel.is_cuda_library(n) and n not in direct)
        if not missing and not left_out:
            if not found & family:  # no torch here: the explicit index served nothing
                job = replace(job, torch_index=None)
            return job, results
        extra += missing
        job = replace(job, excludes=tuple(sorted({*job.excludes, *left_out})))
    return job, results


def resolve(
    env: EnvSpec,
    target: Target,
    *,
    as_of: str | None = None,
    offline: bool = False,
    indexes: IndexConfig | None = None,
    on_progress: Callable[[str], None] | None = None,
) -> Lock:
    """Resolve ``env``'s requirements into a PEP 751 lock for ``target``; writes nothing.

    ``as_of`` is an RFC 3339 UTC time (see :func:`envbuild.lock.asof.parse_as_of`); uv's
    ``UV_EXCLUDE_NEWER`` is used when it is None. ``indexes`` defaults to the user's settings
    (:func:`envbuild.indexes.configure`; the model's own index options are not obeyed). Raises
    ResolutionError (exit 3) with a one-line explanation when uv cannot resolve.
    """
    if as_of is None:
        as_of = as_of_from_settings()
    if indexes is None:
        indexes = configure(model_options=env.index_options)
    torch_index = None
    if accel.has_index(target.accelerator):
        torch_index = indexes.torch_index(target.accelerator or "")
    with temporary_directory("lock") as workdir:
        (workdir / "requirements.in").write_text(
            "".join(f"{r.text}\n" for r in env.requirements), encoding="utf-8"
        )
        base = target.base.constraints() if target.base is not None else ()
        if env.constraints or base:
            (workdir / "constraints.txt").write_text(
                "".join(f"{line}\n" for line in [*(r.text for r in env.constraints), *base]),
                encoding="utf-8",
            )
        job = _Job(
            env=env,
            target=target,
            as_of=as_of,
            offline=offline,
            indexes=indexes,
            workdir=workdir,
            uv=proc.uv_bin(),
            requirements=tuple(accel.retarget(r.text, target.accelerator) for r in env.requirements)
            if target.accelerator
            else tuple(r.text for r in env.requirements),
            torch_index=torch_index,
        )
        if on_progress is not None:
            on_progress(
                f"resolving {len(env.requirements)} requirement(s) for {target.describe()}"
                + (f" as of {as_of}" if as_of else "")
            )
        results: list[tuple[Platform, Mapping[str, Any]]]
        if not env.requirements:
            results = [(platform, {"packages": []}) for platform in target.platforms]
        else:
            job, results = _resolve_all(job)
        text = render(_document(job, merge(results)))
    lk = lock_from_text(text)
    return replace(
        lk,
        warnings=tuple(_lock_warnings(job, results, lk.packages)),
        accelerator_reason=lk.accelerator_reason or target.accelerator_reason,
    )

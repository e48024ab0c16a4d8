"""Stage 2: :class:`ModelSpec` -> :class:`EnvSpec`, one normalized view of a model's environment.

MLflow writes the same environment up to three times (``python_env.yaml`` + ``requirements.txt``,
``conda.yaml``, ``python_version`` in MLmodel) and people edit one of them by hand. envbuild picks
one source per fact, in a fixed order of trust that mirrors what MLflow itself installs for a
virtualenv, and warns about every disagreement instead of merging conflicting pins:

* Python version: ``python_env.yaml`` > ``conda.yaml`` (``python=...``) > MLmodel ``python_version``.
* pip requirements: ``python_env.yaml`` ``dependencies`` (with its ``-r``/``-c`` includes) >
  ``requirements.txt`` > the ``pip:`` list of ``conda.yaml``.
* conda dependencies and channels: ``conda.yaml`` (for the conda backend; a virtualenv cannot
  install them, which is said in a warning when they look like Python packages).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from envbuild.accelerator import is_pytorch_index
from envbuild.errors import ModelError
from envbuild.model import (
    DEFAULT_CONDA,
    DEFAULT_PYTHON_ENV,
    DEFAULT_REQUIREMENTS,
    MLMODEL,
    ModelSpec,
    PyFuncFlavor,
)
from envbuild.paths import inside
from envbuild.redact import redact
from envbuild.requirements import (
    IndexOption,
    MissingInclude,
    Origin,
    ParsedRequirements,
    Requirement,
    RequirementsReader,
)
from envbuild.yamlio import YamlList, kind_of, line_of, load_yaml, scalar_text

CONDA_SPEC_OPERATORS = "=<>!~ "
# conda packages that are the toolchain, not the model's dependencies
CONDA_TOOLING = {"python", "pip", "setuptools", "wheel"}


@dataclass(frozen=True)
class PythonRequest:
    """The Python the model wants: as written, where, and as a specifier for matching."""

    text: str  # as written: "3.8.16", "3.12", "3.10.*", "~=3.12"
    origin: Origin
    specifier: str  # PEP 440 specifier set equivalent, e.g. "==3.8.16", "==3.10.*"

    @property
    def version(self) -> str:
        """The most precise concrete version implied (X.Y or X.Y.Z), for finding an interpreter."""
        for spec in SpecifierSet(self.specifier):
            if spec.operator in ("==", "===", "~=", ">="):
                parts = spec.version.rstrip(".*").split(".")
                return ".".join(parts[:3])
        return self.text

    @property
    def minor(self) -> str:
        """``X.Y``, the part that decides ABI compatibility."""
        return ".".join(self.version.split(".")[:2])

    def admits(self, version: str) -> bool:
        """Does an interpreter (or another source's version) satisfy this request?"""
        try:
            return Version(version) in SpecifierSet(self.specifier)
        except InvalidVersion:
            return False


@dataclass(frozen=True)
class CondaDependency:
    """A conda-level (non-pip) dependency: match spec as written, and its package name."""

    spec: str
    name: str
    origin: Origin


@dataclass(frozen=True)
class EnvSpec:
    """Everything needed to resolve the model's environment. Immutable; ``digest`` is its identity."""

    model_path: Path
    python: PythonRequest | None
    requirements: tuple[Requirement, ...]
    constraints: tuple[Requirement, ...]
    build_requirements: tuple[Requirement, ...]
    conda_dependencies: tuple[CondaDependency, ...]
    channels: tuple[str, ...]
    index_options: tuple[IndexOption, ...]
    source: str  # the file the pip requirements were taken from
    files: tuple[str, ...]  # every env file read, relative to the model folder
    warnings: tuple[str, ...] = field(default=())

    def digest(self) -> str:
        """sha256 of what resolution depends on: the lock records it; ``lock --check`` compares it.

        The model's own index options are not in it: they are obeyed only when the user trusts
        them (``--trust-model-indexes``), and then they are part of the index settings that the
        lock records and the lock cache keys on. An ignored option must not change anything.
        """
        payload = {
            "python": self.python.specifier if self.python else None,
            # credentials in a direct URL are not part of the identity (a rotated token does not
            # make a lock stale) and never reach the lock through it
            "requirements": sorted(redact(r.text) for r in self.requirements),
            "constraints": sorted(redact(r.text) for r in self.constraints),
            "index_options": [],  # kept (empty) so that digests stay those of earlier locks
        }
        blob = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
        return "sha256:" + hashlib.sha256(blob).hexdigest()


# ---------------------------------------------------------------------------------------------
# Python version


def python_from_text(
    text: str, origin: Origin, *, conda: bool, shown: Path, field_name: str
) -> PythonRequest:
    """Parse a Python version as written in one of the three places into a PythonRequest."""
    raw = text.strip()
    if conda:
        # conda match spec: "3.8" / "3.8.*" mean that series, "=3.8" too, "==3.8.16" exact.
        spec_text = raw
        if spec_text[:1].isdigit():
            spec_text = "=" + spec_text
        if spec_text.startswith("=") and not spec_text.startswith("=="):
            version = spec_text[1:].rstrip("*").rstrip(".")
            spec = f"=={version}.*" if version.count(".") < 2 else f"=={version}"
        else:
            spec = spec_text
    else:
        spec = f"=={raw}" if raw[:1].isdigit() else raw
        if spec.startswith("==") and spec.count(".") == 1 and not spec.endswith("*"):
            spec += ".*"
    try:
        specifier = SpecifierSet(spec.replace(" ", ""))
    except InvalidSpecifier:
        raise ModelError(
            f"invalid Python version {raw!r}", path=shown, field=field_name, line=origin.line
        ) from None
    if not list(specifier):
        raise ModelError(
            f"invalid Python version {raw!r}", path=shown, field=field_name, line=origin.line
        )
    problem = _unsatisfiable(specifier, raw)
    if problem is not None:
        raise ModelError(
            problem,
            path=shown,
            field=field_name,
            line=origin.line,
            hint=f"write the Python the model runs on, {SUPPORTED_PYTHON[0]}.x to "
            f"{SUPPORTED_PYTHON[1]}.x (for example 3.11 or 3.11.7)",
        )
    if conda and raw.startswith("=") and not raw.startswith("=="):
        raw = raw[1:]
    return PythonRequest(text=raw, origin=origin, specifier=str(specifier))


# the Python 3 minor versions a model's environment can be built for (3.6: the oldest the MLflow
# models in the wild use; the newest: CPython's newest series, with its next in pre-release)
SUPPORTED_PYTHON = ("3.6", "3.15")


def _unsatisfiable(specifier: SpecifierSet, raw: str) -> str | None:
    """Why no Python envbuild can build for satisfies ``specifier`` (None when one does)."""
    low, high = (int(v.split(".")[1]) for v in SUPPORTED_PYTHON)
    if any(
        specifier.contains(f"3.{minor}.{patch}", prereleases=True)
        for minor in range(low, high + 1)
        for patch in range(0, 40)
    ):
        return None
    ancient = [m for m in range(0, low) if specifier.contains(f"3.{m}.0", prereleases=True)]
    if any(specifier.contains(f"2.{m}.{p}") for m in range(0, 8) for p in range(0, 19)):
        return f"Python {raw} is Python 2: envbuild builds Python 3 environments"
    if ancient:
        return (
            f"Python {raw} is too old: envbuild builds for Python {SUPPORTED_PYTHON[0]} and newer"
        )
    if any(specifier.contains(f"3.{m}.0", prereleases=True) for m in range(high + 1, 100)):
        return f"Python {raw} does not exist (the newest series is {SUPPORTED_PYTHON[1]})"
    return f"invalid Python version {raw!r}: no Python release matches it"


def _agree(a: PythonRequest, b: PythonRequest) -> bool:
    return a.admits(b.version) or b.admits(a.version)


# ---------------------------------------------------------------------------------------------
# conda.yaml


@dataclass
class _Conda:
    python: PythonRequest | None = None
    dependencies: list[CondaDependency] = field(default_factory=list)
    channels: list[str] = field(default_factory=list)
    pip_items: list[tuple[str, Origin]] = field(default_factory=list)
    has_pip_section: bool = False


def _conda_name(spec: str) -> str:
    """The package name of a conda match spec (``channel::name>=1.0 build`` -> ``name``)."""
    name = spec.split("::")[-1].strip()
    for i, ch in enumerate(name):
        if ch in CONDA_SPEC_OPERATORS or ch == "[":
            return name[:i]
    return name


def _read_conda(root: Path, rel: str) -> _Conda:
    path = root / rel
    doc = load_yaml(path)
    result = _Conda()
    if doc is None:
        return result
    if not isinstance(doc, Mapping):
        raise ModelError(f"expected a mapping, found {kind_of(doc)}", path=path)
    channels = doc.get("channels") or []
    if not isinstance(channels, list):
        raise ModelError(
            "expected a list", path=path, field="channels", line=line_of(doc, "channels")
        )
    result.channels = [str(c) for c in channels if c is not None]
    deps = doc.get("dependencies") or []
    if not isinstance(deps, list):
        raise ModelError(
            "expected a list", path=path, field="dependencies", line=line_of(doc, "dependencies")
        )
    for index, dep in enumerate(deps):
        line = line_of(deps, index)
        if isinstance(dep, Mapping):
            if set(map(str, dep)) != {"pip"}:
                raise ModelError(
                    f"unexpected mapping {sorted(map(str, dep))} (only 'pip:' is allowed)",
                    path=path,
                    field="dependencies",
                    line=line,
                )
            pip_list = dep.get("pip") or []
            if not isinstance(pip_list, list):
                raise ModelError("expected a list", path=path, field="dependencies.pip", line=line)
            result.has_pip_section = True
            for j, item in enumerate(pip_list):
                item_line = line_of(pip_list, j) if isinstance(pip_list, YamlList) else line
                text = scalar_text(item)
                if text is None:
                    raise ModelError(
                        f"expected a requirement string, found {kind_of(item)}",
                        path=path,
                        field="dependencies.pip",
                        line=item_line,
                    )
                result.pip_items.append((text, Origin(rel, item_line)))
            continue
        text = scalar_text(dep)
        if text is None or not text.strip():
            raise ModelError(
                f"expected a conda package spec, found {kind_of(dep)}",
                path=path,
                field="dependencies",
                line=line,
            )
        name = _conda_name(text)
        origin = Origin(rel, line)
        if name.lower() == "python":
            version_text = text.strip()[len(name) :].strip() or None
            if version_text:
                result.python = python_from_text(
                    version_text, origin, conda=True, shown=path, field_name="dependencies: python"
                )
        result.dependencies.append(CondaDependency(text.strip(), name, origin))
    return result


# ---------------------------------------------------------------------------------------------
# python_env.yaml


@dataclass
class _PythonEnv:
    python: PythonRequest | None = None
    build: list[tuple[str, Origin]] = field(default_factory=list)
    dependencies: list[tuple[str, Origin]] = field(default_factory=list)


def _read_python_env(root: Path, rel: str) -> _PythonEnv:
    path = root / rel
    doc = load_yaml(path)
    result = _PythonEnv()
    if doc is None:
        return result
    if not isinstance(doc, Mapping):
        raise ModelError(f"expected a mapping, found {kind_of(doc)}", path=path)
    unknown = sorted(set(map(str, doc)) - {"python", "build_dependencies", "dependencies"})
    if unknown:
        raise ModelError(
            f"unknown key {unknown[0]!r} (expected python, build_dependencies, dependencies)",
            path=path,
            field=unknown[0],
            line=line_of(doc, unknown[0]),
        )
    if doc.get("python") is not None:
        text = scalar_text(doc["python"])
        if text is None:
            raise ModelError(
                "expected a version", path=path, field="python", line=line_of(doc, "python")
            )
        result.python = python_from_text(
            text, Origin(rel, line_of(doc, "python")), conda=False, shown=path, field_name="python"
        )
    for key, target in (
        ("build_dependencies", result.build),
        ("dependencies", result.dependencies),
    ):
        items = doc.get(key) or []
        if not isinstance(items, list):
            raise ModelError("expected a list", path=path, field=key, line=line_of(doc, key))
        for index, item in enumerate(items):
            text = scalar_text(item)
            if text is None:
                raise ModelError(
                    f"expected a requirement string, found {kind_of(item)}",
                    path=path,
                    field=key,
                    line=line_of(items, index),
                )
            target.append((text, Origin(rel, line_of(items, index))))
    return result


# ---------------------------------------------------------------------------------------------
# Putting it together


def _existing(root: Path, rel: str | None, mlmodel: Path, field_name: str) -> str | None:
    if rel is None:
        return None
    target = inside(root, rel, path=mlmodel, field=field_name)
    return rel if target.is_file() else None


def _compare_pins(
    chosen: Sequence[Requirement], other: Sequence[Requirement], chosen_src: str, other_src: str
) -> list[str]:
    """Warnings for packages pinned differently (one each), or listed in one file only (summed up)."""
    mine = {r.name: r for r in chosen}
    theirs = {r.name: r for r in other}
    out = []
    for name in sorted(set(mine) & set(theirs)):
        a, b = mine[name], theirs[name]
        if a.parsed.specifier != b.parsed.specifier:
            out.append(
                f"{b.origin} asks for {b.text} but {a.origin} asks for {a.text}; using {chosen_src}"
            )

    def listing(reqs: list[Requirement]) -> str:
        shown = ", ".join(r.text for r in reqs[:6])
        return shown + (f" and {len(reqs) - 6} more" if len(reqs) > 6 else "")

    only_other = [theirs[n] for n in sorted(set(theirs) - set(mine))]
    only_mine = [mine[n] for n in sorted(set(mine) - set(theirs))]
    if only_other:
        out.append(
            f"{other_src} also lists {listing(only_other)}; not installed ({chosen_src} is used)"
        )
    if only_mine:
        out.append(f"{other_src} does not list {listing(only_mine)}, which {chosen_src} does")
    return out


@dataclass(frozen=True)
class _Files:
    """The environment files found in the model folder (relative names), and what was read."""

    conda_rel: str | None
    venv_rel: str | None
    req_rel: str | None
    conda: _Conda | None
    python_env: _PythonEnv | None


def _find_files(model: ModelSpec, pyfunc: PyFuncFlavor, warnings: list[str]) -> _Files:
    """Which of the three env files exist (MLmodel's names, else MLflow's defaults), read."""
    root, mlmodel = model.path, model.mlmodel_path
    env = pyfunc.env
    field_prefix = "flavors.python_function.env"
    declared_conda = env.conda
    declared_venv = env.virtualenv
    conda_rel = _existing(root, declared_conda or DEFAULT_CONDA, mlmodel, f"{field_prefix}.conda")
    venv_rel = _existing(
        root, declared_venv or DEFAULT_PYTHON_ENV, mlmodel, f"{field_prefix}.virtualenv"
    )
    req_rel = _existing(root, DEFAULT_REQUIREMENTS, mlmodel, "requirements.txt")
    for declared, found, key in (
        (declared_conda, conda_rel, "conda"),
        (declared_venv, venv_rel, "virtualenv"),
    ):
        if declared and not found:
            warnings.append(f"{MLMODEL}: {field_prefix}.{key}: {declared} is missing")
    if declared_conda and conda_rel and not declared_conda.endswith((".yaml",)):
        warnings.append(
            f"{MLMODEL}: {field_prefix}: conda file is named {declared_conda}, not conda.yaml"
        )
    if not (conda_rel or venv_rel or req_rel):
        missing = (
            declared_venv or declared_conda or "conda.yaml, python_env.yaml or requirements.txt"
        )
        raise ModelError(
            f"no environment file: {missing} is missing and no other file can stand in",
            path=mlmodel,
            field=field_prefix,
            hint="restore the model's environment files, or run `envbuild capture MODEL --write` "
            "where the model loads",
        )
    return _Files(
        conda_rel=conda_rel,
        venv_rel=venv_rel,
        req_rel=req_rel,
        conda=_read_conda(root, conda_rel) if conda_rel else None,
        python_env=_read_python_env(root, venv_rel) if venv_rel else None,
    )


def _choose_python(
    model: ModelSpec, pyfunc: PyFuncFlavor, files: _Files, warnings: list[str]
) -> PythonRequest | None:
    """python_env.yaml > conda.yaml > MLmodel; a disagreement is a warning naming both."""
    candidates: list[PythonRequest] = []
    if files.python_env and files.python_env.python:
        candidates.append(files.python_env.python)
    if files.conda and files.conda.python:
        candidates.append(files.conda.python)
    if pyfunc.python_version:
        candidates.append(
            python_from_text(
                pyfunc.python_version,
                Origin(MLMODEL, None),
                conda=False,
                shown=model.mlmodel_path,
                field_name="flavors.python_function.python_version",
            )
        )
    if not candidates:
        warnings.append(
            "no Python version in any environment file; the default interpreter is used"
        )
        return None
    python = candidates[0]
    for other in candidates[1:]:
        if not _agree(python, other):
            warnings.append(
                f"Python version: {python.origin} says {python.text} but {other.origin} says "
                f"{other.text}; using {python.text}"
            )
    return python


def _choose_requirements(
    root: Path, files: _Files, warnings: list[str]
) -> tuple[ParsedRequirements, list[Requirement], str]:
    """python_env.yaml > requirements.txt > conda.yaml's pip list: (what was read, build
    requirements, the file used)."""
    reader = RequirementsReader(root)
    build: list[Requirement] = []
    source = ""
    python_env, venv_rel, req_rel = files.python_env, files.venv_rel, files.req_rel
    conda, conda_rel = files.conda, files.conda_rel
    if python_env is not None and venv_rel:
        build_reader = RequirementsReader(root)
        for text, origin in python_env.build:
            build_reader.read_line(text, origin, root / venv_rel)
        build = build_reader.result.requirements
        try:
            for text, origin in python_env.dependencies:
                reader.read_line(text, origin, root / venv_rel)
            source = venv_rel
        except MissingInclude as exc:
            fallback = req_rel or (conda_rel if conda and conda.pip_items else None)
            if fallback is None:
                raise
            warnings.append(f"{venv_rel}:{exc.line}: {exc.message}; using {fallback} instead")
            reader = RequirementsReader(root)
    if not source and req_rel:
        source = req_rel
        reader.read_file(root / req_rel)
    elif not source and conda is not None and conda_rel:
        source = conda_rel
        for text, origin in conda.pip_items:
            reader.read_line(text, origin, root / conda_rel)
    return reader.result, build, source


def _cross_check_conda(
    root: Path, files: _Files, result: ParsedRequirements, source: str, warnings: list[str]
) -> None:
    """The conda pip list against what will be installed: each differing pin is a warning."""
    conda, conda_rel = files.conda, files.conda_rel
    if conda is None or not conda_rel or source == conda_rel or not conda.pip_items:
        return
    other = RequirementsReader(root)
    try:
        for text, origin in conda.pip_items:
            other.read_line(text, origin, root / conda_rel)
    except ModelError as exc:
        warnings.append(f"{conda_rel} is not used and cannot be parsed: {exc}")
        return
    warnings.extend(
        _compare_pins(result.requirements, other.result.requirements, source, conda_rel)
    )
    result.index_options.extend(other.result.index_options)


def _deduplicate(requirements: Sequence[Requirement], warnings: list[str]) -> list[Requirement]:
    """Exact repeats are dropped; the same package listed differently is kept (both apply, as
    pip would) with a warning."""
    seen: dict[str, Requirement] = {}
    out: list[Requirement] = []
    for req in requirements:
        key = req.name + str(sorted(req.parsed.extras)) + str(req.parsed.marker)
        if key in seen:
            if seen[key].text != req.text:
                warnings.append(
                    f"{req.origin}: {req.name} is listed again ({req.text}, first "
                    f"{seen[key].text} at {seen[key].origin}); both apply"
                )
            else:
                continue
        seen[key] = req
        out.append(req)
    return out


def read_env(model: ModelSpec) -> EnvSpec:
    """Read the model's environment files into one :class:`EnvSpec` (see the module docstring)."""
    pyfunc = model.pyfunc
    if pyfunc is None:
        names = ", ".join(model.flavor_names)
        raise ModelError(
            f"no python_function flavor (flavors: {names}); envbuild builds environments for "
            "Python models only",
            path=model.mlmodel_path,
            field="flavors",
            hint="this model must be served by its own runtime (Java, R, ...)",
        )
    root = model.path
    warnings: list[str] = []
    files = _find_files(model, pyfunc, warnings)
    python = _choose_python(model, pyfunc, files, warnings)
    result, build, source = _choose_requirements(root, files, warnings)
    _cross_check_conda(root, files, result, source, warnings)
    for opt in result.index_options:
        if is_pytorch_index(opt.value):
            continue  # a labelled pin selects it as an explicit index anyway (accelerator.py)
        warnings.append(
            f"{opt.origin}: {opt.option} {opt.redacted} is ignored (index options in a model's "
            "files are used only with --trust-model-indexes)"
        )
    for line, origin in result.ignored_options:
        warnings.append(f"{origin}: option {redact(line)!r} is ignored")
    requirements = _deduplicate(result.requirements, warnings)
    conda = files.conda
    listed = [f for f in (files.venv_rel, files.req_rel, files.conda_rel) if f]
    return EnvSpec(
        model_path=root,
        python=python,
        requirements=tuple(requirements),
        constraints=tuple(result.constraints),
        build_requirements=tuple(build),
        conda_dependencies=tuple(conda.dependencies) if conda else (),
        channels=tuple(conda.channels) if conda else (),
        index_options=tuple(result.index_options),
        source=source,
        files=tuple(dict.fromkeys(listed + result.files)),
        warnings=tuple(warnings),
    )


def virtualenv_warnings(env: EnvSpec) -> list[str]:
    """What a virtualenv of this model lacks: the conda packages of ``conda.yaml`` (said by the
    kinds that build one, when ``conda.yaml`` is where the requirements come from)."""
    conda_like = [
        d
        for d in env.conda_dependencies
        if canonicalize_name(d.name) not in CONDA_TOOLING and not d.name.startswith(("_", "lib"))
    ]
    if not conda_like or not any(d.origin.file == env.source for d in env.conda_dependencies):
        return []
    shown = ", ".join(d.spec for d in conda_like[:5]) + (" ..." if len(conda_like) > 5 else "")
    return [
        f"{env.source}: conda packages ({shown}) are not installed in a virtualenv; list them "
        "under pip: or use --kind conda"
    ]

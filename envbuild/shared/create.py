"""Making a version of a shared environment: built from a lock (resolved from models or a
requirements file, or given), or registered as it is (a prefix, an image).

Everything happens inside the registry's publish of that version (``store.Registry.create``):
resolving, installing, asking the environment what it holds, writing the metadata. A second
``create`` of the same version finds it being created and stops at once; a failure leaves
nothing behind.

* **Built** (``--from``, ``-r``, ``--lock``): a relocatable virtualenv in the version's folder
  (``env/``), holding exactly the lock, which is kept beside it (``pylock.toml``). The lock is
  for this machine's platform and the chosen Python: ``--python`` (a version to find or an
  interpreter), else the models' Python, else (``-r``) the newest interpreter found, else
  (``--lock``) the lock's own. Index options inside a requirements file are reported and
  ignored, as in a model's files; envbuild's index settings apply.
* **Registered** (``--prefix``, ``--image``): nothing is installed or changed; what is there is
  recorded by asking the environment's own interpreter (``probe.py``). An image is pinned by its
  id, so a tag moved later does not change the version.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from envbuild.__about__ import __version__
from envbuild.envspec import EnvSpec, PythonRequest, read_env
from envbuild.errors import BuildError, ResolutionError, UsageError
from envbuild.lock.pylock import PYLOCK_NAME, Lock, read_lock
from envbuild.model import load_model
from envbuild.python import Interpreter, choose_interpreter, find_interpreter, looks_like_version
from envbuild.requirements import RequirementsReader
from envbuild.shared.record import IMAGE, PREFIX, Installed, SharedEnvironment
from envbuild.shared.store import Registry
from envbuild.shared.union import Member, union_env, union_failure
from envbuild.shared.wanted import model_requirements
from envbuild.target import Target, host_platform, parse_python, python_minor

Progress = Callable[[str], None]


@dataclass(frozen=True)
class CreateOptions:
    """The knobs of ``environments create``."""

    python: str | None = None  # X.Y[.Z] or an interpreter path (built); X.Y to check (registered)
    installer: str = "uv"
    compile_bytecode: bool = False
    offline: bool = False
    strict_python: bool = False


def _now() -> str:
    """RFC 3339 UTC with microseconds: versions sort by it (``NAME`` alone is the newest)."""
    stamp = datetime.now(timezone.utc).isoformat(timespec="microseconds")
    return stamp.replace("+00:00", "Z")


def _record(
    name: str,
    version: str,
    *,
    runs_in: str,
    managed: bool,
    source: Mapping[str, Any],
    installed: Installed,
    **fields: Any,
) -> SharedEnvironment:
    return SharedEnvironment(
        name=name,
        version=version,
        runs_in=runs_in,
        managed=managed,
        created=_now(),
        envbuild_version=__version__,
        source=dict(source),
        installed=installed,
        **fields,
    )


# ---------------------------------------------------------------------------------------------
# built from a lock


def _interpreter(env: EnvSpec, options: CreateOptions, warnings: list[str]) -> Interpreter:
    return choose_interpreter(env, options.python, strict=options.strict_python, warnings=warnings)


def _target(env: EnvSpec, interpreter: Interpreter) -> Target:
    return Target.for_interpreter(env, interpreter.version)


def _resolve(
    env: EnvSpec, target: Target, options: CreateOptions, on_progress: Progress | None
) -> Lock:
    from envbuild.lock.uv import resolve

    return resolve(env, target, offline=options.offline, on_progress=on_progress)


def _build(
    registry: Registry,
    name: str,
    version: str,
    make_lock: Callable[[], tuple[Lock, Interpreter, dict[str, Any]]],
    options: CreateOptions,
    on_progress: Progress | None,
) -> SharedEnvironment:
    from envbuild.envs.registry import SHARED_KIND
    from envbuild.envs.venv import env_python, install_venv, venv_environment
    from envbuild.shared.probe import probe_process

    final = registry.folder / name / version

    def build(folder: Path) -> SharedEnvironment:
        lock, interpreter, source = make_lock()
        if on_progress:
            on_progress(f"installing {len(lock.packages)} package(s) into {name}:{version}")
        prefix = folder / "env"
        install_venv(
            prefix,
            lock,
            interpreter,
            installer=options.installer,
            compile_bytecode=options.compile_bytecode,
            offline=options.offline,
            on_line=(lambda line: on_progress(line.strip())) if on_progress else None,
        )
        lock.write(folder / PYLOCK_NAME)
        environment = venv_environment(
            prefix,
            key=f"{name}:{version}",
            lock_digest=lock.digest,
            version=interpreter.version,
            kind=SHARED_KIND,
        )
        if on_progress:
            on_progress("recording what is installed")
        installed = probe_process(environment, BuildError)
        return _record(
            name,
            version,
            runs_in=PREFIX,
            managed=True,
            source={**source, "interpreter": interpreter.path, "built_with": "venv"},
            installed=installed,
            prefix=str(final / "env"),
            python=str(env_python(final / "env")),
            lock=PYLOCK_NAME,
            lock_digest=lock.digest,
            folder=final,
        )

    return registry.create(name, version, build)


def requirements_env(path: Path, python: PythonRequest | None) -> EnvSpec:
    """A requirements file (and what it includes, inside its folder) as an EnvSpec."""
    if not path.is_file():
        raise UsageError("requirements file not found", path=path, field="-r")
    root = path.resolve().parent
    reader = RequirementsReader(root)
    reader.read_file(path.resolve())
    result = reader.result
    warnings = [
        f"{opt.origin}: {opt.option} {opt.redacted} is ignored (set the index in envbuild's "
        "settings: UV_INDEX_URL / UV_EXTRA_INDEX_URL, or pip's)"
        for opt in result.index_options
    ]
    warnings += [f"{origin}: option {line!r} is ignored" for line, origin in result.ignored_options]
    return EnvSpec(
        model_path=root,
        python=python,
        requirements=tuple(result.requirements),
        constraints=tuple(result.constraints),
        build_requirements=(),
        conda_dependencies=(),
        channels=(),
        index_options=tuple(result.index_options),
        source=path.name,
        files=tuple(result.files),
        warnings=tuple(warnings),
    )


def from_requirements(
    registry: Registry,
    name: str,
    version: str,
    path: Path,
    options: CreateOptions,
    *,
    warnings: list[str],
    on_progress: Progress | None = None,
) -> SharedEnvironment:
    env = requirements_env(path, None)
    warnings.extend(env.warnings)

    def make_lock() -> tuple[Lock, Interpreter, dict[str, Any]]:
        interpreter = _interpreter(env, options, warnings)
        lock = _resolve(env, _target(env, interpreter), options, on_progress)
        source = {
            "from": "requirements",
            "file": str(path.resolve()),
            "requirements": [r.text for r in env.requirements],
        }
        return lock, interpreter, source

    return _build(registry, name, version, make_lock, options, on_progress)


def from_lock(
    registry: Registry,
    name: str,
    version: str,
    path: Path,
    options: CreateOptions,
    *,
    warnings: list[str],
    on_progress: Progress | None = None,
) -> SharedEnvironment:
    lock = read_lock(path)
    host = host_platform()
    if host is not None and host.name not in lock.platforms:
        raise UsageError(
            f"the lock targets {', '.join(lock.platforms)}, not this machine's {host.name}",
            path=path,
            field="--lock",
            hint=f"lock for it too: --platform +{host.name}",
        )

    def make_lock() -> tuple[Lock, Interpreter, dict[str, Any]]:
        wanted = options.python or lock.python
        if looks_like_version(wanted):
            interpreter = find_interpreter(
                parse_python(wanted), strict=options.strict_python, warnings=warnings
            )
        else:
            from envbuild.python import describe

            interpreter = describe(wanted)
        if python_minor(interpreter.version) != lock.python_minor:
            raise UsageError(
                f"the lock is for Python {lock.python}, the interpreter is {interpreter.version} "
                f"({interpreter.path})",
                path=path,
                field="--python",
            )
        source = {"from": "lock", "file": str(path.resolve()), "digest": lock.digest}
        return lock, interpreter, source

    return _build(registry, name, version, make_lock, options, on_progress)


def from_models(
    registry: Registry,
    name: str,
    version: str,
    models: Sequence[str],
    options: CreateOptions,
    *,
    warnings: list[str],
    on_progress: Progress | None = None,
) -> SharedEnvironment:
    members = []
    for label in models:
        spec = load_model(label)
        env = read_env(spec)
        members.append(Member(label, spec, env, model_requirements(env)))
    union = union_env(members, options.python)
    warnings.extend(union.warnings)

    def make_lock() -> tuple[Lock, Interpreter, dict[str, Any]]:
        interpreter = _interpreter(union, options, warnings)
        target = _target(union, interpreter)
        try:
            lock = _resolve(union, target, options, on_progress)
        except ResolutionError as exc:
            raise union_failure(exc, union, members) from None
        source = {
            "from": "models",
            "models": [
                {
                    "path": str(m.spec.path),
                    "model_uuid": m.spec.model_uuid,
                    "run_id": m.spec.run_id,
                    "requirements_from": m.wanted.source,
                }
                for m in members
            ],
        }
        return lock, interpreter, source

    return _build(registry, name, version, make_lock, options, on_progress)


# ---------------------------------------------------------------------------------------------
# registered as they are


def _check_python(installed: Installed, options: CreateOptions, where: str) -> None:
    if options.python and looks_like_version(options.python):
        wanted = parse_python(options.python)
        have = installed.python_version
        if not (have == wanted or python_minor(have) == wanted):
            raise UsageError(f"{where} has Python {have}, not {wanted}", field="--python")


def prefix_python(prefix: Path) -> Path:
    """The interpreter of a prefix: ``bin/python3``, else ``bin/python`` (``Scripts`` on
    Windows)."""
    names = ("Scripts/python.exe",) if os.name == "nt" else ("bin/python3", "bin/python")
    for name in names:
        candidate = prefix / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise UsageError(
        f"no Python interpreter in the prefix (looked for {', '.join(names)})",
        path=prefix,
        field="--prefix",
        hint="give the folder of a virtualenv or conda environment (the one holding bin/)",
    )


def register_prefix(
    registry: Registry, name: str, version: str, path: Path, options: CreateOptions
) -> SharedEnvironment:
    from envbuild.envs.registry import SHARED_KIND
    from envbuild.shared.probe import probe_process
    from envbuild.shared.use import registered_environment

    if not path.is_dir():
        raise UsageError("the prefix is not a folder", path=path, field="--prefix")
    prefix = Path(os.path.abspath(path))
    python = prefix_python(prefix)

    def build(folder: Path) -> SharedEnvironment:
        environment = registered_environment(prefix, python, SHARED_KIND, "", f"{name}:{version}")
        installed = probe_process(environment, BuildError)
        _check_python(installed, options, str(prefix))
        return _record(
            name,
            version,
            runs_in=PREFIX,
            managed=False,
            source={"from": "prefix", "path": str(prefix)},
            installed=installed,
            prefix=str(prefix),
            python=str(python),
            folder=registry.folder / name / version,
        )

    return registry.create(name, version, build)


def register_image(
    registry: Registry, name: str, version: str, image: str, options: CreateOptions
) -> SharedEnvironment:
    from envbuild.image import engine
    from envbuild.shared.probe import probe_image

    found = engine.find_image(engine.client(), image)
    if found is None:
        raise UsageError(
            f"no image {image!r} on this Docker engine",
            field="--image",
            hint="pull or build it first (`docker images` lists what is there)",
        )
    image_id = str(found.id)

    def build(folder: Path) -> SharedEnvironment:
        installed = probe_image(image_id, BuildError)
        _check_python(installed, options, image)
        return _record(
            name,
            version,
            runs_in=IMAGE,
            managed=False,
            source={"from": "image", "image": image},
            installed=installed,
            python=installed.executable,
            image=image,
            image_id=image_id,
            folder=registry.folder / name / version,
        )

    return registry.create(name, version, build)


def refuse_conda(path: Path) -> SharedEnvironment:
    """``--conda``: this envbuild has no conda kind in its registry of kinds yet."""
    raise UsageError(
        "building a shared environment from conda.yaml needs the conda kind, which this "
        "envbuild does not have",
        path=path,
        field="--conda",
        hint="create the conda environment with conda or mamba and register it as it is: "
        "envbuild environments create NAME --prefix PATH",
    )

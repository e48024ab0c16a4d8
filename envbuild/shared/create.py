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
  ignored, as in a model's files; envbuild's index settings apply. ``--as-image`` builds a
  Docker image instead (``image/environment.py``: the lock for ``linux/<arch>`` installed as in
  a model's image, no model), pinned by id like a registered one, its tag removed with it.
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
from envbuild.target import Platform, Target, host_platform, parse_python, python_minor

Progress = Callable[[str], None]


@dataclass(frozen=True)
class CreateOptions:
    """The knobs of ``environments create``."""

    python: str | None = None  # X.Y[.Z] or an interpreter path (built); X.Y to check (registered)
    installer: str = "uv"
    compile_bytecode: bool = False
    offline: bool = False
    strict_python: bool = False
    as_image: bool = False  # build a Docker image holding the lock instead of a virtualenv
    base_image: str | None = None  # as_image: instead of python:X.Y-slim
    ca_cert: Path | None = None  # as_image: the CA bundle the build stage trusts
    network: str = "host"  # as_image: the build's RUN steps' network


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


@dataclass(frozen=True)
class _Locked:
    """What a built environment is built from: the lock, the interpreter (a virtualenv's base;
    None for an image), and how the lock was made (for the metadata)."""

    lock: Lock
    interpreter: Interpreter | None
    source: dict[str, Any]


def _target(
    env: EnvSpec, options: CreateOptions, warnings: list[str]
) -> tuple[Target, Interpreter | None]:
    """What to resolve for: this machine's platform and the interpreter chosen for a
    virtualenv; ``linux/<arch>`` and the Python asked for (none need be installed) for an image."""
    if options.as_image:
        from envbuild.image.plan import image_platform

        if options.python and not looks_like_version(options.python):
            raise UsageError("--as-image takes --python X.Y[.Z], not a path", field="--python")
        python = options.python or (env.python.version if env.python else None)
        python = python or find_interpreter(None).version
        return Target(parse_python(python), (image_platform(None),), not options.python), None
    interpreter = choose_interpreter(
        env, options.python, strict=options.strict_python, warnings=warnings
    )
    return Target.for_interpreter(env, interpreter.version), interpreter


def _resolve(
    env: EnvSpec, target: Target, options: CreateOptions, on_progress: Progress | None
) -> Lock:
    from envbuild.lock.uv import resolve

    return resolve(env, target, offline=options.offline, on_progress=on_progress)


def _build(
    registry: Registry,
    name: str,
    version: str,
    make_lock: Callable[[], _Locked],
    options: CreateOptions,
    on_progress: Progress | None,
) -> SharedEnvironment:
    final = registry.folder / name / version

    def build(folder: Path) -> SharedEnvironment:
        locked = make_lock()
        locked.lock.write(folder / PYLOCK_NAME)
        if options.as_image:
            return _built_image(name, version, locked, options, final, on_progress)
        assert locked.interpreter is not None
        return _built_venv(
            name, version, locked, locked.interpreter, options, folder, final, on_progress
        )

    return registry.create(name, version, build)


def _built_venv(
    name: str,
    version: str,
    locked: _Locked,
    interpreter: Interpreter,
    options: CreateOptions,
    folder: Path,
    final: Path,
    on_progress: Progress | None,
) -> SharedEnvironment:
    from envbuild.envs.registry import SHARED_KIND
    from envbuild.envs.venv import env_python, install_venv, venv_environment
    from envbuild.shared.probe import probe_process

    lock = locked.lock
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
        source={**locked.source, "interpreter": interpreter.path, "built_with": "venv"},
        installed=installed,
        prefix=str(final / "env"),
        python=str(env_python(final / "env")),
        lock=PYLOCK_NAME,
        lock_digest=lock.digest,
        folder=final,
    )


def _built_image(
    name: str,
    version: str,
    locked: _Locked,
    options: CreateOptions,
    final: Path,
    on_progress: Progress | None,
) -> SharedEnvironment:
    from envbuild.image.environment import build_environment_image, plan_environment_image
    from envbuild.shared.probe import probe_image

    plan = plan_environment_image(
        name,
        version,
        locked.lock,
        base_image=options.base_image,
        ca_cert=options.ca_cert,
        network=options.network,
    )
    if on_progress:
        on_progress(f"building the image {plan.tag}")
    image_id, _ = build_environment_image(plan, on_progress=on_progress)
    installed = probe_image(image_id, BuildError)
    return _record(
        name,
        version,
        runs_in=IMAGE,
        managed=True,
        source={**locked.source, "base_image": plan.base_image, "built_with": "docker"},
        installed=installed,
        python=installed.executable,
        image=plan.tag,
        image_id=image_id,
        lock=PYLOCK_NAME,
        lock_digest=locked.lock.digest,
        folder=final,
    )


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

    def make_lock() -> _Locked:
        target, interpreter = _target(env, options, warnings)
        lock = _resolve(env, target, options, on_progress)
        source = {
            "from": "requirements",
            "file": str(path.resolve()),
            "requirements": [r.text for r in env.requirements],
        }
        return _Locked(lock, interpreter, source)

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
    if options.as_image:
        from envbuild.image.plan import image_platform

        where: Platform | None = image_platform(None)
    else:
        where = host_platform()
    if where is not None and where.name not in lock.platforms:
        raise UsageError(
            f"the lock targets {', '.join(lock.platforms)}, not {where.name}",
            path=path,
            field="--lock",
            hint=f"lock for it too: --platform +{where.name}",
        )
    source = {"from": "lock", "file": str(path.resolve()), "digest": lock.digest}

    def make_lock() -> _Locked:
        wanted = options.python or lock.python
        as_version = options.as_image or looks_like_version(wanted)
        if as_version and python_minor(parse_python(wanted)) != lock.python_minor:
            raise UsageError(
                f"the lock is for Python {lock.python}, not {wanted}",
                path=path,
                field="--python",
            )
        if options.as_image:
            return _Locked(lock, None, source)
        if looks_like_version(wanted):
            interpreter = find_interpreter(wanted, strict=options.strict_python, warnings=warnings)
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
        return _Locked(lock, interpreter, source)

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

    def make_lock() -> _Locked:
        target, interpreter = _target(union, options, warnings)
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
        return _Locked(lock, interpreter, source)

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


def forget(registry: Registry, record: SharedEnvironment) -> list[str]:
    """Remove a version: what envbuild built goes with it (its virtualenv is in the version's
    folder; its image is untagged), what was registered stays. Returns warnings."""
    registry.remove(record)
    if not (record.managed and record.runs_in == IMAGE and record.image):
        return []
    from envbuild.image.environment import remove_environment_image

    problem = remove_environment_image(record.image)
    return [f"{record.ref}: its image {record.image} was kept: {problem}"] if problem else []

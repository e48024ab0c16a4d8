"""The ``venv`` kind: a virtualenv holding exactly a lock's packages, in the content-addressed cache.

Key = the lock's *content* digest (its packages and targets, not envbuild's notes) + the
interpreter's identity, so two models whose requirements resolve to the same packages share one
environment and a different interpreter never reuses it. The environment is created in a
temporary folder and published by atomic rename (``cache.publish``), which is why it is made
*relocatable*: uv writes ``relocatable = true`` and relative launchers, so nothing in it points at
the temporary path. envbuild installs nothing of its own into it (no pip, no setuptools, no
runner): the runner is executed from envbuild's package by path.

How packages are installed: see ``envbuild/uv_install.py`` (through the index by name, version
and hash when every package comes from one, else ``uv pip sync`` of the pylock); exactly the
lock's packages, with hashes enforced.

Bytecode: by default nothing is compiled at build time; the runner's first run writes ``.pyc``
for the modules really imported (Python writes them atomically, so concurrent first runs are
safe). ``compile_bytecode=True`` compiles everything up front (what images do).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from envbuild import proc
from envbuild.cache import publish, read_marker
from envbuild.envs.base import BuildOptions, Plan, Progress
from envbuild.envs.process import ProcessEnvironment
from envbuild.envspec import EnvSpec, virtualenv_warnings
from envbuild.errors import BuildError, UsageError
from envbuild.lock.pylock import Lock
from envbuild.lock.select import LockChoice
from envbuild.model import ModelSpec
from envbuild.python import Interpreter, choose_interpreter
from envbuild.target import Target
from envbuild.uv_install import install_lock

if TYPE_CHECKING:
    from envbuild.image.plan import ImageOptions
    from envbuild.lock.request import LockRequest, PipLocks

LAYOUT = "venv-2"  # bump when the way environments are built changes
LOCK_NAME = "pylock.envbuild.toml"
INSTALLERS = ("uv", "pip")


def env_key(lock_digest: str, interpreter: Interpreter) -> str:
    """The cache key of an environment: what its content depends on, and nothing else."""
    blob = f"{LAYOUT}\n{lock_digest}\n{interpreter.identity}".encode()
    return hashlib.sha256(blob).hexdigest()[:32]


def bin_dir(prefix: Path) -> Path:
    return prefix / ("Scripts" if os.name == "nt" else "bin")


def env_python(prefix: Path) -> Path:
    return bin_dir(prefix) / ("python.exe" if os.name == "nt" else "python")


def build_venv(
    lock: Lock,
    interpreter: Interpreter,
    *,
    installer: str = "uv",
    compile_bytecode: bool = False,
    offline: bool = False,
    torch_index_url: str | None = None,
    on_line: Callable[[str], None] | None = None,
    on_wait: Callable[[], None] | None = None,
) -> ProcessEnvironment:
    """Materialize (or reuse) the virtualenv holding exactly ``lock`` on ``interpreter``."""
    if installer not in INSTALLERS:
        raise BuildError(f"unknown installer {installer!r} (expected uv or pip)")
    key = env_key(lock.content_digest or lock.digest, interpreter)
    started = time.monotonic()

    def build(tmp: Path) -> dict[str, str]:
        install_venv(
            tmp,
            lock,
            interpreter,
            installer=installer,
            compile_bytecode=compile_bytecode,
            offline=offline,
            torch_index_url=torch_index_url,
            on_line=on_line,
        )
        return {
            "lock_digest": lock.digest,
            "interpreter": interpreter.path,
            "python_version": interpreter.version,
            "installer": installer,
        }

    path, built = publish("envs", key, build, on_wait=on_wait)
    marker = read_marker(path) or {}
    return venv_environment(
        path,
        key=key,
        lock_digest=lock.digest,
        version=str(marker.get("python_version", interpreter.version)),
        built=built,
        seconds=time.monotonic() - started,
        details={
            "installer": str(marker.get("installer", installer)),
            "base_python": interpreter.path,
        },
    )


def install_venv(
    folder: Path,
    lock: Lock,
    interpreter: Interpreter,
    *,
    installer: str = "uv",
    compile_bytecode: bool = False,
    offline: bool = False,
    torch_index_url: str | None = None,
    on_line: Callable[[str], None] | None = None,
) -> None:
    """Create a relocatable virtualenv in ``folder`` holding exactly ``lock``: the cache's
    builds, and the shared environments envbuild builds into its registry."""
    if installer not in INSTALLERS:
        raise BuildError(f"unknown installer {installer!r} (expected uv or pip)")
    if installer == "uv":
        _build_with_uv(
            folder, lock, interpreter, compile_bytecode, offline, on_line, torch_index_url
        )
    else:
        _build_with_pip(folder, lock, interpreter, compile_bytecode, on_line)


def venv_environment(
    path: Path,
    *,
    key: str,
    lock_digest: str | None,
    version: str,
    built: bool = False,
    seconds: float = 0.0,
    details: dict[str, str] | None = None,
    kind: str = "venv",
) -> ProcessEnvironment:
    """A virtualenv at ``path`` as an Environment (also used for registered shared venvs)."""
    return ProcessEnvironment(
        kind=kind,
        path=path,
        python=env_python(path),
        key=key,
        lock_digest=lock_digest,
        interpreter_version=version,
        built=built,
        seconds=seconds,
        details=details or {},
        variables={"VIRTUAL_ENV": str(path)},
        path_entries=(str(bin_dir(path)),),
        write_bytecode=True,
    )


def _build_with_uv(
    tmp: Path,
    lock: Lock,
    interpreter: Interpreter,
    compile_bytecode: bool,
    offline: bool,
    on_line: Callable[[str], None] | None,
    torch_index_url: str | None = None,
) -> None:
    uv = proc.uv_bin()
    proc.run(
        [
            uv,
            "venv",
            "--quiet",
            "--clear",
            "--relocatable",
            "--no-project",
            "--python",
            interpreter.path,
            str(tmp),
        ],
        what="creating the virtualenv",
        error=BuildError,
    )
    (tmp / LOCK_NAME).write_text(lock.text, encoding="utf-8")
    install_lock(
        env_python(tmp),
        lock,
        tmp,
        sync=True,
        compile_bytecode=compile_bytecode,
        offline=offline,
        on_line=on_line,
        torch_index_url=torch_index_url,
    )


def _build_with_pip(
    tmp: Path,
    lock: Lock,
    interpreter: Interpreter,
    compile_bytecode: bool,
    on_line: Callable[[str], None] | None,
) -> None:
    """Fallback installer: stdlib venv without pip, driven by the pip that runs envbuild."""
    proc.run(
        [interpreter.path, "-m", "venv", "--without-pip", str(tmp)],
        what="creating the virtualenv",
        error=BuildError,
    )
    (tmp / LOCK_NAME).write_text(lock.text, encoding="utf-8")
    if not lock.packages:
        return
    reqs = tmp / "envbuild-requirements.txt"
    reqs.write_text(lock.requirements_txt(), encoding="utf-8")
    args = [
        proc.python_exe(),
        "-m",
        "pip",
        "--python",
        str(env_python(tmp)),
        "install",
        "--no-deps",
        "--require-hashes",
        "--disable-pip-version-check",
        "--no-input",
        "--progress-bar",
        "off",
        "-r",
        str(reqs),
    ]
    if not compile_bytecode:
        args.append("--no-compile")
    proc.run(
        args, what="installing the locked packages with pip", error=BuildError, on_line=on_line
    )
    reqs.unlink()
    _fix_shebangs(tmp)


def _fix_shebangs(tmp: Path) -> None:
    """pip writes absolute shebangs into the temporary folder; make them relative launchers."""
    bindir = bin_dir(tmp)
    for script in bindir.iterdir():
        if not script.is_file() or script.is_symlink():
            continue
        try:
            head = script.read_bytes()[:256]
        except OSError:
            continue
        first = head.split(b"\n", 1)[0]
        if first.startswith(b"#!") and str(tmp).encode() in first:
            body = script.read_bytes().split(b"\n", 1)[1]
            launcher = b'#!/bin/sh\n"exec" "$(dirname "$(readlink -f "$0")")/python" "$0" "$@"\n'
            script.write_bytes(launcher + body)


class VenvBackend:
    """A cached virtualenv built from the lock on a discovered interpreter (the default)."""

    name: ClassVar[str] = "venv"

    def can_build(self, env: EnvSpec) -> str | None:
        from envbuild.errors import InterpreterNotFound
        from envbuild.python import find_interpreter

        version = env.python.version if env.python else None
        try:
            find_interpreter(version)
        except InterpreterNotFound as exc:
            return exc.message
        return None

    def plan(self, env: EnvSpec, options: BuildOptions) -> Plan:
        warnings: list[str] = []
        interpreter = choose_interpreter(
            env,
            options.python,
            strict=options.strict_python,
            install=options.install_python,
            warnings=warnings,
        )
        target = Target.for_interpreter(env, interpreter.version, accelerator=options.accelerator)
        return Plan(self.name, target, interpreter, (*warnings, *virtualenv_warnings(env)))

    def build(
        self,
        plan: Plan,
        model: ModelSpec,
        env: EnvSpec,
        lock: LockChoice | None,
        options: BuildOptions,
        *,
        on_progress: Progress | None = None,
    ) -> ProcessEnvironment:
        if lock is None:
            raise UsageError("the venv kind needs a lock")

        def on_line(line: str) -> None:
            if on_progress and line.strip():
                on_progress(line.strip())

        if on_progress:
            on_progress("building the environment")
        return build_venv(
            lock.lock,
            plan.interpreter,
            installer=options.installer,
            compile_bytecode=options.compile_bytecode,
            offline=options.offline,
            torch_index_url=options.torch_index_url,
            on_line=on_line,
            on_wait=(lambda: on_progress("waiting for another build of this environment"))
            if on_progress
            else None,
        )

    def lock_files(self, model: ModelSpec) -> tuple[Path, ...]:
        from envbuild.lock.pylock import PYLOCK_NAME

        return (model.path / PYLOCK_NAME,)

    def lock(
        self,
        model: ModelSpec,
        env: EnvSpec,
        request: LockRequest,
        *,
        check: bool = False,
        on_progress: Progress | None = None,
    ) -> PipLocks:
        """``envbuild lock``: the model's ``pylock.toml`` (or ``-o``), written or checked."""
        from envbuild.lock import check_lock, lock_model
        from envbuild.lock.pylock import PYLOCK_NAME
        from envbuild.lock.request import PipLocks

        platforms = request.platforms or None
        output = request.output
        if output is None and request.folder is not None:
            output = str(Path(request.folder) / PYLOCK_NAME)
        if check:
            return PipLocks(
                check_lock(model, output, python=request.python, platforms=platforms, env=env)
            )
        return PipLocks(
            lock_model(
                model,
                output=output,
                python=request.python,
                platforms=platforms,
                accelerator=request.accelerator,
                torch_index_url=request.torch_index_url,
                as_of=request.as_of,
                offline=request.offline,
                index_url=request.index_url,
                extra_index_urls=request.extra_index_urls,
                find_links=request.find_links,
                trust_model_indexes=request.trust_model_indexes,
                env=env,
                on_progress=on_progress,
            )
        )

    def image_target(
        self, env: EnvSpec, options: ImageOptions, *, on_progress: Progress | None = None
    ) -> Target:
        """A venv image: the model's Python (or ``--python``) on ``linux/<arch>``."""
        from envbuild.image.plan import image_target

        return image_target(env, options)

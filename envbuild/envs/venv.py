"""The ``venv`` kind: a virtualenv holding exactly a lock's packages, in the content-addressed cache.

Key = lock digest + interpreter identity, so two models with the same lock share one environment
and a different interpreter never reuses it. The environment is created in a temporary folder and
published by atomic rename (``cache.publish``), which is why it is made *relocatable*: uv writes
``relocatable = true`` and relative launchers, so nothing in it points at the temporary path.
envbuild installs nothing of its own into it (no pip, no setuptools, no runner): the runner is
executed from envbuild's package by path.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path

from envbuild import proc
from envbuild.cache import publish, read_marker
from envbuild.envs import Environment
from envbuild.errors import BuildError
from envbuild.python import Interpreter

LAYOUT = "venv-1"  # bump when the way environments are built changes
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
    lock_text: str,
    lock_digest: str,
    interpreter: Interpreter,
    *,
    installer: str = "uv",
    compile_bytecode: bool = True,
    on_line: Callable[[str], None] | None = None,
    on_wait: Callable[[], None] | None = None,
) -> Environment:
    """Materialize (or reuse) the virtualenv for ``lock_text`` on ``interpreter``."""
    if installer not in INSTALLERS:
        raise BuildError(f"unknown installer {installer!r} (expected uv or pip)")
    key = env_key(lock_digest, interpreter)
    started = time.monotonic()

    def build(tmp: Path) -> dict[str, str]:
        if installer == "uv":
            _build_with_uv(tmp, lock_text, interpreter, compile_bytecode, on_line)
        else:
            _build_with_pip(tmp, lock_text, interpreter, compile_bytecode, on_line)
        return {
            "lock_digest": lock_digest,
            "interpreter": interpreter.path,
            "python_version": interpreter.version,
            "installer": installer,
        }

    path, built = publish("envs", key, build, on_wait=on_wait)
    marker = read_marker(path) or {}
    return Environment(
        kind="venv",
        path=path,
        python=env_python(path),
        key=key,
        lock_digest=lock_digest,
        interpreter_version=str(marker.get("python_version", interpreter.version)),
        built=built,
        seconds=time.monotonic() - started,
        details={
            "installer": str(marker.get("installer", installer)),
            "base_python": interpreter.path,
        },
    )


def _build_with_uv(
    tmp: Path,
    lock_text: str,
    interpreter: Interpreter,
    compile_bytecode: bool,
    on_line: Callable[[str], None] | None,
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
    (tmp / LOCK_NAME).write_text(lock_text, encoding="utf-8")
    args = [uv, "pip", "sync", "--python", str(env_python(tmp)), "--require-hashes"]
    args += ["--preview-features", "pylock"]  # PEP 751 input is "preview" in uv 0.13
    if compile_bytecode:
        args.append("--compile-bytecode")
    args.append(str(tmp / LOCK_NAME))
    proc.run(
        args,
        what="installing the locked packages",
        error=BuildError,
        on_line=on_line,
        hint="the package named above failed to install; the log has uv's full output",
    )


def _build_with_pip(
    tmp: Path,
    lock_text: str,
    interpreter: Interpreter,
    compile_bytecode: bool,
    on_line: Callable[[str], None] | None,
) -> None:
    """Fallback installer: stdlib venv without pip, driven by the pip that runs envbuild."""
    from envbuild.lock import lock_from_text

    proc.run(
        [interpreter.path, "-m", "venv", "--without-pip", str(tmp)],
        what="creating the virtualenv",
        error=BuildError,
    )
    (tmp / LOCK_NAME).write_text(lock_text, encoding="utf-8")
    reqs = tmp / "envbuild-requirements.txt"
    reqs.write_text(lock_from_text(lock_text).requirements_txt(), encoding="utf-8")
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

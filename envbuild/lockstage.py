"""Which lock an environment is built from: the model's own, or one envbuild resolves and caches.

The model's ``pylock.toml`` wins when it still matches the model's requirements (same input
digest), targets this machine's platform and the interpreter's ``X.Y``. Otherwise envbuild resolves
one into its cache — never into the model folder, which may be read-only or under version control —
keyed by everything the resolution depends on, so the next run resolves nothing. A stale model
lock is a warning here (``envbuild reproduce`` and ``lock --check`` make it an error).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from envbuild.cache import publish
from envbuild.envspec import EnvSpec
from envbuild.errors import LockMismatchError
from envbuild.lock import PYLOCK_NAME, Lock, read_lock
from envbuild.lock import lock as resolve_lock
from envbuild.model import ModelSpec
from envbuild.python import Interpreter
from envbuild.targets import host_platform, python_minor

LOCK_LAYOUT = "lock-1"


def _target_python(env: EnvSpec, interpreter: Interpreter) -> str:
    """Resolve for the model's Python when the interpreter fits it, else for the interpreter."""
    if env.python is not None and env.python.admits(interpreter.version):
        return env.python.version
    return interpreter.version


def model_lock_problem(lk: Lock, env: EnvSpec, interpreter: Interpreter) -> str | None:
    """Why the model's own lock cannot serve this build (None when it can)."""
    if lk.input_digest != env.digest():
        return "it no longer matches the model's requirements"
    host = host_platform()
    if host is not None and host.name not in lk.platforms:
        return f"it targets {', '.join(lk.platforms)}, not {host.name}"
    if lk.python_minor != interpreter.minor:
        return f"it is for Python {lk.python}, the interpreter is {interpreter.version}"
    return None


def obtain_lock(
    model: ModelSpec,
    env: EnvSpec,
    interpreter: Interpreter,
    *,
    offline: bool = False,
    warnings: list[str] | None = None,
    on_progress: Callable[[str], None] | None = None,
) -> tuple[Lock, str]:
    """The lock to build from, and where it came from (``model`` or ``cache``)."""
    own = model.path / PYLOCK_NAME
    if own.is_file():
        try:
            lk = read_lock(own)
        except LockMismatchError as exc:  # foreign or corrupt: not envbuild's to trust
            lk, problem = None, exc.message
        else:
            problem = model_lock_problem(lk, env, interpreter)
        if problem is None and lk is not None:
            return lk, "model"
        if warnings is not None:
            warnings.append(
                f"{PYLOCK_NAME} is not used: {problem}; envbuild resolved its own lock "
                f"(run `envbuild lock {model.path}` to update the model's)"
            )
    python = _target_python(env, interpreter)
    host = host_platform()
    platforms = [host.name] if host is not None else None
    blob = "\n".join([LOCK_LAYOUT, env.digest(), python, ",".join(platforms or ["default"])])
    key = hashlib.sha256(blob.encode()).hexdigest()[:32]

    def build(tmp: Path) -> dict[str, str]:
        if on_progress:
            on_progress(f"resolving {len(env.requirements)} requirements for Python {python}")
        resolve_lock(
            model,
            env=env,
            python=python,
            platforms=platforms,
            offline=offline,
            output=tmp / PYLOCK_NAME,
            on_progress=on_progress,
        )
        return {"python": python, "python_minor": python_minor(python)}

    entry, _ = publish("locks", key, build)
    return read_lock(entry / PYLOCK_NAME), "cache"

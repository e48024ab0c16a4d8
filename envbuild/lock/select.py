"""The one lock policy: which lock an environment or image of a model is built from.

The model's own ``pylock.toml`` wins when it still matches the model's requirements (same input
digest), covers the target's platforms and is for the target's Python ``X.Y``. Otherwise envbuild
resolves one into its cache — never into the model folder, which may be read-only, downloaded or
under version control — keyed by everything the resolution depends on (the requirements, the
target, the index settings, the as-of date), so the next run resolves nothing and a change to
any of them gives a new lock, never a stale one. Every command that builds (env, predict, serve,
run, image, reproduce, and the conda and shared kinds) asks :func:`select_lock`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field

from envbuild.cache import publish
from envbuild.envspec import EnvSpec
from envbuild.errors import LockMismatchError
from envbuild.indexes import IndexConfig, configure
from envbuild.lock.asof import as_of_from_settings
from envbuild.lock.pylock import PYLOCK_NAME, Lock, local_files_warnings, read_lock
from envbuild.model import ModelSpec
from envbuild.target import Target

LOCK_LAYOUT = "lock-2"  # bump when what a cached lock holds changes


@dataclass(frozen=True)
class LockChoice:
    """The lock to build from, where it came from, and why the model's own was not used."""

    lock: Lock
    source: str  # model, cache, given
    reason: str | None = None  # why the model's pylock.toml was not used (None: it was, or none)
    warnings: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, object]:
        return {
            "path": str(self.lock.path) if self.lock.path else None,
            "digest": self.lock.digest,
            "source": self.source,
            "reason": self.reason,
        }


def model_lock_name(target: Target) -> str:
    """The model folder's lock for ``target``: ``pylock.toml``, or the base's pip half
    (``pylock.conda.toml``), which is resolved for another Python and around the base."""
    return target.base.pip_lock_name if target.base is not None else PYLOCK_NAME


def model_lock_problem(lk: Lock, env: EnvSpec, target: Target) -> str | None:
    """Why the model's own lock cannot serve ``target`` (None when it can)."""
    if lk.input_digest != env.digest():
        return "it no longer matches the model's requirements"
    recorded_base = lk.tool.get("base")
    if target.base is None and recorded_base:
        return f"it is the pip half of a {recorded_base} environment"
    if target.base is not None:
        problem = target.base.problem(lk.tool)
        if problem:
            return problem
    missing = [name for name in target.platform_names if name not in lk.platforms]
    if missing:
        return f"it targets {', '.join(lk.platforms)}, not {', '.join(missing)}"
    if lk.python_minor != target.minor:
        return f"it is for Python {lk.python}, the target is Python {target.minor}"
    if target.accelerator and (lk.accelerator or "") != target.accelerator:
        return f"it is for {lk.accelerator or 'the default builds'}, not {target.accelerator}"
    return None


def cache_key(env: EnvSpec, target: Target, indexes: IndexConfig, as_of: str | None) -> str:
    """The cached lock's key: everything a resolution depends on."""
    blob = json.dumps(
        {
            "layout": LOCK_LAYOUT,
            "inputs": env.digest(),
            "target": target.to_dict(),
            "indexes": indexes.fingerprint(),
            "as_of": as_of,
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def select_lock(
    model: ModelSpec,
    env: EnvSpec,
    target: Target,
    *,
    offline: bool = False,
    indexes: IndexConfig | None = None,
    on_progress: Callable[[str], None] | None = None,
) -> LockChoice:
    """The model's own lock when it serves ``target``, else one resolved into (or reused from)
    envbuild's cache."""
    from envbuild.lock.uv import resolve

    if indexes is None:
        indexes = configure(model_options=env.index_options)
    advice = indexes.local_advice()
    own_name = model_lock_name(target)
    own = model.path / own_name
    reason: str | None = None
    if own.is_file():
        try:
            lk: Lock | None = read_lock(own)
        except LockMismatchError as exc:  # foreign or corrupt: not envbuild's to trust
            lk, reason = None, exc.message
        else:
            assert lk is not None
            reason = model_lock_problem(lk, env, target)
        if reason is None and lk is not None:
            return LockChoice(lk, "model", None, tuple(local_files_warnings(lk.packages, advice)))
    as_of = as_of_from_settings()
    key = cache_key(env, target, indexes, as_of)

    def build(tmp: object) -> dict[str, str]:
        from pathlib import Path

        lk = resolve(
            env, target, as_of=as_of, offline=offline, indexes=indexes, on_progress=on_progress
        )
        lk.write(Path(str(tmp)) / PYLOCK_NAME)
        return {"python": target.python, "target": json.dumps(target.to_dict())}

    entry, _ = publish("locks", key, build)
    cached = read_lock(entry / PYLOCK_NAME)
    warnings = list(local_files_warnings(cached.packages, advice))
    if reason is not None:
        platform = ""
        if target.platform_names != ("linux/amd64",):
            platform = f" --platform {','.join(target.platform_names)}"
        if target.base is not None:
            platform = f" {target.base.lock_args}{platform}"
        warnings.insert(
            0,
            f"{own_name} is not used: {reason}; envbuild resolved its own lock for "
            f"{target.describe()} (run `envbuild lock {model.path}{platform}` to update the "
            "model's)",
        )
    return LockChoice(cached, "cache", reason, tuple(warnings))

"""Stage 3: :class:`EnvSpec` + :class:`Target` -> :class:`Lock` (a PEP 751 ``pylock.toml``).

One module per job:

* ``pylock.py``: the :class:`Lock` value, reading and parsing (``read_lock``, ``lock_from_text``);
* ``uv.py``: :func:`resolve`, uv's resolution for a target, merged and canonical;
* ``toml.py``: the canonical TOML writer; ``asof.py``: ``--as-of``;
* ``check.py``: ``--check`` (:func:`verify`), without resolving;
* ``explain.py``: uv's failure as one line naming the model's ``file:line``;
* ``select.py``: the one lock policy (:func:`select_lock`): the model's own lock or a cached one.

:func:`lock_model` and :func:`check_lock` compose them the way ``envbuild lock`` does, for scripts.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from datetime import date, datetime
from pathlib import Path

from envbuild.envspec import EnvSpec, read_env
from envbuild.lock.asof import parse_as_of
from envbuild.lock.check import verify
from envbuild.lock.pylock import (
    PYLOCK_NAME,
    Lock,
    LockedPackage,
    check_file_name,
    lock_from_text,
    read_lock,
)
from envbuild.lock.select import LockChoice, select_lock
from envbuild.lock.uv import resolve
from envbuild.model import ModelSpec, load_model
from envbuild.target import Target

__all__ = [
    "PYLOCK_NAME",
    "Lock",
    "LockChoice",
    "LockedPackage",
    "check_lock",
    "lock_from_text",
    "lock_model",
    "parse_as_of",
    "read_lock",
    "resolve",
    "select_lock",
    "verify",
]


def _specs(
    model: ModelSpec | str | os.PathLike[str], env: EnvSpec | None
) -> tuple[ModelSpec, EnvSpec]:
    spec = model if isinstance(model, ModelSpec) else load_model(model)
    return spec, env if env is not None else read_env(spec)


def lock_model(
    model: ModelSpec | str | os.PathLike[str],
    *,
    output: str | os.PathLike[str] | None = None,
    python: str | None = None,
    platforms: Iterable[str] | None = None,
    accelerator: str | None = None,
    as_of: str | date | datetime | None = None,
    offline: bool = False,
    index_url: str | None = None,
    extra_index_urls: Sequence[str] = (),
    find_links: Sequence[str] = (),
    trust_model_indexes: bool = False,
    torch_index_url: str | None = None,
    write: bool = True,
    env: EnvSpec | None = None,
    on_progress: Callable[[str], None] | None = None,
) -> Lock:
    """What ``envbuild lock MODEL`` does: resolve for the model's Python (or ``python``) on
    ``platforms`` and write ``MODEL/pylock.toml`` (or ``output``) when its bytes change.

    ``write=False`` returns the lock without writing it (``Lock.path`` is then None). An
    existing lock file is only replaced, atomically, once the new one is complete.
    """
    from envbuild.indexes import configure

    spec, env = _specs(model, env)
    target = Target.for_model(env, python=python, platforms=platforms, accelerator=accelerator)
    out_path = Path(output) if output is not None else spec.path / PYLOCK_NAME
    check_file_name(out_path)
    indexes = configure(
        index_url=index_url,
        extra_index_urls=extra_index_urls,
        find_links=find_links,
        model_options=env.index_options,
        trust_model_indexes=trust_model_indexes,
        torch_index_url=torch_index_url,
    )
    lk = resolve(
        env,
        target,
        as_of=parse_as_of(as_of, spec),
        offline=offline,
        indexes=indexes,
        on_progress=on_progress,
    )
    if not write:
        return lk
    return lk.write_changed(out_path)


def check_lock(
    model: ModelSpec | str | os.PathLike[str],
    path: str | os.PathLike[str] | None = None,
    *,
    python: str | None = None,
    platforms: Iterable[str] | None = None,
    env: EnvSpec | None = None,
) -> Lock:
    """What ``envbuild lock --check`` does: read the model's lock (or ``path``) and
    :func:`verify` it against the model's current files; LockMismatchError (exit 3) if not."""
    from envbuild.errors import LockMismatchError
    from envbuild.lock.check import _shown

    spec, env = _specs(model, env)
    target = Path(path) if path is not None else spec.path / PYLOCK_NAME
    if not target.is_file():
        raise LockMismatchError(
            "no lock file",
            path=target,
            hint=f"run `envbuild lock {_shown(spec.path)}` to create it",
        )
    return verify(env, read_lock(target), python=python, platforms=platforms)

"""Stage 4: a lock materialized as an environment, one backend per kind behind one protocol.

``base.py`` defines the protocol (:class:`Backend`, :class:`Environment`, :class:`BuildOptions`,
:class:`Plan`); ``registry.py`` maps kind names to backends (``venv.py``, ``local.py``,
``docker.py``, ``conda.py``, ``shared.py``: a named shared environment, chosen by
``--environment``) and makes the automatic choice; ``process.py`` and ``container.py`` run
envbuild's runner inside an environment.
See docs/architecture.md for how to add a kind.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from envbuild.envs.base import BuildOptions, Environment, Plan, Streams
from envbuild.envs.registry import DEFAULT_KIND, get_backend, kinds

if TYPE_CHECKING:
    from envbuild.envs.base import Progress
    from envbuild.envspec import EnvSpec
    from envbuild.lock.select import LockChoice
    from envbuild.model import ModelSpec

__all__ = [
    "DEFAULT_KIND",
    "BuildOptions",
    "Environment",
    "Plan",
    "Streams",
    "build",
    "get_backend",
    "kinds",
]


def build(
    model: ModelSpec,
    env: EnvSpec,
    lock: LockChoice | None,
    options: BuildOptions | None = None,
    *,
    on_progress: Progress | None = None,
) -> Environment:
    """Build (or reuse) the environment of ``options.kind`` holding exactly ``lock``."""
    from dataclasses import replace

    from envbuild.envs.base import ENV
    from envbuild.envs.registry import choose_kind

    options = options or BuildOptions()
    options = replace(options, kind=choose_kind(env, options.kind, ENV, options).name)
    backend = get_backend(options.kind)
    plan = backend.plan(env, options)
    return backend.build(plan, model, env, lock, options, on_progress=on_progress)

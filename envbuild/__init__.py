"""envbuild: rebuild an MLflow model's environment exactly, and run the model in it.

The public API follows the stages, each taking the previous stage's frozen value::

    spec = envbuild.load_model("model/")             # ModelSpec: the MLmodel file
    env = envbuild.read_env(spec)                    # EnvSpec: python + requirements, with origins
    target = envbuild.Target.for_model(env)          # the model's Python on linux/amd64
    lock = envbuild.resolve(env, target)             # Lock (PEP 751), nothing written
    lock.write("model/pylock.toml")
    environment = envbuild.build(spec, env, envbuild.select_lock(spec, env, target_of_kind))
    report = envbuild.reproduce(spec)                # lock -> build -> verify -> predict -> compare

and the compositions the commands use: ``lock_model`` (``envbuild lock``), ``check_lock``
(``lock --check``), ``prepare`` (``env``/``predict``/``serve``), ``inspect_model``, ``capture``
(the ``log_model`` hook) and ``infer_requirements``. Names are imported lazily so that
``import envbuild`` (and the CLI's start-up) stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

from envbuild.__about__ import __version__

_EXPORTS = {
    "load_model": "envbuild.model",
    "ModelSpec": "envbuild.model",
    "read_env": "envbuild.envspec",
    "EnvSpec": "envbuild.envspec",
    "Target": "envbuild.target",
    "resolve": "envbuild.lock",
    "Lock": "envbuild.lock",
    "read_lock": "envbuild.lock",
    "lock_model": "envbuild.lock",
    "check_lock": "envbuild.lock",
    "select_lock": "envbuild.lock",
    "build": "envbuild.envs",
    "BuildOptions": "envbuild.envs",
    "Environment": "envbuild.envs",
    "prepare": "envbuild.prepare",
    "reproduce": "envbuild.reproduction",
    "inspect_model": "envbuild.inspection",
    "Inspection": "envbuild.inspection",
    "capture": "envbuild.capturing",
    "infer_requirements": "envbuild.capturing",
    "EnvbuildError": "envbuild.errors",
    "ExitCode": "envbuild.errors",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'envbuild' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)

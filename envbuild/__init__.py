"""envbuild: rebuild an MLflow model's environment exactly, and run the model in it.

The public API follows the stages (each takes the previous stage's frozen value)::

    spec = envbuild.load_model("model/")      # ModelSpec: the MLmodel file
    env = envbuild.read_env(spec)             # EnvSpec: python + requirements with origins
    report = envbuild.inspect_model("model/") # both, as `envbuild inspect` shows them

Names are imported lazily so that ``import envbuild`` (and the CLI's start-up) stays cheap.
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
    "inspect_model": "envbuild.inspection",
    "Inspection": "envbuild.inspection",
    "lock": "envbuild.lock",
    "Lock": "envbuild.lock",
    "read_lock": "envbuild.lock",
    "check_lock": "envbuild.lock",
    "capture": "envbuild.capture",
    "infer_requirements": "envbuild.capture",
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

"""``envbuild inspect``: the model spec and environment spec, summarized for people and scripts.

Kept apart from the CLI so the Python API (``envbuild.inspect_model``) and ``--json`` share one
definition of the report's keys.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from envbuild.envspec import EnvSpec, read_env
from envbuild.model import ModelSpec, load_model, thaw


@dataclass(frozen=True)
class Inspection:
    """What ``inspect`` reports: both specs, the interpreter envbuild would use, every warning."""

    model: ModelSpec
    env: EnvSpec
    interpreter: dict[str, Any] | None = None  # chosen interpreter, or {"error": ...}
    kinds: tuple[dict[str, Any], ...] = ()  # each kind: can it build the model, why not
    kind: dict[str, Any] | None = None  # what env/predict/serve choose without --kind

    @property
    def warnings(self) -> list[str]:
        return list(self.model.warnings) + list(self.env.warnings)

    def to_dict(self) -> dict[str, Any]:
        model, env = self.model, self.env
        pyfunc = model.pyfunc
        example = model.input_example
        return {
            "path": str(model.path),
            "mlmodel": str(model.mlmodel_path),
            "flavors": model.flavor_names,
            "loader_module": pyfunc.loader_module if pyfunc else None,
            "data": pyfunc.data if pyfunc else None,
            "code": pyfunc.code if pyfunc else None,
            "python_version": env.python.version if env.python else None,
            "python": (
                {
                    "requested": env.python.text,
                    "specifier": env.python.specifier,
                    "source": str(env.python.origin),
                }
                if env.python
                else None
            ),
            "requirements": [r.text for r in env.requirements],
            "requirement_origins": {r.text: str(r.origin) for r in env.requirements},
            "constraints": [r.text for r in env.constraints],
            "build_requirements": [r.text for r in env.build_requirements],
            "requirements_source": env.source,
            "env_files": list(env.files),
            "conda_dependencies": [d.spec for d in env.conda_dependencies],
            "channels": list(env.channels),
            "index_options": [
                {"option": o.option, "value": o.redacted, "origin": str(o.origin)}
                for o in env.index_options
            ],
            "signature": model.signature.to_dict() if model.signature else None,
            "input_example": str(example.path) if example and example.path else None,
            "serving_input_example": (
                str(example.serving_input_path) if example and example.serving_input_path else None
            ),
            "model_uuid": model.model_uuid,
            "run_id": model.run_id,
            "mlflow_version": model.mlflow_version,
            "utc_time_created": model.utc_time_created,
            "artifact_path": model.artifact_path,
            "databricks_runtime": model.databricks_runtime,
            "metadata": thaw(model.metadata) if model.metadata is not None else None,
            "env_digest": env.digest(),
            "interpreter": self.interpreter,
            "kinds": list(self.kinds),
            "kind": self.kind,
            "warnings": self.warnings,
        }


def inspect_model(model: str | os.PathLike[str] | ModelSpec) -> Inspection:
    """Load a model folder and its environment files (stages 1 and 2) for reporting."""
    spec = model if isinstance(model, ModelSpec) else load_model(model)
    env = read_env(spec)
    from envbuild.envs.registry import kinds_report

    kinds, kind = kinds_report(env)
    return Inspection(
        model=spec, env=env, interpreter=_interpreter_report(env), kinds=kinds, kind=kind
    )


def _interpreter_report(env: EnvSpec) -> dict[str, Any]:
    """Which interpreter ``env``/``predict`` would pick for this model, and why (or why none)."""
    from envbuild.errors import EnvbuildError
    from envbuild.python import find_interpreter

    notes: list[str] = []
    try:
        chosen = find_interpreter(env.python.version if env.python else None, warnings=notes)
    except EnvbuildError as exc:
        return {"error": exc.message, "hint": exc.hint}
    return {**chosen.to_dict(), "notes": notes}

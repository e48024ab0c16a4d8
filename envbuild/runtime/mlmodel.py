"""Reading a model folder's MLmodel file and the parts of its signature the runtime needs.

Plain dicts and lists, not MLflow's Schema classes: the no-MLflow backend, ``/metadata`` and the
OpenAPI document need them in environments without MLflow, for models saved by any version.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Dict

from .errors import ModelFailure, describe_exception

Meta = Dict[str, Any]
Spec = Dict[str, Any]


# envbuild passes the MLmodel it read as JSON here, so that a model whose environment has neither
# MLflow nor PyYAML (it needs nothing but its own code) can still be described
MLMODEL_JSON = "ENVBUILD_MLMODEL_JSON"


def read_mlmodel(model_dir: str) -> Meta:
    """Parse the model folder's MLmodel file (YAML) into a dict.

    PyYAML is always present where MLflow is; without either, no pyfunc model can be described, so
    this fails with a message saying what to install.
    """
    path = os.path.join(model_dir, "MLmodel")
    if not os.path.isdir(model_dir):
        raise ModelFailure("model folder %s does not exist" % model_dir)
    if not os.path.isfile(path):
        raise ModelFailure("%s has no MLmodel file: not an MLflow model folder" % model_dir)
    given = os.environ.get(MLMODEL_JSON)
    try:
        import yaml
    except ImportError:
        if given:  # envbuild read MLmodel already (safely) and passed it as JSON
            try:
                meta = json.loads(given)
            except ValueError as exc:
                raise ModelFailure("%s is not valid JSON: %s" % (MLMODEL_JSON, exc)) from None
            if isinstance(meta, dict):
                return meta
        raise ModelFailure(
            "cannot read %s: neither mlflow nor PyYAML is installed in this environment "
            "(%s); install pyyaml into it" % (path, sys.executable)
        ) from None
    try:
        with open(path, encoding="utf-8") as handle:
            meta = yaml.safe_load(handle)
    except Exception as exc:  # YAML errors, RecursionError on absurd nesting, bad UTF-8
        raise ModelFailure("cannot parse %s: %s" % (path, describe_exception(exc))) from exc
    if not isinstance(meta, dict):
        raise ModelFailure("%s is not a YAML mapping" % path)
    return meta


def signature_part(meta: Meta, part: str) -> list[Spec] | None:
    """The decoded ``signature.inputs``/``outputs``/``params`` list of MLmodel, or None."""
    signature = meta.get("signature") or {}
    if not isinstance(signature, dict):
        return None
    raw = signature.get(part)
    if raw is None:
        return None
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except (ValueError, RecursionError):
            return None
    if not isinstance(raw, list):
        return None
    return [spec for spec in raw if isinstance(spec, dict)]


class Signature:
    """The input side of an MLmodel signature, as the no-MLflow backend needs it (parsed once)."""

    def __init__(self, meta: Meta) -> None:
        self.inputs: list[Spec] = signature_part(meta, "inputs") or []
        self.params: list[Spec] = signature_part(meta, "params") or []
        self.is_tensor = any(spec.get("type") == "tensor" for spec in self.inputs)
        self.columns: list[Spec] = [
            spec for spec in self.inputs if spec.get("type") != "tensor" and spec.get("name")
        ]
        self.types: dict[Any, Any] = {spec["name"]: spec.get("type") for spec in self.columns}
        self.param_names: list[Any] = [param.get("name") for param in self.params]
        self.param_defaults: dict[str, Any] = {
            p["name"]: p.get("default") for p in self.params if p.get("default") is not None
        }

    def single_tensor(self) -> tuple[Any, Any] | None:
        """(dtype, shape) when the signature is one tensor, else None."""
        if self.is_tensor and len(self.inputs) == 1:
            spec = self.inputs[0].get("tensor-spec") or {}
            return spec.get("dtype"), spec.get("shape")
        return None

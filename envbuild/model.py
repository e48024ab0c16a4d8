"""Stage 1: an MLflow model folder -> :class:`ModelSpec`.

Reads the ``MLmodel`` file only (the environment files are the next stage's, ``envspec.py``).
MLmodel files in the wild span 2018 to today: optional keys come and go, ``env`` is a string or a
mapping, signatures are JSON inside YAML, ``python_version: 3.10`` may be a float. This module
accepts all of that and turns it into one frozen value; it rejects what is unsafe (paths leaving the
folder) or unusable (no ``flavors``) with a one-line :class:`~envbuild.errors.ModelError`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from envbuild.errors import ModelError, UsageError
from envbuild.paths import inside
from envbuild.yamlio import kind_of, line_of, load_yaml, scalar_text

MLMODEL = "MLmodel"
PYFUNC = "python_function"
DEFAULT_CONDA = "conda.yaml"
DEFAULT_PYTHON_ENV = "python_env.yaml"
DEFAULT_REQUIREMENTS = "requirements.txt"
SERVING_INPUT_EXAMPLE = "serving_input_example.json"


def _freeze(value: Any) -> Any:
    """Deep read-only copy of YAML data, so a ModelSpec cannot be changed after loading."""
    if isinstance(value, Mapping):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, float) and hasattr(value, "text"):
        return float(value)
    return value


def thaw(value: Any) -> Any:
    """Plain JSON-able copy of frozen data (for ``--json``)."""
    if isinstance(value, Mapping):
        return {str(k): thaw(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [thaw(v) for v in value]
    return value


@dataclass(frozen=True)
class EnvFiles:
    """The environment files the ``python_function`` flavor names (relative, validated)."""

    conda: str | None = None
    virtualenv: str | None = None
    declared: bool = False  # False: MLmodel names none; the default file names are looked up


@dataclass(frozen=True)
class PyFuncFlavor:
    """What MLflow's pyfunc loader needs: where the loader lives and what it loads."""

    loader_module: str
    data: str | None  # relative to the model folder
    code: str | None  # relative to the model folder
    env: EnvFiles
    python_version: str | None  # exactly as written (3.10 stays "3.10")
    predict_fn: str | None = None
    model_code_path: str | None = None  # models-from-code: informational (original location)
    artifacts: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    config: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class Signature:
    """The model signature, decoded from the JSON strings MLflow stores in MLmodel."""

    inputs: tuple[Any, ...] | None
    outputs: tuple[Any, ...] | None
    params: tuple[Any, ...] | None

    @property
    def kind(self) -> str:
        """``tensor`` or ``columns``: how clients must shape their input."""
        specs = self.inputs or ()
        if any(isinstance(s, Mapping) and s.get("type") == "tensor" for s in specs):
            return "tensor"
        return "columns"

    def to_dict(self) -> dict[str, Any]:
        return {
            "inputs": thaw(self.inputs),
            "outputs": thaw(self.outputs),
            "params": thaw(self.params),
            "kind": self.kind,
        }


@dataclass(frozen=True)
class InputExample:
    """The saved input example (``saved_input_example_info``, or the 2018 ``input_example`` key)."""

    path: Path | None  # None when MLmodel names a file that is absent
    declared: str  # file name as written in MLmodel
    type: str | None
    format: str | None  # pandas orient (split/records) when the example is a dataframe
    serving_input_path: Path | None = None


@dataclass(frozen=True)
class ModelSpec:
    """An MLflow model folder, as read from its MLmodel file. Immutable."""

    path: Path  # the model folder, absolute
    mlmodel_path: Path
    flavors: Mapping[str, Mapping[str, Any]]
    pyfunc: PyFuncFlavor | None
    signature: Signature | None
    input_example: InputExample | None
    model_uuid: str | None
    model_id: str | None
    run_id: str | None
    mlflow_version: str | None
    utc_time_created: str | None
    artifact_path: str | None
    databricks_runtime: str | None
    metadata: Mapping[str, Any] | None
    warnings: tuple[str, ...] = ()
    document: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))  # all of it

    @property
    def flavor_names(self) -> list[str]:
        return list(self.flavors)

    def file(self, relative: str) -> Path:
        """A file in the model folder (callers pass validated relative names)."""
        return self.path / relative


def _text_field(doc: Mapping[Any, Any], key: str, mlmodel: Path, prefix: str = "") -> str | None:
    value = doc.get(key)
    if value is None:
        return None
    text = scalar_text(value)
    if text is None:
        raise ModelError(
            f"expected a string, found {kind_of(value)}",
            path=mlmodel,
            field=f"{prefix}{key}",
            line=line_of(doc, key),
        )
    return text


def _rel_path(root: Path, doc: Mapping, key: str, mlmodel: Path, prefix: str) -> str | None:
    """A path field of MLmodel, validated to stay inside the folder; returned as written."""
    value = doc.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ModelError(
            f"expected a relative path, found {kind_of(value)}",
            path=mlmodel,
            field=f"{prefix}{key}",
            line=line_of(doc, key),
        )
    inside(root, value, path=mlmodel, field=f"{prefix}{key}", line=line_of(doc, key))
    return value


def _read_env(root: Path, pyfunc: Mapping, mlmodel: Path) -> EnvFiles:
    prefix = f"flavors.{PYFUNC}."
    env = pyfunc.get("env")
    if env is None:
        return EnvFiles()
    if isinstance(env, str):  # MLflow < 2.0: the conda file's name
        return EnvFiles(
            conda=_rel_path(root, pyfunc, "env", mlmodel, f"flavors.{PYFUNC}."), declared=True
        )
    if isinstance(env, Mapping):
        unknown = sorted(set(map(str, env)) - {"conda", "virtualenv"})
        if unknown:
            raise ModelError(
                f"unknown environment kind {unknown[0]!r} (expected conda, virtualenv)",
                path=mlmodel,
                field=f"{prefix}env.{unknown[0]}",
                line=line_of(env, unknown[0]),
            )
        return EnvFiles(
            conda=_rel_path(root, env, "conda", mlmodel, f"{prefix}env."),
            virtualenv=_rel_path(root, env, "virtualenv", mlmodel, f"{prefix}env."),
            declared=True,
        )
    raise ModelError(
        f"expected a file name or a mapping, found {kind_of(env)}",
        path=mlmodel,
        field=f"{prefix}env",
        line=line_of(pyfunc, "env"),
    )


def _read_pyfunc(root: Path, flavors: Mapping, mlmodel: Path) -> PyFuncFlavor | None:
    conf = flavors.get(PYFUNC)
    if conf is None:
        return None
    prefix = f"flavors.{PYFUNC}."
    if not isinstance(conf, Mapping):
        raise ModelError(
            "expected a mapping", path=mlmodel, field=PYFUNC, line=line_of(flavors, PYFUNC)
        )
    loader = conf.get("loader_module")
    if not isinstance(loader, str) or not loader.strip():
        raise ModelError(
            "missing or empty loader_module",
            path=mlmodel,
            field=f"{prefix}loader_module",
            line=line_of(conf, "loader_module") or line_of(flavors, PYFUNC),
            hint="the python_function flavor must name the module that loads the model",
        )
    if not all(part.isidentifier() for part in loader.split(".")):
        raise ModelError(
            f"{loader!r} is not a Python module name",
            path=mlmodel,
            field=f"{prefix}loader_module",
            line=line_of(conf, "loader_module"),
        )
    data = _rel_path(root, conf, "data", mlmodel, prefix) or _rel_path(
        root, conf, "model_path", mlmodel, prefix
    )
    code = _rel_path(root, conf, "code", mlmodel, prefix)
    artifacts: dict[str, str] = {}
    raw_artifacts = conf.get("artifacts")
    if isinstance(raw_artifacts, Mapping):
        for name, info in raw_artifacts.items():
            if isinstance(info, Mapping) and info.get("path") is not None:
                rel = _rel_path(root, info, "path", mlmodel, f"{prefix}artifacts.{name}.")
                if rel is not None:
                    artifacts[str(name)] = rel
    return PyFuncFlavor(
        loader_module=loader.strip(),
        data=data,
        code=code,
        env=_read_env(root, conf, mlmodel),
        python_version=_text_field(conf, "python_version", mlmodel, prefix),
        predict_fn=_text_field(conf, "predict_fn", mlmodel, prefix),
        model_code_path=_text_field(conf, "model_code_path", mlmodel, prefix),
        artifacts=MappingProxyType(artifacts),
        config=_freeze(conf),
    )


def _decode_schema(doc: Mapping, key: str, mlmodel: Path) -> tuple[Any, ...] | None:
    value = doc.get(key)
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ModelError(
                f"invalid JSON: {exc.msg} at column {exc.colno}",
                path=mlmodel,
                field=f"signature.{key}",
                line=line_of(doc, key),
            ) from None
        except RecursionError:
            raise ModelError(
                "invalid JSON: nested too deeply",
                path=mlmodel,
                field=f"signature.{key}",
                line=line_of(doc, key),
            ) from None
    if value is None:
        return None
    if not isinstance(value, list | tuple):
        raise ModelError(
            f"expected a list of column or tensor specs, found {kind_of(value)}",
            path=mlmodel,
            field=f"signature.{key}",
            line=line_of(doc, key),
        )
    return _freeze(list(value))


def _read_signature(doc: Mapping, mlmodel: Path) -> Signature | None:
    sig = doc.get("signature")
    if sig is None:
        return None
    if not isinstance(sig, Mapping):
        raise ModelError(
            "expected a mapping", path=mlmodel, field="signature", line=line_of(doc, "signature")
        )
    return Signature(
        inputs=_decode_schema(sig, "inputs", mlmodel),
        outputs=_decode_schema(sig, "outputs", mlmodel),
        params=_decode_schema(sig, "params", mlmodel),
    )


def _read_input_example(
    root: Path, doc: Mapping, mlmodel: Path, warnings: list[str]
) -> InputExample | None:
    key = "saved_input_example_info" if "saved_input_example_info" in doc else "input_example"
    info = doc.get(key)
    if info is None:
        return None
    if not isinstance(info, Mapping):
        raise ModelError("expected a mapping", path=mlmodel, field=key, line=line_of(doc, key))
    declared = _rel_path(root, info, "artifact_path", mlmodel, f"{key}.")
    if declared is None:
        return None
    serving = _rel_path(root, info, "serving_input_path", mlmodel, f"{key}.")
    path = root / declared
    if not path.is_file():
        warnings.append(f"{MLMODEL}: {key}.artifact_path: input example {declared} is missing")
    serving_path = root / serving if serving else None
    if serving_path is not None and not serving_path.is_file():
        warnings.append(
            f"{MLMODEL}: {key}.serving_input_path: serving input example {serving} is missing"
        )
        serving_path = None
    return InputExample(
        path=path if path.is_file() else None,
        declared=declared,
        type=scalar_text(info.get("type")),
        format=scalar_text(info.get("pandas_orient") or info.get("format")),
        serving_input_path=serving_path,
    )


def locate(model: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Turn what the user typed into (model folder, MLmodel file).

    Accepts a folder holding ``MLmodel`` or the path of an MLmodel file itself (any file name, so
    variants such as ``MLmodel.with.metadata`` can be inspected).
    """
    text = os.fspath(model)
    if "://" in text or text.startswith(("runs:/", "models:/")):
        raise UsageError(
            f"{text}: URIs are not supported yet; download the model folder first",
            hint="mlflow artifacts download -u URI -d DIR, then pass DIR",
        )
    path = Path(text).expanduser()
    if path.is_dir():
        folder = path.resolve()
        mlmodel = folder / MLMODEL
        if not mlmodel.is_file():
            raise ModelError(
                "no MLmodel file in this folder",
                path=path,
                hint="pass the folder MLflow saved (the one holding MLmodel)",
            )
        return folder, mlmodel
    if path.is_file():
        return path.resolve().parent, path.resolve()
    raise ModelError("no such model folder", path=path)


def load_model(model: str | os.PathLike[str]) -> ModelSpec:
    """Read a model folder (or an MLmodel file) into a :class:`ModelSpec`."""
    root, mlmodel = locate(model)
    doc = load_yaml(mlmodel)
    if not isinstance(doc, Mapping):
        found = "an empty file" if doc is None else kind_of(doc)
        raise ModelError(f"expected a YAML mapping, found {found}", path=mlmodel)
    flavors = doc.get("flavors")
    if not isinstance(flavors, Mapping) or not flavors:
        raise ModelError(
            "missing or empty 'flavors' mapping",
            path=mlmodel,
            field="flavors",
            line=line_of(doc, "flavors"),
            hint="this does not look like an MLflow model",
        )
    for name, conf in flavors.items():
        if conf is not None and not isinstance(conf, Mapping):
            raise ModelError(
                f"expected a mapping, found {kind_of(conf)}",
                path=mlmodel,
                field=f"flavors.{name}",
                line=line_of(flavors, name),
            )
    warnings: list[str] = []
    metadata = doc.get("metadata")
    if metadata is not None and not isinstance(metadata, Mapping):
        raise ModelError(
            "expected a mapping", path=mlmodel, field="metadata", line=line_of(doc, "metadata")
        )
    return ModelSpec(
        path=root,
        mlmodel_path=mlmodel,
        flavors=_freeze({str(k): (v or {}) for k, v in flavors.items()}),
        pyfunc=_read_pyfunc(root, flavors, mlmodel),
        signature=_read_signature(doc, mlmodel),
        input_example=_read_input_example(root, doc, mlmodel, warnings),
        model_uuid=_text_field(doc, "model_uuid", mlmodel),
        model_id=_text_field(doc, "model_id", mlmodel),
        run_id=_text_field(doc, "run_id", mlmodel),
        mlflow_version=_text_field(doc, "mlflow_version", mlmodel),
        utc_time_created=_text_field(doc, "utc_time_created", mlmodel),
        artifact_path=_text_field(doc, "artifact_path", mlmodel),
        databricks_runtime=_text_field(doc, "databricks_runtime", mlmodel),
        metadata=_freeze(metadata) if metadata is not None else None,
        document=_freeze(doc),
        warnings=tuple(warnings),
    )

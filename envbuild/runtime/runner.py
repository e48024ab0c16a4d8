"""Run an MLflow model inside its own environment: load it, score input, serve it, describe the env.

This file is executed by path (``python runner.py predict|serve|info ...``) with the interpreter of
the model's environment, where envbuild itself is not installed, and it is copied into Docker images
as a plain file. So it uses only the standard library, keeps Python 3.8 syntax, and never imports
``envbuild``. Optional libraries of the model environment (mlflow, pandas, numpy, yaml) are imported
lazily, only where they are used.

When mlflow is importable, models are loaded with ``mlflow.pyfunc.load_model`` and input is parsed
and output written with MLflow's own scoring-server functions, so predictions and output bytes are
the same as ``mlflow models predict`` / ``mlflow models serve``. Without mlflow, the pyfunc loader
protocol (``loader_module._load_pyfunc(data_path)``) and MLflow's request formats are reproduced
here.

Exit codes: 0 success, 2 bad input or usage, 5 the model failed to load or to predict.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import importlib
import importlib.util
import inspect
import io
import json
import os
import platform
import sys
import tempfile
import traceback

RUNNER_VERSION = "1.0"

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2
EXIT_MODEL = 5

DEFAULT_MAX_BODY_BYTES = 100 * 1024 * 1024
MAX_MESSAGE = 2000
DF_SPLIT = "dataframe_split"
DF_RECORDS = "dataframe_records"
INSTANCES = "instances"
INPUTS = "inputs"
INPUT_FORMATS = (DF_SPLIT, DF_RECORDS, INSTANCES, INPUTS)
# Keys of MLflow's "unified LLM" request format, answered without the {"predictions": ...} wrapper.
LLM_KEYS = ("messages", "prompt", "input")
REQUIRED_INPUT_FORMAT = (
    "The input must be a JSON dictionary with exactly one of the input fields "
    "dataframe_split, dataframe_records, instances, inputs (and optionally params)"
)

_HERE = os.path.dirname(os.path.abspath(__file__))


# --------------------------------------------------------------------------------------------
# Errors: each carries its exit code and HTTP answer, so the CLI and the server agree.


class RunnerError(Exception):
    """A failure that ends a run with a known exit code and maps to a known HTTP status."""

    exit_code = EXIT_FAILURE
    http_status = 500
    error_code = "INTERNAL_ERROR"


class BadInput(RunnerError):
    """The request or input file is malformed or does not match the model's signature."""

    exit_code = EXIT_BAD_INPUT
    http_status = 400
    error_code = "BAD_REQUEST"


class ModelFailure(RunnerError):
    """The model could not be loaded, or raised while predicting."""

    exit_code = EXIT_MODEL
    http_status = 500
    error_code = "INTERNAL_ERROR"


def describe_exception(exc):
    """One line naming the exception's own type and message, for stderr and HTTP error bodies."""
    message = " ".join(str(exc).split())
    name = type(exc).__name__
    return "%s: %s" % (name, message) if message else name


def _one_line(text):
    return " ".join(str(text).split())


def _mlflow_message(exc):
    """The useful part of an MlflowException's message.

    Schema errors embed the whole input ("Failed to enforce schema of data '<frame>' with schema
    '<schema>'. Error: Model is missing inputs [...]"); the part after the last "Error: " names the
    offending column, which is what a person needs to see.
    """
    message = getattr(exc, "message", None) or str(exc)
    marker = "'. Error: "
    if message.startswith("Failed to enforce schema") and marker in message:
        message = message.rsplit(marker, 1)[1]
    message = _one_line(message)
    # Some messages quote the whole request body; keep the start, which says what is wrong.
    return message if len(message) <= MAX_MESSAGE else message[:MAX_MESSAGE] + " [...]"


# --------------------------------------------------------------------------------------------
# Reading MLmodel and its signature (needed for /version, OpenAPI and the no-mlflow path).


def read_mlmodel(model_dir):
    """Parse the model folder's MLmodel file (YAML) into a dict.

    PyYAML is always present where mlflow is; without either, no pyfunc model can be described, so
    this fails with a message saying what to install.
    """
    path = os.path.join(model_dir, "MLmodel")
    if not os.path.isdir(model_dir):
        raise ModelFailure("model folder %s does not exist" % model_dir)
    if not os.path.isfile(path):
        raise ModelFailure("%s has no MLmodel file: not an MLflow model folder" % model_dir)
    try:
        import yaml
    except ImportError:
        raise ModelFailure(
            "cannot read %s: neither mlflow nor PyYAML is installed in this environment "
            "(%s); install pyyaml into it" % (path, sys.executable)
        ) from None
    try:
        with open(path, encoding="utf-8") as handle:
            meta = yaml.safe_load(handle)
    except Exception as exc:
        raise ModelFailure("cannot parse %s: %s" % (path, describe_exception(exc))) from exc
    if not isinstance(meta, dict):
        raise ModelFailure("%s is not a YAML mapping" % path)
    return meta


def signature_part(meta, part):
    """The decoded ``signature.inputs``/``outputs``/``params`` list of MLmodel, or None."""
    signature = meta.get("signature") or {}
    raw = signature.get(part)
    if raw is None:
        return None
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            return None
    return raw if isinstance(raw, list) else None


class Signature:
    """The input side of an MLmodel signature, as the no-mlflow path needs it."""

    def __init__(self, meta):
        self.inputs = signature_part(meta, "inputs") or []
        self.params = signature_part(meta, "params") or []
        self.is_tensor = any(spec.get("type") == "tensor" for spec in self.inputs)
        self.columns = [
            spec for spec in self.inputs if spec.get("type") != "tensor" and spec.get("name")
        ]

    @property
    def param_names(self):
        return [param.get("name") for param in self.params]

    def param_defaults(self):
        return {p["name"]: p.get("default") for p in self.params if p.get("default") is not None}

    def single_tensor(self):
        """(dtype, shape) when the signature is one tensor, else None."""
        if self.is_tensor and len(self.inputs) == 1:
            spec = self.inputs[0].get("tensor-spec") or {}
            return spec.get("dtype"), spec.get("shape")
        return None


# --------------------------------------------------------------------------------------------
# JSON output shared by the no-mlflow path (mirrors mlflow.utils.proto_json_utils).


def _jsonable(data):
    """Mirror of MLflow's ``_get_jsonable_obj(data, pandas_orient="records")``."""
    np = sys.modules.get("numpy")
    pd = sys.modules.get("pandas")
    if np is not None and isinstance(data, np.ndarray):
        return data.tolist()
    if pd is not None and isinstance(data, pd.DataFrame):
        return data.to_dict(orient="records")
    if pd is not None and isinstance(data, pd.Series):
        return pd.DataFrame(data).to_dict(orient="records")
    return data


def _try_convert(obj):
    """Mirror of MLflow's ``NumpyEncoder.try_convert`` (same order of checks, same results)."""
    np = sys.modules.get("numpy")
    pd = sys.modules.get("pandas")
    if np is not None:
        if isinstance(obj, np.ndarray):
            if obj.dtype == object:
                return [_try_convert(item)[0] for item in obj.tolist()], True
            return obj.tolist(), True
        if isinstance(obj, np.generic):
            return obj.item(), True
    if isinstance(obj, (bytes, bytearray)):
        return base64.encodebytes(obj).decode("ascii"), True
    if pd is not None and isinstance(obj, pd.Timestamp):
        return obj.isoformat(), True
    if isinstance(obj, (datetime.date, datetime.datetime, datetime.time)):
        return obj.isoformat(), True
    return obj, False


class JsonEncoder(json.JSONEncoder):
    """Encodes numpy/pandas/bytes/datetime values the way MLflow's NumpyEncoder does."""

    def default(self, o):
        converted, ok = _try_convert(o)
        if ok:
            return converted
        return json.JSONEncoder.default(self, o)


# --------------------------------------------------------------------------------------------
# Backends: one loads with mlflow and reuses its scoring code, the other reproduces it.


class Backend:
    """A loaded model plus the parsing and output functions that belong with it.

    The CLI and the HTTP server only talk to this interface, so both answer the same way.
    """

    def parse_json(self, text):
        """Return (data, params, unwrapped) from a JSON request body."""
        raise NotImplementedError

    def read_csv(self, source):
        raise NotImplementedError

    def iter_csv(self, source, chunk_rows):
        raise NotImplementedError

    def predict(self, data, params):
        raise NotImplementedError

    def jsonable(self, raw):
        return _jsonable(raw)

    def dumps(self, obj):
        return json.dumps(obj, cls=JsonEncoder)

    def to_json(self, raw, unwrapped=False):
        """Serialize predictions as the MLflow scoring server does."""
        try:
            predictions = self.jsonable(raw)
            return self.dumps(predictions if unwrapped else {"predictions": predictions})
        except Exception as exc:
            raise ModelFailure(
                "cannot serialize the model's predictions (%s) as JSON: %s"
                % (type(raw).__name__, describe_exception(exc))
            ) from exc


class MlflowBackend(Backend):
    """Loads with ``mlflow.pyfunc`` and reuses ``mlflow.pyfunc.scoring_server``.

    MLflow's scoring code moved between releases (``infer_and_parse_json_input`` before 2.6,
    ``_split_data_and_params`` + ``infer_and_parse_data`` from 2.6, ``_parse_json_data`` with the
    unified LLM format later); the newest function present is used.
    """

    def __init__(self, model_dir, meta):
        import mlflow.pyfunc
        from mlflow.exceptions import MlflowException

        self._exception_type = MlflowException
        try:
            from mlflow.pyfunc import scoring_server
        except Exception as exc:  # 2.x imports flask at module level; mlflow-skinny has none
            _warn(
                "mlflow.pyfunc.scoring_server is not importable (%s); parsing input without it"
                % describe_exception(exc)
            )
            scoring_server = None
        self._ss = scoring_server
        self._plain = PlainParsing(Signature(meta))
        loader = getattr(scoring_server, "load_model_with_mlflow_config", None)
        try:
            self.model = loader(model_dir) if loader else mlflow.pyfunc.load_model(model_dir)
        except Exception as exc:
            raise ModelFailure("model failed to load: %s" % describe_exception(exc)) from exc
        try:
            self.schema = self.model.metadata.get_input_schema()
        except Exception:
            self.schema = None

    def _bad_input(self, exc):
        if isinstance(exc, self._exception_type):
            return BadInput(_mlflow_message(exc))
        return BadInput(describe_exception(exc))

    def parse_json(self, text):
        ss = self._ss
        try:
            if ss is not None and hasattr(ss, "_parse_json_data"):
                parsed = ss._parse_json_data(text, self.model.metadata, self.schema)
                return parsed.data, parsed.params, bool(parsed.is_unified_llm_input)
            if ss is not None and hasattr(ss, "_split_data_and_params"):
                data, params = ss._split_data_and_params(text)
                return ss.infer_and_parse_data(data, self.schema), params, False
            if ss is not None and hasattr(ss, "infer_and_parse_json_input"):
                return ss.infer_and_parse_json_input(text, self.schema), None, False
        except RunnerError:
            raise
        except Exception as exc:
            raise self._bad_input(exc) from exc
        return self._plain.parse_json(text)

    def _csv_dtypes(self):
        """The dtypes MLflow's ``parse_csv_input`` reads CSV with (None without a signature)."""
        if self.schema is None:
            return None
        return dict(zip(self.schema.input_names(), self.schema.pandas_types()))

    def read_csv(self, source):
        ss = self._ss
        if ss is None or not hasattr(ss, "parse_csv_input"):
            return self._plain.read_csv(source)
        try:
            if "schema" in inspect.signature(ss.parse_csv_input).parameters:
                return ss.parse_csv_input(source, schema=self.schema)
            return ss.parse_csv_input(source)
        except Exception as exc:
            raise self._bad_input(exc) from exc

    def iter_csv(self, source, chunk_rows):
        import pandas as pd

        try:
            dtypes = self._csv_dtypes()
            reader = pd.read_csv(source, dtype=dtypes, chunksize=chunk_rows)
            yield from reader
        except Exception as exc:
            raise BadInput(
                "Failed to parse input as a Pandas DataFrame. Ensure that the input is a valid "
                "CSV-formatted Pandas DataFrame. Error: '%s'" % _one_line(exc)
            ) from exc

    def predict(self, data, params):
        model = self.model
        try:
            if "params" in inspect.signature(model.predict).parameters:
                return model.predict(data, params=params)
            if params:
                _warn("the model does not accept params; ignoring %r" % (params,))
            return model.predict(data)
        except self._exception_type as exc:
            # Schema and params enforcement report the caller's mistake as invalid input.
            if getattr(exc, "error_code", None) in ("INVALID_PARAMETER_VALUE", "BAD_REQUEST"):
                raise BadInput(_mlflow_message(exc)) from exc
            raise ModelFailure("model failed to predict: %s" % describe_exception(exc)) from exc
        except Exception as exc:
            raise ModelFailure("model failed to predict: %s" % describe_exception(exc)) from exc

    def jsonable(self, raw):
        func = getattr(self._ss, "_get_jsonable_obj", None)
        return func(raw, pandas_orient="records") if func else _jsonable(raw)

    def dumps(self, obj):
        encoder = getattr(self._ss, "NumpyEncoder", None) or JsonEncoder
        return json.dumps(obj, cls=encoder)

    def to_json(self, raw, unwrapped=False):
        ss = self._ss
        name = "unwrapped_predictions_to_json" if unwrapped else "predictions_to_json"
        func = getattr(ss, name, None)
        if func is None:
            return Backend.to_json(self, raw, unwrapped)
        out = io.StringIO()
        try:
            func(raw, out)
        except Exception as exc:
            raise ModelFailure(
                "cannot serialize the model's predictions (%s) as JSON: %s"
                % (type(raw).__name__, describe_exception(exc))
            ) from exc
        return out.getvalue()


class PlainBackend(Backend):
    """Loads a pyfunc model the way ``mlflow.pyfunc.load_model`` does, without mlflow.

    Puts the flavor's ``code`` folder on sys.path, imports ``loader_module`` and calls its
    ``_load_pyfunc(data_path)``. Flavors whose loader lives in mlflow (mlflow.sklearn, ...) need
    mlflow in the environment; that is reported as a load failure.
    """

    def __init__(self, model_dir, meta):
        conf = (meta.get("flavors") or {}).get("python_function")
        if not isinstance(conf, dict):
            raise ModelFailure(
                "model failed to load: MLmodel has no python_function flavor (flavors: %s)"
                % ", ".join(sorted(meta.get("flavors") or {}))
            )
        loader_name = conf.get("loader_module")
        if not loader_name:
            raise ModelFailure("model failed to load: python_function flavor has no loader_module")
        _warn_python_version(conf.get("python_version"))
        code = conf.get("code")
        if code:
            sys.path.insert(0, os.path.join(model_dir, code))
        data = conf.get("data") or conf.get("model_path")
        data_path = os.path.join(model_dir, data) if data else model_dir
        try:
            loader = importlib.import_module(loader_name)
        except ImportError as exc:
            hint = (
                " (this flavor needs mlflow in the environment)"
                if loader_name.startswith("mlflow.")
                else ""
            )
            raise ModelFailure(
                "model failed to load: cannot import loader_module %s%s: %s"
                % (loader_name, hint, describe_exception(exc))
            ) from exc
        except Exception as exc:
            raise ModelFailure("model failed to load: %s" % describe_exception(exc)) from exc
        try:
            load = loader._load_pyfunc
            kwargs = {}
            if conf.get("config") is not None and _accepts(load, "model_config"):
                kwargs["model_config"] = conf.get("config")
            impl = load(data_path, **kwargs)
            predict_name = conf.get("predict_fn") or "predict"
            self._predict_fn = getattr(impl, predict_name)
        except Exception as exc:
            raise ModelFailure("model failed to load: %s" % describe_exception(exc)) from exc
        self.model = impl
        self.signature = Signature(meta)
        self._plain = PlainParsing(self.signature)

    def parse_json(self, text):
        return self._plain.parse_json(text)

    def read_csv(self, source):
        return self._plain.read_csv(source)

    def iter_csv(self, source, chunk_rows):
        return self._plain.iter_csv(source, chunk_rows)

    def predict(self, data, params):
        data = self._plain.enforce(data)
        try:
            if _accepts(self._predict_fn, "params"):
                merged = self.signature.param_defaults()
                merged.update(params or {})
                return self._predict_fn(data, params=merged or None)
            if params:
                _warn("the model does not accept params; ignoring %r" % (params,))
            return self._predict_fn(data)
        except Exception as exc:
            raise ModelFailure("model failed to predict: %s" % describe_exception(exc)) from exc


def _accepts(func, name):
    try:
        return name in inspect.signature(func).parameters
    except (TypeError, ValueError):
        return False


def _warn_python_version(model_python):
    if not model_python:
        return
    running = "%d.%d" % sys.version_info[:2]
    if ".".join(str(model_python).split(".")[:2]) != running:
        _warn(
            "the model was saved with Python %s; running Python %s"
            % (model_python, platform.python_version())
        )


# --------------------------------------------------------------------------------------------
# Input parsing without mlflow: MLflow's request formats, with pandas/numpy when present.

_PANDAS_DTYPES = {
    "double": "float64",
    "float": "float32",
    "long": "int64",
    "integer": "int32",
    "boolean": "bool",
}
_PY_CASTS = {"double": float, "float": float, "long": int, "integer": int}


def _optional(name):
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


class PlainParsing:
    """MLflow's JSON and CSV request formats and signature enforcement, without mlflow.

    Mirrors MLflow's two steps: parsing casts values to the signature's types (``astype`` for
    DataFrames, ``numpy.array(values, dtype)`` for ``inputs``/``instances``), then enforcement
    reports missing columns and unsafe conversions by column name and keeps the signature's
    columns in order. With pandas, ``dataframe_*`` and CSV become DataFrames; without it the model
    gets lists of dicts and plain lists.
    """

    def __init__(self, signature):
        self.signature = signature
        self.pd = _optional("pandas")
        self.np = _optional("numpy")
        self.types = {spec["name"]: spec.get("type") for spec in signature.columns}

    # ---- JSON
    def parse_json(self, text):
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise BadInput(
                "Invalid input. Ensure that input is a valid JSON formatted string. "
                "Error: %s" % _one_line(exc)
            ) from exc
        if not isinstance(doc, dict):
            raise BadInput("%s. Received a %s." % (REQUIRED_INPUT_FORMAT, type(doc).__name__))
        if any(key in doc for key in LLM_KEYS):
            names = set(self.signature.param_names)
            params = {k: v for k, v in doc.items() if k in names}
            data = {k: v for k, v in doc.items() if k not in names}
            return data, params, True
        found = [key for key in INPUT_FORMATS if key in doc]
        if len(found) != 1:
            raise BadInput(
                "%s. Received dictionary with input fields: %s"
                % (REQUIRED_INPUT_FORMAT, sorted(doc))
            )
        params = doc.get("params")
        if params is not None and not isinstance(params, dict):
            raise BadInput("field 'params' must be a JSON object, got %s" % type(params).__name__)
        key = found[0]
        payload = doc[key]
        if key == DF_SPLIT:
            return self._split(payload), params, False
        if key == DF_RECORDS:
            return self._records(payload), params, False
        if key == INSTANCES:
            return self._instances(payload), params, False
        return self._inputs(payload), params, False

    def _split(self, payload):
        if not isinstance(payload, dict) or "data" not in payload:
            raise BadInput(
                "field 'dataframe_split' must be an object with a 'data' field and "
                "optionally 'columns' and 'index'"
            )
        extra = set(payload) - {"columns", "data", "index"}
        if extra:
            raise BadInput("field 'dataframe_split' has unknown keys %s" % sorted(extra))
        if self.pd is not None:
            try:
                frame = self.pd.DataFrame(
                    index=payload.get("index"), columns=payload.get("columns"), data=payload["data"]
                )
            except Exception as exc:
                raise BadInput(
                    "field 'dataframe_split' is not a valid dataframe in 'split' "
                    "format: %s" % _one_line(exc)
                ) from exc
            return self._cast_frame(frame)
        rows = payload["data"]
        if not isinstance(rows, list):
            raise BadInput("field 'dataframe_split.data' must be a list of rows")
        columns = payload.get("columns")
        records = []
        for row in rows:
            row = row if isinstance(row, list) else [row]
            names = columns if columns is not None else list(range(len(row)))
            if len(names) != len(row):
                raise BadInput(
                    "field 'dataframe_split.data': a row has %d values for %d columns"
                    % (len(row), len(names))
                )
            records.append(dict(zip(names, row)))
        return records

    def _records(self, payload):
        if not isinstance(payload, list):
            raise BadInput(
                "field 'dataframe_records' must be a list of records, got %s"
                % type(payload).__name__
            )
        if self.pd is None:
            return payload
        try:
            frame = self.pd.DataFrame(data=payload)
        except Exception as exc:
            raise BadInput(
                "field 'dataframe_records' is not a valid dataframe in 'records' "
                "format: %s" % _one_line(exc)
            ) from exc
        return self._cast_frame(frame)

    def _array(self, values, field, column=None):
        """numpy array of ``values`` in the dtype of the signature's column or single tensor."""
        np = self.np
        if np is None:
            return values
        dtype = _PANDAS_DTYPES.get(self.types.get(column)) if column is not None else None
        tensor = self.signature.single_tensor()
        if dtype is None and tensor and tensor[0]:
            dtype = tensor[0]
        try:
            return np.array(values, dtype=dtype) if dtype else np.array(values)
        except Exception as exc:
            raise BadInput(
                "field '%s': cannot convert to %s: %s" % (field, dtype, _one_line(exc))
            ) from exc

    def _instances(self, payload):
        if isinstance(payload, list) and payload and isinstance(payload[0], dict):
            columns = {}
            for item in payload:
                if not isinstance(item, dict):
                    raise BadInput("field 'instances' mixes objects and non-objects")
                for name, value in item.items():
                    columns.setdefault(name, []).append(value)
            if len({len(v) for v in columns.values()}) > 1:
                raise BadInput(
                    "field 'instances': the length of values for each input/column "
                    "name are not the same"
                )
            return {
                name: self._array(v, "instances.%s" % name, name) for name, v in columns.items()
            }
        return self._array(payload, "instances")

    def _inputs(self, payload):
        if isinstance(payload, dict):
            return {name: self._array(v, "inputs.%s" % name, name) for name, v in payload.items()}
        columns = self.signature.columns
        if (
            len(columns) == 1
            and isinstance(payload, list)
            and not any(isinstance(item, dict) for item in payload)
        ):
            name = columns[0]["name"]
            return {name: self._array(payload, "inputs", name)}
        if isinstance(payload, list):
            if payload and all(isinstance(item, dict) for item in payload):
                return payload
            return self._array(payload, "inputs")
        return payload

    # ---- CSV
    def _csv_dtypes(self):
        # Strings are fixed at read time (keeps "007" a string); other types are cast afterwards,
        # column by column, so that an uncastable value is reported with its column's name.
        dtypes = {
            name: "object" for name, kind in self.types.items() if kind in ("string", "binary")
        }
        return dtypes or None

    def read_csv(self, source):
        if self.pd is None:
            return self._csv_records(source, None)
        try:
            frame = self.pd.read_csv(source, dtype=self._csv_dtypes())
        except Exception as exc:
            raise BadInput(
                "Failed to parse input as CSV with a header row: %s" % _one_line(exc)
            ) from exc
        return self._cast_frame(frame)

    def iter_csv(self, source, chunk_rows):
        if self.pd is None:
            for chunk in self._csv_records(source, chunk_rows):
                yield chunk
            return
        try:
            reader = self.pd.read_csv(source, dtype=self._csv_dtypes(), chunksize=chunk_rows)
            for chunk in reader:
                yield self._cast_frame(chunk)
        except BadInput:
            raise
        except Exception as exc:
            raise BadInput(
                "Failed to parse input as CSV with a header row: %s" % _one_line(exc)
            ) from exc

    def _csv_records(self, source, chunk_rows):
        """Without pandas: rows as dicts, numbers cast per the signature; a list of batches when
        chunking, else one list."""
        if isinstance(source, str):
            with open(source, newline="", encoding="utf-8") as handle:
                return self._csv_records(handle, chunk_rows)
        import csv

        batch = []
        chunks = []
        for line, row in enumerate(csv.DictReader(source), start=2):
            record = {}
            for name, value in row.items():
                cast = _PY_CASTS.get(self.types.get(name))
                try:
                    record[name] = cast(value) if cast and value != "" else value
                except ValueError:
                    raise BadInput(
                        "column '%s', line %d: cannot convert %r to %s"
                        % (name, line, value, self.types.get(name))
                    ) from None
            batch.append(record)
            if chunk_rows and len(batch) >= chunk_rows:
                chunks.append(batch)
                batch = []
        if batch or not chunks:
            chunks.append(batch)
        return chunks if chunk_rows else chunks[0]

    # ---- casting and enforcement
    def _cast_frame(self, frame):
        """Cast the signature's columns in place, like MLflow's parsing (``astype``)."""
        for name, kind in self.types.items():
            if name not in frame.columns:
                continue
            try:
                if kind == "datetime":
                    frame[name] = self.pd.to_datetime(frame[name])
                elif kind in _PANDAS_DTYPES:
                    frame[name] = frame[name].astype(_PANDAS_DTYPES[kind])
            except Exception as exc:
                raise BadInput(
                    "Data is not compatible with model signature. Failed to convert "
                    "column %s to type '%s'. Error: %s" % (name, kind, _one_line(exc))
                ) from exc
        return frame

    def enforce(self, data):
        """Check parsed input against the signature, as pyfunc's predict does before the model."""
        pd = self.pd
        sig = self.signature
        if pd is not None and sig.columns:
            if isinstance(data, dict):
                try:
                    data = pd.DataFrame(data)
                except ValueError:
                    data = pd.DataFrame([data])
            elif (isinstance(data, list) and data and all(isinstance(x, dict) for x in data)) or (
                self.np is not None and isinstance(data, self.np.ndarray) and data.ndim <= 2
            ):
                data = pd.DataFrame(data)
            if isinstance(data, pd.DataFrame):
                return self._enforce_frame(data)
            return data
        tensor = sig.single_tensor()
        if tensor and self.np is not None and isinstance(data, self.np.ndarray):
            self._check_shape(data, tensor[1])
        if pd is None and sig.columns and isinstance(data, list):
            present = set()
            for item in data:
                if isinstance(item, dict):
                    present.update(item)
            self._check_missing(present)
        return data

    def _check_missing(self, present):
        missing = [
            spec["name"]
            for spec in self.signature.columns
            if spec.get("required", True) and spec["name"] not in present
        ]
        if missing:
            extra = [name for name in present if name not in self.types]
            note = " Note that there were extra inputs: %s." % extra if extra else ""
            raise BadInput("Model is missing inputs %s.%s" % (missing, note))

    def _check_shape(self, array, shape):
        if not shape:
            return
        if array.ndim != len(shape) or any(
            want not in (-1, None) and want != got for want, got in zip(shape, array.shape)
        ):
            raise BadInput(
                "input of shape %s does not match the signature's tensor shape %s"
                % (tuple(array.shape), tuple(shape))
            )

    def _enforce_frame(self, frame):
        np = self.np
        self._check_missing(set(frame.columns))
        result = self.pd.DataFrame(index=frame.index)
        for spec in self.signature.columns:
            name = spec["name"]
            if name not in frame.columns:
                continue
            column = frame[name]
            target = _PANDAS_DTYPES.get(spec.get("type"))
            if target is not None and column.dtype != np.dtype(target):
                if column.dtype.kind not in "biuf" or not np.can_cast(column.dtype, target):
                    raise BadInput(
                        "Incompatible input types for column %s. Can not safely "
                        "convert %s to %s." % (name, column.dtype, target)
                    )
                column = column.astype(target)
            result[name] = column
        return result


# --------------------------------------------------------------------------------------------
# Loading.


def _warn(message):
    sys.stderr.write("warning: %s\n" % message)
    sys.stderr.flush()


def mlflow_available():
    """True when mlflow should be used: importable, and not disabled with ENVBUILD_NO_MLFLOW=1."""
    if os.environ.get("ENVBUILD_NO_MLFLOW") == "1":
        return False
    try:
        return importlib.util.find_spec("mlflow") is not None
    except (ImportError, ValueError):
        return False


def load_backend(model_dir, meta=None):
    """Load the model with mlflow when it is importable, else with the pyfunc loader protocol."""
    if meta is None:
        meta = read_mlmodel(model_dir)  # fails fast, before a slow mlflow import
    # What `mlflow models predict` and the scoring server set while loading and predicting.
    os.environ.setdefault("_MLFLOW_IS_IN_SERVING_ENVIRONMENT", "true")
    if mlflow_available():
        try:
            import mlflow.pyfunc  # noqa: F401
        except Exception as exc:
            _warn(
                "mlflow is installed but cannot be imported (%s); loading without it"
                % describe_exception(exc)
            )
        else:
            return MlflowBackend(model_dir, meta)
    return PlainBackend(model_dir, meta)


# --------------------------------------------------------------------------------------------
# Output: predictions only on stdout, files replaced atomically.


class Output:
    """Where predictions go: the saved real stdout, or a file replaced only on success."""

    def __init__(self, target, stdout_fd):
        self.target = target
        self.stdout_fd = stdout_fd
        self.handle = None
        self.temp = None

    def __enter__(self):
        if self.target in (None, "-"):
            self.handle = open(self.stdout_fd, "w", encoding="utf-8", closefd=False)
        else:
            folder = os.path.dirname(os.path.abspath(self.target))
            fd, self.temp = tempfile.mkstemp(prefix=".predictions-", dir=folder)
            self.handle = open(fd, "w", encoding="utf-8")
        return self.handle

    def __exit__(self, exc_type, exc, tb):
        self.handle.flush()
        if self.temp is None:
            return False
        self.handle.close()
        if exc_type is None:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(self.temp, 0o666 & ~umask)  # as open() would have made it, not mkstemp's 0600
            os.replace(self.temp, self.target)
        else:
            os.unlink(self.temp)
        return False


def claim_stdout():
    """Keep file descriptor 1 for results only.

    Duplicates the real stdout and points fd 1 (so ``print`` in model code, C libraries and child
    processes) at stderr. Returns the duplicate, where results are written.
    """
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    return saved


# --------------------------------------------------------------------------------------------
# Commands.


def _read_input_bytes(path):
    if path in (None, "-"):
        return sys.stdin.buffer.read()
    with open(path, "rb") as handle:
        return handle.read()


def _decode(raw):
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadInput("input is not valid UTF-8: %s" % exc) from exc


def _csv_source(path):
    return sys.stdin if path in (None, "-") else path


def cmd_predict(args, stdout_fd):
    if args.input not in (None, "-") and (
        not os.path.exists(args.input) or os.path.isdir(args.input)
    ):
        raise BadInput("input file %s does not exist" % args.input)
    if args.output not in (None, "-"):
        folder = os.path.dirname(os.path.abspath(args.output))
        if not os.path.isdir(folder) or os.path.isdir(args.output):
            raise BadInput(
                "cannot write output %s: its folder is missing, or it is a folder" % args.output
            )
    if args.chunk_rows is not None and args.chunk_rows < 1:
        raise BadInput("--chunk-rows must be a positive number of rows")
    content_type = args.content_type
    if content_type is None:
        content_type = "csv" if str(args.input or "").lower().endswith(".csv") else "json"
    backend = load_backend(args.model)
    with Output(args.output, stdout_fd) as out:
        if content_type == "csv" and args.chunk_rows:
            _predict_chunks(backend, _csv_source(args.input), args.chunk_rows, out)
            return EXIT_OK
        if content_type == "csv":
            data, params, unwrapped = backend.read_csv(_csv_source(args.input)), None, False
        else:
            if args.chunk_rows:
                _warn("--chunk-rows applies to CSV input only; reading the whole JSON input")
            data, params, unwrapped = backend.parse_json(_decode(_read_input_bytes(args.input)))
        raw = backend.predict(data, params)
        out.write(backend.to_json(raw, unwrapped))
    return EXIT_OK


def _predict_chunks(backend, source, chunk_rows, out):
    """Score a CSV N rows at a time and write one ``{"predictions": [...]}`` document.

    Items are joined with the separators ``json.dump`` uses, so the bytes equal the unchunked
    output whenever the model's predictions are row-aligned lists.
    """
    show_progress = sys.stderr.isatty()
    rows = 0
    first = True
    out.write('{"predictions": [')
    for chunk in backend.iter_csv(source, chunk_rows):
        if len(chunk) == 0:
            continue
        predictions = backend.jsonable(backend.predict(chunk, None))
        if not isinstance(predictions, list):
            raise BadInput(
                "--chunk-rows needs a model whose predictions are a list per row; this model "
                "returned %s. Score without --chunk-rows" % type(predictions).__name__
            )
        for item in predictions:
            out.write(("" if first else ", ") + backend.dumps(item))
            first = False
        rows += len(chunk)
        if show_progress:
            sys.stderr.write("\rscored %d rows" % rows)
            sys.stderr.flush()
    out.write("]}")
    if show_progress:
        sys.stderr.write("\n")


def _env_int(name, default):
    value = os.environ.get(name)
    if value in (None, ""):
        return default
    try:
        return int(value)
    except ValueError:
        raise BadInput("environment variable %s=%r is not an integer" % (name, value)) from None


def mlflow_version():
    """The installed mlflow (or mlflow-skinny) version, read without importing mlflow."""
    from importlib import metadata

    for name in ("mlflow", "mlflow-skinny"):
        try:
            return metadata.version(name)
        except Exception:
            continue
    module = sys.modules.get("mlflow")
    return getattr(module, "__version__", None)


class ServingApp:
    """What the HTTP server needs from a model; keeps the server free of model logic."""

    def __init__(self, model_dir, meta):
        self.model_dir = model_dir
        self.meta = meta
        self.backend = None
        self._openapi = None

    def load(self):
        self.backend = load_backend(self.model_dir, self.meta)

    def invoke(self, body, kind):
        """Score one request body; ``kind`` is "json" or "csv". Returns the JSON response text."""
        text = _decode(body)
        if kind == "csv":
            data, params, unwrapped = self.backend.read_csv(io.StringIO(text)), None, False
        else:
            data, params, unwrapped = self.backend.parse_json(text)
        return self.backend.to_json(self.backend.predict(data, params), unwrapped)

    def version_info(self):
        return {
            "model_uuid": self.meta.get("model_uuid"),
            "run_id": self.meta.get("run_id"),
            "python_version": platform.python_version(),
            "mlflow_version": mlflow_version() if mlflow_available() else None,
            "runner_version": RUNNER_VERSION,
        }

    def openapi(self):
        if self._openapi is None:
            self._openapi = _sibling("openapi").build_openapi(self.meta, RUNNER_VERSION)
        return self._openapi


def cmd_serve(args):
    workers = args.workers if args.workers is not None else _env_int("ENVBUILD_WORKERS", 1)
    if workers < 1:
        raise BadInput("--workers must be at least 1")
    max_body = _env_int("ENVBUILD_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES)
    if max_body < 1:
        raise BadInput("ENVBUILD_MAX_BODY_BYTES must be positive")
    meta = read_mlmodel(args.model)
    app = ServingApp(args.model, meta)
    server = _sibling("server")
    return server.serve(app, args.host, args.port, workers, max_body)


def marker_environment():
    """PEP 508 marker values of this interpreter (what packaging's default_environment returns),
    so the host can tell which of a lock's packages apply here."""
    impl = sys.implementation
    version = "%d.%d.%d" % (impl.version.major, impl.version.minor, impl.version.micro)
    if impl.version.releaselevel != "final":
        version += impl.version.releaselevel[0] + str(impl.version.serial)
    return {
        "implementation_name": impl.name,
        "implementation_version": version,
        "os_name": os.name,
        "platform_machine": platform.machine(),
        "platform_release": platform.release(),
        "platform_system": platform.system(),
        "platform_version": platform.version(),
        "python_full_version": platform.python_version(),
        "platform_python_implementation": platform.python_implementation(),
        "python_version": ".".join(platform.python_version_tuple()[:2]),
        "sys_platform": sys.platform,
    }


def cmd_info(args, stdout_fd):
    from importlib import metadata

    distributions = {}
    for dist in metadata.distributions():
        try:
            name = dist.metadata["Name"]
        except Exception:
            name = None
        if name and name not in distributions:
            distributions[name] = dist.version
    info = {
        "runner_version": RUNNER_VERSION,
        "python_version": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "executable": sys.executable,
        "platform": platform.platform(),
        "mlflow_present": mlflow_available(),
        "mlflow_version": mlflow_version(),
        "distributions": dict(sorted(distributions.items(), key=lambda kv: kv[0].lower())),
        "markers": marker_environment(),
    }
    if args.model:
        try:
            meta = read_mlmodel(args.model)
            conf = (meta.get("flavors") or {}).get("python_function") or {}
            info["model"] = {
                "model_uuid": meta.get("model_uuid"),
                "run_id": meta.get("run_id"),
                "flavors": sorted(meta.get("flavors") or {}),
                "loader_module": conf.get("loader_module"),
                "python_version": conf.get("python_version"),
                "has_signature": bool(meta.get("signature")),
            }
        except RunnerError as exc:
            info["model"] = {"error": str(exc)}
    with open(stdout_fd, "w", encoding="utf-8", closefd=False) as out:
        json.dump(info, out, indent=2)
        out.write("\n")
    return EXIT_OK


# --------------------------------------------------------------------------------------------
# Entry point.


def _sibling(name):
    """Load server.py / openapi.py from this folder under a private module name.

    Not ``import server``: the model's own code folder, or its dependencies (``openapi`` is a PyPI
    package), may use the same top-level names, and must get theirs, not ours.
    """
    key = "_envbuild_runtime_" + name
    module = sys.modules.get(key)
    if module is None:
        spec = importlib.util.spec_from_file_location(key, os.path.join(_HERE, name + ".py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module
        spec.loader.exec_module(module)
    return module


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.print_usage(sys.stderr)
        sys.stderr.write("error: %s\n" % message)
        sys.exit(EXIT_BAD_INPUT)


def build_parser():
    parser = _Parser(prog="runner.py", description="Run an MLflow model in this environment.")
    commands = parser.add_subparsers(dest="command", metavar="{predict,serve,info}")
    commands.required = True

    predict = commands.add_parser("predict", help="score a JSON or CSV input")
    predict.add_argument("--model", required=True, help="the model folder (holds MLmodel)")
    predict.add_argument("--input", default="-", help="input file, or - for stdin (default)")
    predict.add_argument("--output", default="-", help="output file, or - for stdout (default)")
    predict.add_argument(
        "--content-type",
        choices=("json", "csv"),
        default=None,
        help="input format (default: csv for *.csv input files, else json)",
    )
    predict.add_argument(
        "--chunk-rows",
        type=int,
        default=None,
        help="score CSV input N rows at a time, in constant memory",
    )

    serve = commands.add_parser("serve", help="serve the model over HTTP")
    serve.add_argument("--model", required=True)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080, help="0 picks a free port")
    serve.add_argument(
        "--workers",
        type=int,
        default=None,
        help="worker processes (default: $ENVBUILD_WORKERS, else 1)",
    )

    info = commands.add_parser("info", help="describe this environment as JSON")
    info.add_argument("--model", default=None)
    return parser


def main(argv=None):
    # Running by path puts this folder first on sys.path; take it off so that model code importing
    # a module called `server` or `openapi` finds its own.
    if sys.path and os.path.abspath(sys.path[0] or os.curdir) == _HERE:
        del sys.path[0]
    args = build_parser().parse_args(argv)
    debug = os.environ.get("ENVBUILD_DEBUG") == "1"
    try:
        stdout_fd = claim_stdout()
        if args.command == "predict":
            return cmd_predict(args, stdout_fd)
        if args.command == "info":
            return cmd_info(args, stdout_fd)
        return cmd_serve(args)
    except RunnerError as exc:
        if debug:
            traceback.print_exc()
        sys.stderr.write("error: %s\n" % _one_line(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_FAILURE
    except Exception as exc:
        if debug:
            traceback.print_exc()
        sys.stderr.write("error: unexpected failure in runner: %s\n" % describe_exception(exc))
        return EXIT_FAILURE
    finally:
        sys.stderr.flush()


if __name__ == "__main__":
    sys.exit(main())

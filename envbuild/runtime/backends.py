"""Backends: a loaded model plus the parsing and output functions that belong with it.

:class:`MlflowBackend` loads with ``mlflow.pyfunc`` and reuses MLflow's scoring code (through
``mlflow_compat``); :class:`PlainBackend` follows the pyfunc loader protocol
(``loader_module._load_pyfunc(data_path)``) and reproduces MLflow's request formats
(``parsing``). The CLI and the HTTP server only talk to :class:`Backend`, so both answer alike:
:meth:`Backend.score` turns one request body into the response text, raising
:class:`~errors.RunnerError` subclasses that carry the exit code and HTTP answer.

Everything that can be decided once (MLflow's functions, the signature, whether ``predict`` takes
``params``, whether Parquet can be read) is decided at load time, not per request.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import io
import json
import os
import platform
import sys
import traceback
from typing import Any, Callable, Iterator

from . import inputs, jsonenc, mlflow_compat
from .errors import (
    BadInput,
    ModelFailure,
    PredictFailure,
    RunnerError,
    SchemaMismatch,
    describe_exception,
    one_line,
)
from .inputs import CsvSource, Parsed
from .mlmodel import Meta, Signature, read_mlmodel
from .parsing import PlainParsing

JSON, CSV, PARQUET = "json", "csv", "parquet"


def warn(message: str) -> None:
    sys.stderr.write("warning: %s\n" % message)
    sys.stderr.flush()


def accepts(func: Callable[..., Any], name: str) -> bool:
    try:
        return name in inspect.signature(func).parameters
    except (TypeError, ValueError):
        return False


def _parquet_problem() -> str | None:
    """Why Parquet bodies cannot be read here (None when pandas and an engine are installed)."""
    try:
        if importlib.util.find_spec("pandas") is None:
            return "pandas is not installed in the model's environment"
        if not any(importlib.util.find_spec(name) for name in ("pyarrow", "fastparquet")):
            return "neither pyarrow nor fastparquet is installed in the model's environment"
    except (ImportError, ValueError):
        return "pandas is not importable in the model's environment"
    return None


def _length(data: Any) -> int | None:
    try:
        return len(data)
    except Exception:
        return None


class Backend:
    """A loaded model; subclasses parse input and predict as MLflow would."""

    model: Any = None

    def __init__(self, meta: Meta) -> None:
        self.meta = meta
        self.signature = Signature(meta)
        self.plain = PlainParsing(self.signature)
        self._parquet_problem: str | None = None
        self._parquet_checked = False

    # ---- to implement
    def parse_json(self, text: str) -> Parsed:
        raise NotImplementedError

    def read_csv(self, source: CsvSource) -> Any:
        raise NotImplementedError

    def iter_csv(self, source: CsvSource, chunk_rows: int) -> Iterator[Any]:
        raise NotImplementedError

    def read_parquet(self, raw: bytes) -> Any:
        return self.plain.read_parquet(raw)

    def predict(self, data: Any, params: dict[str, Any] | None) -> Any:
        raise NotImplementedError

    def jsonable(self, raw: Any) -> Any:
        return jsonenc.jsonable(raw)

    def dumps(self, obj: Any) -> str:
        return jsonenc.dumps(obj)

    def serialize(self, raw: Any, unwrapped: bool) -> str:
        predictions = self.jsonable(raw)
        return self.dumps(predictions if unwrapped else {"predictions": predictions})

    # ---- shared
    def parquet_problem(self) -> str | None:
        if not self._parquet_checked:
            self._parquet_problem = _parquet_problem()
            self._parquet_checked = True
        return self._parquet_problem

    def to_json(self, raw: Any, unwrapped: bool = False) -> str:
        """Serialize predictions as the MLflow scoring server does."""
        try:
            return self.serialize(raw, unwrapped)
        except Exception as exc:
            raise ModelFailure(
                "cannot serialize the model's predictions (%s) as JSON: %s"
                % (type(raw).__name__, describe_exception(exc))
            ) from exc

    def read_csv_located(self, source: CsvSource) -> Any:
        """``read_csv``, with the line and column of a cell the signature cannot hold."""
        try:
            return self.read_csv(source)
        except BadInput as exc:
            located = self.locate_csv(exc, source)
            if located is None:
                raise
            raise located from exc

    def locate_csv(self, exc: RunnerError, source: CsvSource) -> BadInput | None:
        """The error with the line and column of the first cell the signature cannot hold, or
        None when that is not known."""
        if exc.line is None:
            try:
                found = inputs.bad_csv_cell(_reread(source), self.signature.types)
            except Exception:  # the error is about the CSV itself: keep the parser's message
                found = None
            if found is not None:
                line, column, value, kind = found
                return BadInput(
                    "cannot convert %r to %s (%s)" % (value, kind, exc.message),
                    line=line,
                    field="column '%s'" % column,
                )
        return None

    def score(self, raw: bytes, kind: str) -> str:
        """One request body of ``kind`` (json, csv, parquet) to the response text."""
        text: str | None = None
        if kind == CSV:
            text = inputs.decode_csv(raw)
            data, params, unwrapped = self.read_csv_located(io.StringIO(text)), None, False
        elif kind == PARQUET:
            data, params, unwrapped = self.read_parquet(raw), None, False
        else:
            text = inputs.decode_json(raw)
            data, params, unwrapped = self.parse_json(text)
        try:
            predictions = self.predict(data, params)
        except PredictFailure as exc:
            source = io.StringIO(text) if kind == CSV and text is not None else text
            better = self.explain(exc, data, kind, source)
            if better is None:
                raise
            raise better from exc
        return self.to_json(predictions, unwrapped)

    def explain(
        self, exc: PredictFailure, data: Any, kind: str, source: CsvSource | None
    ) -> BadInput | None:
        """A predict failure caused by the input is bad input: no rows, or NaN/inf numbers.

        Run only after a failure, so a model that takes NaN (as missing values) is unaffected.
        ``source`` is the JSON text, or the CSV (a path or a stream). None when neither applies.
        """
        if _length(data) == 0:
            return BadInput("the input has no rows; %s" % exc.message, stack_trace=exc.stack_trace)
        line = column = field = token = None
        try:
            if kind == JSON and isinstance(source, str):
                hit = inputs.bad_json_number(source)
                if hit is not None:
                    line, column, token = hit
            elif kind == CSV and source is not None:
                found = inputs.bad_csv_number(_reread(source))
                if found is not None:
                    line, field, token = found[0], "column '%s'" % found[1], found[2]
        except Exception:
            token = None
        if token is None:
            return None
        return BadInput(
            "%s is not a number the model can take (%s)" % (token, exc.message),
            line=line,
            column=column,
            field=field,
            stack_trace=exc.stack_trace,
        )


def _reread(source: CsvSource) -> CsvSource:
    """A CSV source read again from its start (a path is opened anew)."""
    if not isinstance(source, str):
        source.seek(0)
    return source


class MlflowBackend(Backend):
    """Loads with ``mlflow.pyfunc`` and reuses ``mlflow.pyfunc.scoring_server``."""

    def __init__(self, model_dir: str, meta: Meta) -> None:
        Backend.__init__(self, meta)
        self.mlflow = mlflow_compat.Mlflow()
        if self.mlflow.scoring_problem:
            warn(
                "mlflow.pyfunc.scoring_server is not importable (%s); parsing input without it"
                % self.mlflow.scoring_problem
            )
        try:
            self.model = self.mlflow.load_model(model_dir)
        except Exception as exc:
            raise ModelFailure("model failed to load: %s" % describe_exception(exc)) from exc
        self.schema = self.mlflow.input_schema(self.model)
        self._csv_dtypes = self.mlflow.csv_dtypes(self.schema) if self.schema is not None else None
        self._takes_params = accepts(self.model.predict, "params")

    def _bad_input(self, exc: BaseException) -> RunnerError:
        """An error MLflow raised while parsing or enforcing the schema, with MLflow's code."""
        if isinstance(exc, RecursionError):
            return inputs.too_deep(exc)
        code = self.mlflow.error_code(exc)
        if code is None:
            return BadInput(describe_exception(exc))
        error_class, sqlstate = self.mlflow.classification(exc)
        kind = SchemaMismatch if code == "INVALID_PARAMETER_VALUE" else BadInput
        error = kind(
            self.mlflow.message(exc),
            error_code=code,
            http_status=self.mlflow.http_status(exc),
            error_class=error_class,
            sqlstate=sqlstate,
        )
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, json.JSONDecodeError):
            error.at(cause.lineno, cause.colno)
        return error

    def parse_json(self, text: str) -> Parsed:
        if not self.mlflow.parses_json:
            return self.plain.parse_json(text)
        try:
            return self.mlflow.parse_json(text, self.model, self.schema)
        except RunnerError:
            raise
        except Exception as exc:
            raise self._bad_input(exc) from exc

    def read_csv(self, source: CsvSource) -> Any:
        if not self.mlflow.parses_csv:
            return self.plain.read_csv(source)
        try:
            return self.mlflow.parse_csv(source, self.schema)
        except Exception as exc:
            raise self._bad_input(exc) from exc

    def iter_csv(self, source: CsvSource, chunk_rows: int) -> Iterator[Any]:
        import pandas as pd

        try:
            reader = pd.read_csv(source, dtype=self._csv_dtypes, chunksize=chunk_rows)
            yield from reader
        except Exception as exc:
            raise BadInput(
                "Failed to parse input as a Pandas DataFrame. Ensure that the input is a valid "
                "CSV-formatted Pandas DataFrame. Error: '%s'" % one_line(exc)
            ) from exc

    def read_parquet(self, raw: bytes) -> Any:
        try:
            parsed = self.mlflow.parse_parquet(raw)
        except Exception as exc:
            raise self._bad_input(exc) from exc
        return Backend.read_parquet(self, raw) if parsed is None else parsed

    def predict(self, data: Any, params: dict[str, Any] | None) -> Any:
        model = self.model
        try:
            if self._takes_params:
                return model.predict(data, params=params)
            if params:
                warn("the model does not accept params; ignoring %r" % (params,))
            return model.predict(data)
        except Exception as exc:
            code = self.mlflow.error_code(exc)
            status = self.mlflow.http_status(exc) if code else 400
            if code is not None and status < 500:
                # Schema and params enforcement: the caller's mistake, answered as MLflow does.
                raise self._bad_input(exc) from exc
            raise PredictFailure(
                "model failed to predict: %s" % describe_exception(exc),
                error_code=code,
                http_status=status,
                stack_trace=traceback.format_exc(),
            ) from exc

    def jsonable(self, raw: Any) -> Any:
        func = self.mlflow.jsonable
        return func(raw, pandas_orient="records") if func else jsonenc.jsonable(raw)

    def dumps(self, obj: Any) -> str:
        encoder = self.mlflow.encoder
        return json.dumps(obj, cls=encoder) if encoder else jsonenc.dumps(obj)

    def serialize(self, raw: Any, unwrapped: bool) -> str:
        text = self.mlflow.to_json(raw, unwrapped)
        return Backend.serialize(self, raw, unwrapped) if text is None else text


class PlainBackend(Backend):
    """Loads a pyfunc model the way ``mlflow.pyfunc.load_model`` does, without mlflow.

    Puts the flavor's ``code`` folder on sys.path, imports ``loader_module`` and calls its
    ``_load_pyfunc(data_path)``. Flavors whose loader lives in mlflow (mlflow.sklearn, ...) need
    mlflow in the environment; that is reported as a load failure.
    """

    def __init__(self, model_dir: str, meta: Meta) -> None:
        Backend.__init__(self, meta)
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
            if conf.get("config") is not None and accepts(load, "model_config"):
                kwargs["model_config"] = conf.get("config")
            impl = load(data_path, **kwargs)
            predict_name = conf.get("predict_fn") or "predict"
            self._predict_fn = getattr(impl, predict_name)
        except Exception as exc:
            raise ModelFailure("model failed to load: %s" % describe_exception(exc)) from exc
        self.model = impl
        self._takes_params = accepts(self._predict_fn, "params")

    def parse_json(self, text: str) -> Parsed:
        return self.plain.parse_json(text)

    def read_csv(self, source: CsvSource) -> Any:
        return self.plain.read_csv(source)

    def iter_csv(self, source: CsvSource, chunk_rows: int) -> Iterator[Any]:
        return self.plain.iter_csv(source, chunk_rows)

    def predict(self, data: Any, params: dict[str, Any] | None) -> Any:
        data = self.plain.enforce(data)
        try:
            if self._takes_params:
                merged = dict(self.signature.param_defaults)
                merged.update(params or {})
                return self._predict_fn(data, params=merged or None)
            if params:
                warn("the model does not accept params; ignoring %r" % (params,))
            return self._predict_fn(data)
        except Exception as exc:
            raise PredictFailure(
                "model failed to predict: %s" % describe_exception(exc),
                stack_trace=traceback.format_exc(),
            ) from exc


def _warn_python_version(model_python: Any) -> None:
    if not model_python:
        return
    running = "%d.%d" % sys.version_info[:2]
    if ".".join(str(model_python).split(".")[:2]) != running:
        warn(
            "the model was saved with Python %s; running Python %s"
            % (model_python, platform.python_version())
        )


def load_backend(model_dir: str, meta: Meta | None = None) -> Backend:
    """Load the model with mlflow when it is importable, else with the pyfunc loader protocol."""
    if meta is None:
        meta = read_mlmodel(model_dir)  # fails fast, before a slow mlflow import
    mlflow_compat.mark_serving_environment()
    if mlflow_compat.available():
        problem = mlflow_compat.import_problem()
        if problem is None:
            return MlflowBackend(model_dir, meta)
        warn("mlflow is installed but cannot be imported (%s); loading without it" % problem)
    return PlainBackend(model_dir, meta)

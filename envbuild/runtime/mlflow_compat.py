"""The one runtime module that touches MLflow's internals (tested with MLflow 3.17 and 2.12).

When MLflow is in the model's environment the runtime loads the model and parses requests with
MLflow's own scoring-server functions, so that predictions and output bytes are those of
``mlflow models predict`` / ``mlflow models serve``. Those functions are private and moved
between releases:

- ``infer_and_parse_json_input(text, schema)`` before 2.6;
- ``_split_data_and_params(text)`` + ``infer_and_parse_data(data, schema)`` from 2.6;
- ``_parse_json_data(text, metadata, schema)`` (adds the unified LLM format, type-hinted models)
  in later 2.x and 3.x;
- ``parse_parquet_input`` from 3.10;
- ``load_model_with_mlflow_config`` (``SERVING_MODEL_CONFIG``) in 2.x/3.x.

:class:`Mlflow` resolves the newest of each once, at load time, and everything else in the runtime
calls it. ``mlflow.pyfunc.scoring_server`` imports Flask at module level in some 2.x releases; a
server without it (mlflow-skinny) still loads models and parses input with the fallbacks here.
"""

from __future__ import annotations

import importlib.util
import inspect
import io
import os
from typing import IO, Any, Callable

from .inputs import Parsed

# What `mlflow models predict` and the scoring server set while loading and predicting.
SERVING_ENVIRONMENT_VARIABLE = "_MLFLOW_IS_IN_SERVING_ENVIRONMENT"


def available() -> bool:
    """True when MLflow should be used: importable, and not disabled with ENVBUILD_NO_MLFLOW=1."""
    if os.environ.get("ENVBUILD_NO_MLFLOW") == "1":
        return False
    try:
        return importlib.util.find_spec("mlflow") is not None
    except (ImportError, ValueError):
        return False


def import_problem() -> str | None:
    """Why ``mlflow.pyfunc`` cannot be imported (None when it can)."""
    try:
        import mlflow.pyfunc  # noqa: F401
    except Exception as exc:
        return "%s: %s" % (type(exc).__name__, " ".join(str(exc).split()))
    return None


def installed_version() -> str | None:
    """The installed mlflow (or mlflow-skinny) version, read without importing mlflow."""
    from importlib import metadata

    for name in ("mlflow", "mlflow-skinny"):
        try:
            return metadata.version(name)
        except Exception:
            continue
    return None


def mark_serving_environment() -> None:
    os.environ.setdefault(SERVING_ENVIRONMENT_VARIABLE, "true")


class Mlflow:
    """MLflow's loading, parsing and output functions for one model, resolved once."""

    def __init__(self) -> None:
        import mlflow.pyfunc
        from mlflow.exceptions import MlflowException

        self.exception_type = MlflowException
        self._pyfunc = mlflow.pyfunc
        self.scoring: Any = None
        self.scoring_problem: str | None = None
        try:
            from mlflow.pyfunc import scoring_server

            self.scoring = scoring_server
        except Exception as exc:  # some 2.x import flask there; mlflow-skinny has none
            self.scoring_problem = "%s: %s" % (type(exc).__name__, exc)
        ss = self.scoring
        self._parse_json_data = getattr(ss, "_parse_json_data", None)
        self._split_data_and_params = getattr(ss, "_split_data_and_params", None)
        self._infer_and_parse_data = getattr(ss, "infer_and_parse_data", None)
        self._infer_and_parse_json_input = getattr(ss, "infer_and_parse_json_input", None)
        self._parse_csv_input = getattr(ss, "parse_csv_input", None)
        self._csv_takes_schema = self._parse_csv_input is not None and _accepts(
            self._parse_csv_input, "schema"
        )
        self._parse_parquet_input = getattr(ss, "parse_parquet_input", None)
        self._predictions_to_json = getattr(ss, "predictions_to_json", None)
        self._unwrapped_to_json = getattr(ss, "unwrapped_predictions_to_json", None)
        self.jsonable: Callable[..., Any] | None = getattr(ss, "_get_jsonable_obj", None)
        self.encoder: Any = getattr(ss, "NumpyEncoder", None)
        self._loader = getattr(ss, "load_model_with_mlflow_config", None)

    @property
    def parses_json(self) -> bool:
        return any(
            (self._parse_json_data, self._split_data_and_params, self._infer_and_parse_json_input)
        )

    def load_model(self, model_dir: str) -> Any:
        if self._loader is not None:
            return self._loader(model_dir)
        return self._pyfunc.load_model(model_dir)

    def input_schema(self, model: Any) -> Any:
        try:
            return model.metadata.get_input_schema()
        except Exception:
            return None

    def csv_dtypes(self, schema: Any) -> dict[str, Any] | None:
        """The dtypes MLflow's ``parse_csv_input`` reads CSV with (None without a signature)."""
        if schema is None:
            return None
        try:
            return dict(zip(schema.input_names(), schema.pandas_types()))
        except Exception:  # a tensor signature has no pandas types: CSV is read as it comes
            return None

    def parse_json(self, text: str, model: Any, schema: Any) -> Parsed:
        if self._parse_json_data is not None:
            parsed = self._parse_json_data(text, model.metadata, schema)
            return parsed.data, parsed.params, bool(parsed.is_unified_llm_input)
        if self._split_data_and_params is not None and self._infer_and_parse_data is not None:
            data, params = self._split_data_and_params(text)
            return self._infer_and_parse_data(data, schema), params, False
        assert self._infer_and_parse_json_input is not None
        return self._infer_and_parse_json_input(text, schema), None, False

    @property
    def parses_csv(self) -> bool:
        return self._parse_csv_input is not None

    def parse_csv(self, source: str | IO[str], schema: Any) -> Any:
        assert self._parse_csv_input is not None
        if self._csv_takes_schema:
            return self._parse_csv_input(source, schema=schema)
        return self._parse_csv_input(source)

    def parse_parquet(self, raw: bytes) -> Any | None:
        """MLflow's own Parquet parsing (3.10+), or None when this MLflow has none."""
        if self._parse_parquet_input is None:
            return None
        return self._parse_parquet_input(io.BytesIO(raw))

    def to_json(self, raw: Any, unwrapped: bool) -> str | None:
        """MLflow's output function for the predictions, or None when this MLflow has none."""
        func = self._unwrapped_to_json if unwrapped else self._predictions_to_json
        if func is None:
            return None
        out = io.StringIO()
        func(raw, out)
        return out.getvalue()

    # ---- MlflowException
    def error_code(self, exc: BaseException) -> str | None:
        """The error code of an MlflowException (a name such as INVALID_PARAMETER_VALUE)."""
        if not isinstance(exc, self.exception_type):
            return None
        code = getattr(exc, "error_code", None)
        return code if isinstance(code, str) else None

    def http_status(self, exc: BaseException) -> int:
        status = getattr(exc, "get_http_status_code", None)
        try:
            return int(status()) if callable(status) else 500
        except Exception:
            return 500

    def classification(self, exc: BaseException) -> tuple[str | None, str | None]:
        """(error_class, sqlstate) as MLflow 3 sets them; (None, None) from older releases."""
        return getattr(exc, "error_class", None), getattr(exc, "sqlstate", None)

    def message(self, exc: BaseException) -> str:
        """The part of an MlflowException's message a person needs.

        Schema errors embed the whole input ("Failed to enforce schema of data '<frame>' with
        schema '<schema>'. Error: Model is missing inputs [...]"); the part after the last
        "Error: " names the offending column.
        """
        message = getattr(exc, "message", None) or str(exc)
        marker = "'. Error: "
        if message.startswith("Failed to enforce schema") and marker in message:
            message = message.rsplit(marker, 1)[1]
        return message


def _accepts(func: Callable[..., Any], name: str) -> bool:
    try:
        return name in inspect.signature(func).parameters
    except (TypeError, ValueError):
        return False

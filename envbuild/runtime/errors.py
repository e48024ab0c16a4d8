"""The runtime's errors: each carries its exit code and its HTTP answer, so the CLI and the server agree.

The HTTP side follows MLflow's scoring server (``mlflow/pyfunc/scoring_server``): a JSON body with
``error_code`` and ``message``, plus ``sqlstate`` and ``error_class`` as MLflow 3 classifies its
client error codes (``mlflow/error_classification.py``), and ``stack_trace`` only when debugging
(``ENVBUILD_DEBUG=1``). An error about an input file can say where in it (file, line, column,
field); the CLI prints that as ``error: FILE:LINE[:COL]: FIELD: what is wrong``.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2
EXIT_MODEL = 5
EXIT_INTERRUPTED = 130

MAX_MESSAGE = 2000

BAD_REQUEST = "BAD_REQUEST"
INVALID_PARAMETER_VALUE = "INVALID_PARAMETER_VALUE"
INTERNAL_ERROR = "INTERNAL_ERROR"
SCHEMA_ENFORCEMENT_FAILED = "SCHEMA_ENFORCEMENT_FAILED"

# MLflow 3's (error_class, sqlstate) for the error codes the runtime answers with itself; an
# MlflowException brings its own.
_CLASSIFICATION: dict[str, tuple[str, str]] = {
    BAD_REQUEST: ("INVALID_PARAMETER_VALUE", "KAM00"),
    INVALID_PARAMETER_VALUE: ("INVALID_PARAMETER_VALUE", "KAM00"),
    "ENDPOINT_NOT_FOUND": ("RESOURCE_NOT_FOUND", "KAM00"),
    INTERNAL_ERROR: ("CLIENT_INTERNAL_ERROR", "XXM00"),
    "TEMPORARILY_UNAVAILABLE": ("CLIENT_INTERNAL_ERROR", "XXM00"),
}
_SQLSTATE_OF_CLASS = {SCHEMA_ENFORCEMENT_FAILED: "KAM01"}

_E = TypeVar("_E", bound="RunnerError")


def one_line(text: object) -> str:
    """``text`` with every run of whitespace (newlines included) made one space."""
    return " ".join(str(text).split())


def clip(message: str) -> str:
    """Some messages quote the whole request; keep the start, which says what is wrong."""
    return message if len(message) <= MAX_MESSAGE else message[:MAX_MESSAGE] + " [...]"


def describe_exception(exc: BaseException) -> str:
    """One line naming the exception's own type and message, for stderr and HTTP error bodies."""
    message = one_line(exc)
    name = type(exc).__name__
    return "%s: %s" % (name, message) if message else name


def classification(error_code: str, error_class: str | None = None) -> tuple[str, str]:
    """(error_class, sqlstate) as MLflow 3 derives them from an error code (or a given class)."""
    default_class, default_state = _CLASSIFICATION.get(
        error_code, ("CLIENT_INTERNAL_ERROR", "XXM00")
    )
    if error_class is None:
        return default_class, default_state
    return error_class, _SQLSTATE_OF_CLASS.get(error_class, default_state)


class RunnerError(Exception):
    """A failure that ends a run with a known exit code and maps to a known HTTP answer."""

    exit_code = EXIT_FAILURE
    http_status = 500
    error_code = INTERNAL_ERROR

    def __init__(
        self,
        message: str,
        *,
        error_code: str | None = None,
        http_status: int | None = None,
        error_class: str | None = None,
        sqlstate: str | None = None,
        exit_code: int | None = None,
        source: str | None = None,
        line: int | None = None,
        column: int | None = None,
        field: str | None = None,
        stack_trace: str | None = None,
    ) -> None:
        Exception.__init__(self, message)
        self.message = message
        if error_code is not None:
            self.error_code = error_code
        if http_status is not None:
            self.http_status = http_status
        if exit_code is not None:
            self.exit_code = exit_code
        derived_class, derived_state = classification(self.error_code, error_class)
        self.error_class = derived_class
        self.sqlstate = sqlstate or derived_state
        self.source = source
        self.line = line
        self.column = column
        self.field = field
        self.stack_trace = stack_trace

    def where(self: _E, source: str | None) -> _E:
        """The same error, naming the input it is about (unless it already names one)."""
        if self.source is None:
            self.source = source
        return self

    def at(self: _E, line: int | None, column: int | None = None) -> _E:
        """The same error, with the line (and column) of the input it is about, when known."""
        if self.line is None and line is not None:
            self.line, self.column = line, column
        return self

    def __str__(self) -> str:
        place = ""
        if self.source is not None:
            place = self.source
            if self.line is not None:
                place += ":%d" % self.line
                if self.column is not None:
                    place += ":%d" % self.column
        elif self.line is not None:
            place = "line %d" % self.line
            if self.column is not None:
                place += ", column %d" % self.column
        parts = [part for part in (place, self.field, clip(one_line(self.message))) if part]
        return ": ".join(parts)

    def payload(self, debug: bool = False) -> dict[str, Any]:
        """The JSON error body, keys in MLflow's order (``serialize_as_json``)."""
        body: dict[str, Any] = {"error_code": self.error_code, "message": str(self)}
        body["sqlstate"] = self.sqlstate
        body["error_class"] = self.error_class
        if debug and self.stack_trace:
            body["stack_trace"] = self.stack_trace
        return body

    def to_json(self, debug: bool = False) -> str:
        return json.dumps(self.payload(debug))


class BadInput(RunnerError):
    """The request or input file is malformed or does not match the model's signature."""

    exit_code = EXIT_BAD_INPUT
    http_status = 400
    error_code = BAD_REQUEST


class SchemaMismatch(BadInput):
    """Input that parses but breaks the signature (a missing column, a tensor of the wrong shape):
    MLflow's schema enforcement answers these with INVALID_PARAMETER_VALUE."""

    error_code = INVALID_PARAMETER_VALUE

    def __init__(self, message: str, **kwargs: Any) -> None:
        kwargs.setdefault("error_class", SCHEMA_ENFORCEMENT_FAILED)
        BadInput.__init__(self, message, **kwargs)


class UsageError(RunnerError):
    """A bad command line or setting (a port out of range, a port in use): exit 2."""

    exit_code = EXIT_BAD_INPUT
    http_status = 400
    error_code = BAD_REQUEST


class ModelFailure(RunnerError):
    """The model could not be loaded, or its predictions could not be written as JSON."""

    exit_code = EXIT_MODEL
    http_status = 500
    error_code = INTERNAL_ERROR


class PredictFailure(ModelFailure):
    """The model's ``predict`` raised: exit 5 on the command line; MLflow's scoring server answers
    any such exception with 400 BAD_REQUEST, and so does ours."""

    http_status = 400
    error_code = BAD_REQUEST

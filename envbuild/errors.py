"""One exception hierarchy for everything a user can get wrong or the world can refuse.

Each class carries the process exit code the CLI uses for it, so the mapping from failure to exit
code lives here and nowhere else. A message names the file and the field it is about (``where``),
so the CLI can print it as one line; ``hint`` says what to do next.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import IntEnum
from pathlib import Path


class ExitCode(IntEnum):
    """Documented process exit codes (the README's table is generated from the same meanings)."""

    OK = 0
    BUG = 1
    BAD_INPUT = 2
    RESOLUTION_FAILED = 3
    BUILD_FAILED = 4
    MODEL_FAILED = 5
    ENV_DIFFERS = 6
    PREDICTIONS_DIFFER = 7
    ENVIRONMENT_UNSUITABLE = 8  # a named shared environment does not satisfy the model
    PARTIAL = 9  # reproduce: nothing failed, but something was not checked (see --allow-partial)


class EnvbuildError(Exception):
    """Base class: a failure envbuild can explain in one line.

    ``path`` is the file the problem is in, ``field`` the key, line or option inside it. Both are
    optional because some failures (no network) have no file.
    """

    exit_code: ExitCode = ExitCode.BUG

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        field: str | None = None,
        line: int | None = None,
        hint: str | None = None,
        log_path: str | Path | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.path = Path(path) if path is not None else None
        self.field = field
        self.line = line
        self.hint = hint
        self.log_path = Path(log_path) if log_path is not None else None

    def where(self, show_path: Callable[[Path], str] = str) -> str:
        """``file:line: field`` prefix, as much of it as is known (``show_path`` shortens paths)."""
        parts = []
        if self.path is not None:
            loc = show_path(self.path)
            if self.line is not None:
                loc += f":{self.line}"
            parts.append(loc)
        if self.field:
            parts.append(self.field)
        return ": ".join(parts)

    def format(self, show_path: Callable[[Path], str] = str) -> str:
        """The one-line message: where, then what (never more than one line), credentials in
        any URL hidden."""
        from envbuild.redact import redact

        what = " ".join(self.message.splitlines()) if self.message else type(self).__name__
        where = self.where(show_path)
        return redact(f"{where}: {what}" if where else what)

    def __str__(self) -> str:
        return self.format()

    def to_dict(self) -> dict[str, object]:
        """The error as ``--json`` prints it."""
        return {
            "error": type(self).__name__,
            "message": str(self),
            "path": str(self.path) if self.path else None,
            "line": self.line,
            "field": self.field,
            "hint": self.hint,
            "log": str(self.log_path) if self.log_path else None,
            "exit_code": int(self.exit_code),
        }


class UsageError(EnvbuildError):
    """The command line itself is wrong."""

    exit_code = ExitCode.BAD_INPUT


class ModelError(EnvbuildError):
    """The model folder or one of its files is missing, malformed or unsafe."""

    exit_code = ExitCode.BAD_INPUT


class RequirementError(ModelError):
    """A requirement line cannot be parsed or is refused (options, shell, unsafe paths)."""


class InputDataError(EnvbuildError):
    """An input file given to predict/serve is malformed."""

    exit_code = ExitCode.BAD_INPUT


class ResolutionError(EnvbuildError):
    """The requirements cannot be resolved to a lock (conflict, missing package, no network)."""

    exit_code = ExitCode.RESOLUTION_FAILED


class LockMismatchError(ResolutionError):
    """``lock --check``: the lock is missing or no longer matches the model's requirements."""


class InterpreterNotFound(EnvbuildError):
    """No interpreter for the model's Python could be found (and none may be downloaded)."""

    exit_code = ExitCode.BUILD_FAILED


class BuildError(EnvbuildError):
    """An environment or image could not be built."""

    exit_code = ExitCode.BUILD_FAILED


class ModelRunError(EnvbuildError):
    """The model failed to load or predict inside its environment."""

    exit_code = ExitCode.MODEL_FAILED


class EnvironmentMismatch(EnvbuildError):
    """reproduce: the installed distributions differ from the lock."""

    exit_code = ExitCode.ENV_DIFFERS


class PredictionMismatch(EnvbuildError):
    """reproduce: the predictions differ from the recorded expected output."""

    exit_code = ExitCode.PREDICTIONS_DIFFER


class MissingExtra(UsageError):
    """A part of envbuild that needs an optional dependency was used without it installed
    (MLflow for a model URI, ``boto3`` for ``s3://``, ...). The message names what to install."""


class ModelSourceError(ModelError):
    """A model URI that names nothing usable: no such run, registered model, version, alias or
    logged model, an artifact path without an MLmodel, an unsupported scheme, refused access."""


class SourceUnreachable(EnvbuildError):
    """The tracking server, model registry or artifact store could not be reached (connection
    refused, timed out, name not resolved, server errors after retries).

    Exit 3, as for the other failures that depend on the network (a lock that cannot reach the
    index): the reference itself may be fine, so running again later may succeed.
    """

    exit_code = ExitCode.RESOLUTION_FAILED


class RegistryError(EnvbuildError):
    """The registry of shared environments: an unknown name or version (the message lists the
    known ones), a version that already exists or is being created, a broken registry file
    (named), a registered prefix or image that no longer exists."""

    exit_code = ExitCode.BAD_INPUT


class ArchiveError(EnvbuildError):
    """A packed environment (``envbuild pack``) that cannot be read: missing, truncated,
    corrupted, not made by envbuild, or missing what its manifest promises."""

    exit_code = ExitCode.BAD_INPUT


class EnvironmentUnsuitable(EnvbuildError):
    """A named shared environment does not satisfy the model (``check``, ``--environment``
    without ``--allow-mismatch``), or can no longer be used (its prefix or image is gone).

    ``verdict`` is the whole verdict (every row) as ``check --json`` prints it; the error's
    ``--json`` object carries it too, so a CI job sees why without a second command.
    """

    exit_code = ExitCode.ENVIRONMENT_UNSUITABLE

    def __init__(
        self,
        message: str,
        *,
        verdict: dict[str, object] | None = None,
        path: str | Path | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, path=path, hint=hint)
        self.verdict = verdict

    def to_dict(self) -> dict[str, object]:
        data = super().to_dict()
        if self.verdict is not None:
            data["verdict"] = self.verdict
        return data


class ArchiveMismatch(EnvbuildError):
    """A packed environment that does not suit where it is used: another platform, an older C
    library or another Python than the executors' or the model's (exit 8, as a shared
    environment that does not satisfy the model)."""

    exit_code = ExitCode.ENVIRONMENT_UNSUITABLE

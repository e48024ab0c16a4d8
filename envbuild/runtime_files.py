"""Where envbuild's runtime (the standard-library code that runs inside a model's environment)
lives on the host, and the runner's exit codes as the host reads them (``runtime/runner.py``
defines the same numbers; the runtime never imports envbuild)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from envbuild.model import ModelSpec

RUNTIME_DIR = Path(__file__).resolve().parent / "runtime"
RUNNER = RUNTIME_DIR / "runner.py"
PROBE = RUNTIME_DIR / "capture_probe.py"

RUNNER_BAD_INPUT = 2
RUNNER_MODEL_FAILED = 5


def runtime_files() -> Iterator[tuple[str, Path]]:
    """``(relative name, file)`` for every file an image needs to run the runtime: its Python
    modules (no caches, no tool configuration)."""
    for path in sorted(RUNTIME_DIR.rglob("*.py")):
        if "__pycache__" not in path.parts:
            yield path.relative_to(RUNTIME_DIR).as_posix(), path


MLMODEL_JSON = "ENVBUILD_MLMODEL_JSON"  # runtime/mlmodel.py reads it when PyYAML is missing
_MAX_MLMODEL_JSON = 100_000  # a variable's value must stay well under Linux's 128 KiB limit


def mlmodel_variables(model: ModelSpec) -> dict[str, str]:
    """The runner's copy of the MLmodel envbuild already read (safely), as JSON, so that a model
    whose environment has neither MLflow nor PyYAML can still be described."""
    import json

    from envbuild.model import thaw

    text = json.dumps(thaw(model.document), separators=(",", ":"), default=str)
    return {MLMODEL_JSON: text} if len(text) < _MAX_MLMODEL_JSON else {}


def runner_version() -> str:
    """The runner's protocol version (``RUNNER_VERSION`` in ``runtime/commands.py``), read from
    the file rather than imported: the runtime is never imported into envbuild."""
    import re

    text = (RUNTIME_DIR / "commands.py").read_text(encoding="utf-8")
    match = re.search(r'^RUNNER_VERSION = "([^"]+)"', text, re.MULTILINE)
    return match.group(1) if match else "unknown"

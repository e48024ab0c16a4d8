"""The input a model is predicted on: the file given, or the model's own saved example.

MLflow saves ``input_example.json`` in its raw form (a dataframe in split orient, an array, a
JSON object); ``serving_input_example.json`` is the same wrapped as a scoring request. For an
older model that has only the raw form, the request is rebuilt the way MLflow 2.x does, into a
private temporary folder that lives as long as the ``with`` block (and is swept by the next run
if the process is killed).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from envbuild.errors import InputDataError, UsageError
from envbuild.files import temporary_directory
from envbuild.model import SERVING_INPUT_EXAMPLE, ModelSpec
from envbuild.yamlio import read_text

# CSV inputs larger than this are scored in chunks of AUTO_CHUNK_ROWS rows (constant memory)
AUTO_CHUNK_BYTES = 64 * 1024 * 1024
AUTO_CHUNK_ROWS = 50_000
STDIN = Path("-")


@dataclass(frozen=True)
class ModelInput:
    """A file to predict on and its content type (None: the runner decides from the name)."""

    path: Path
    content_type: str | None

    @property
    def is_stdin(self) -> bool:
        return str(self.path) == "-"

    def chunk_rows(self, asked: int | None) -> int | None:
        """``asked``, else AUTO_CHUNK_ROWS for a CSV file too big to hold comfortably."""
        if asked is not None:
            return asked
        return AUTO_CHUNK_ROWS if is_large_csv(self.path, self.content_type) else None


def has_example(model: ModelSpec) -> bool:
    example = model.input_example
    return (model.path / SERVING_INPUT_EXAMPLE).is_file() or (
        example is not None and (example.path is not None or example.serving_input_path is not None)
    )


@contextlib.contextmanager
def model_input(
    model: ModelSpec, path: Path | None = None, content_type: str | None = None
) -> Iterator[ModelInput]:
    """``path`` (checked to exist), else the model's example as a scoring request."""
    if path is not None:
        if str(path) != "-" and not path.is_file():
            raise InputDataError("input file not found", path=path)
        yield ModelInput(path, content_type)
        return
    with default_input(model) as found:
        yield found


@contextlib.contextmanager
def default_input(model: ModelSpec) -> Iterator[ModelInput]:
    """The serving example, else the input example wrapped as a request (see module doc)."""
    example = model.input_example
    serving = model.path / SERVING_INPUT_EXAMPLE
    if example is not None and example.serving_input_path is not None:
        yield ModelInput(example.serving_input_path, "json")
        return
    if serving.is_file():
        yield ModelInput(serving, "json")
        return
    if example is None or example.path is None:
        raise UsageError(
            "the model has no saved input example; pass one with -i FILE",
            hint="log the model with input_example=... to get one",
        )
    try:
        raw = json.loads(read_text(example.path))
    except json.JSONDecodeError as exc:
        raise InputDataError(
            f"invalid JSON: {exc.msg}", path=example.path, line=exc.lineno
        ) from None
    except RecursionError:
        raise InputDataError("JSON nested too deeply", path=example.path) from None
    kind = (example.type or "").lower()
    if kind == "dataframe":
        orient = (example.format or "split").lower()
        request = {"dataframe_records" if orient == "records" else "dataframe_split": raw}
    elif kind in ("ndarray", "sparse_matrix_csc", "sparse_matrix_csr"):
        request = raw if isinstance(raw, dict) and "inputs" in raw else {"inputs": raw}
    else:
        request = raw
    with temporary_directory("input") as folder:
        path = folder / "serving_input.json"
        path.write_text(json.dumps(request), encoding="utf-8")
        yield ModelInput(path, "json")


def is_large_csv(path: Path, content_type: str | None) -> bool:
    """Batch scoring kicks in by itself for CSV files too big to hold comfortably in memory."""
    if (
        str(path) == "-"
        or (content_type or ("csv" if path.suffix.lower() == ".csv" else "")) != "csv"
    ):
        return False
    try:
        return path.stat().st_size > AUTO_CHUNK_BYTES
    except OSError:
        return False

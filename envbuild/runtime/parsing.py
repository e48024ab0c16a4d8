"""MLflow's request formats and signature enforcement, for environments without MLflow.

Mirrors MLflow's two steps: parsing casts values to the signature's types (``astype`` for
DataFrames, ``numpy.array(values, dtype)`` for ``inputs``/``instances``), then enforcement reports
missing columns and unsafe conversions by column name and keeps the signature's columns in order.
Parsing problems are BAD_REQUEST and enforcement problems INVALID_PARAMETER_VALUE, as MLflow
answers them. With pandas, ``dataframe_*``, CSV and Parquet become DataFrames; without it the
model gets lists of dicts and plain lists.
"""

from __future__ import annotations

import importlib
import io
from types import ModuleType
from typing import Any, Iterator

from . import inputs
from .errors import BadInput, SchemaMismatch, one_line
from .inputs import CsvSource, Parsed
from .mlmodel import Signature

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

_PANDAS_DTYPES: dict[Any, str] = {
    "double": "float64",
    "float": "float32",
    "long": "int64",
    "integer": "int32",
    "boolean": "bool",
}
_PY_CASTS: dict[Any, Any] = {"double": float, "float": float, "long": int, "integer": int}


def optional_module(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


class PlainParsing:
    """MLflow's JSON, CSV and Parquet request formats, with pandas/numpy when present."""

    def __init__(self, signature: Signature) -> None:
        self.signature = signature
        self.pd = optional_module("pandas")
        self.np = optional_module("numpy")
        self.types = signature.types
        self.tensor = signature.single_tensor()
        # Strings are fixed at read time (keeps "007" a string); other types are cast afterwards,
        # column by column, so that an uncastable value is reported with its column's name.
        self.csv_dtypes: dict[str, str] | None = {
            name: "object" for name, kind in self.types.items() if kind in ("string", "binary")
        } or None

    # ---- JSON
    def parse_json(self, text: str) -> Parsed:
        doc = inputs.load_json(text)
        if not isinstance(doc, dict):
            raise BadInput("%s. Received a %s." % (REQUIRED_INPUT_FORMAT, type(doc).__name__))
        if any(key in doc for key in LLM_KEYS):
            names = set(self.signature.param_names)
            llm_params = {k: v for k, v in doc.items() if k in names}
            data = {k: v for k, v in doc.items() if k not in names}
            return data, llm_params, True
        found = [key for key in INPUT_FORMATS if key in doc]
        if len(found) != 1:
            raise BadInput(
                "%s. Received dictionary with input fields: %s"
                % (REQUIRED_INPUT_FORMAT, sorted(doc))
            )
        params = doc.get("params")
        if params is not None and not isinstance(params, dict):
            raise SchemaMismatch(
                "Parameters must be a dictionary. Got type '%s'." % type(params).__name__,
                field="params",
                error_class="INVALID_PARAMETER_VALUE",
            )
        key = found[0]
        payload = doc[key]
        if key == DF_SPLIT:
            return self._split(payload), params, False
        if key == DF_RECORDS:
            return self._records(payload), params, False
        if key == INSTANCES:
            return self._instances(payload), params, False
        return self._inputs(payload), params, False

    def _split(self, payload: Any) -> Any:
        if not isinstance(payload, dict) or "data" not in payload:
            raise BadInput(
                "Dataframe split format must be a dictionary with a 'data' field and "
                "optionally 'columns' and 'index'",
                field=DF_SPLIT,
            )
        extra = set(payload) - {"columns", "data", "index"}
        if extra:
            raise BadInput("unknown keys %s" % sorted(extra), field=DF_SPLIT)
        if self.pd is not None:
            try:
                frame = self.pd.DataFrame(
                    index=payload.get("index"), columns=payload.get("columns"), data=payload["data"]
                )
            except Exception as exc:
                raise BadInput(
                    "not a valid dataframe representation in 'split' format: %s" % one_line(exc),
                    field=DF_SPLIT,
                ) from exc
            return self._cast_frame(frame)
        rows = payload["data"]
        if not isinstance(rows, list):
            raise BadInput("'data' must be a list of rows", field=DF_SPLIT)
        columns = payload.get("columns")
        records = []
        for row in rows:
            row = row if isinstance(row, list) else [row]
            names = columns if columns is not None else list(range(len(row)))
            if len(names) != len(row):
                raise BadInput(
                    "a row has %d values for %d columns" % (len(row), len(names)), field=DF_SPLIT
                )
            records.append(dict(zip(names, row)))
        return records

    def _records(self, payload: Any) -> Any:
        if not isinstance(payload, list):
            raise BadInput(
                "Dataframe records format must be a list of records. Got %s."
                % type(payload).__name__,
                field=DF_RECORDS,
            )
        if self.pd is None:
            return payload
        try:
            frame = self.pd.DataFrame(data=payload)
        except Exception as exc:
            raise BadInput(
                "not a valid dataframe representation in 'records' format: %s" % one_line(exc),
                field=DF_RECORDS,
            ) from exc
        return self._cast_frame(frame)

    def _array(self, values: Any, field: str, column: str | None = None) -> Any:
        """numpy array of ``values`` in the dtype of the signature's column or single tensor."""
        np = self.np
        if np is None:
            return values
        dtype = _PANDAS_DTYPES.get(self.types.get(column)) if column is not None else None
        if dtype is None and self.tensor and self.tensor[0]:
            dtype = self.tensor[0]
        try:
            return np.array(values, dtype=dtype) if dtype else np.array(values)
        except Exception as exc:
            raise BadInput(
                "cannot convert to %s: %s" % (dtype, one_line(exc)), field=field
            ) from exc

    def _instances(self, payload: Any) -> Any:
        if isinstance(payload, list) and payload and isinstance(payload[0], dict):
            columns: dict[str, list[Any]] = {}
            for item in payload:
                if not isinstance(item, dict):
                    raise BadInput("mixes objects and non-objects", field=INSTANCES)
                for name, value in item.items():
                    columns.setdefault(name, []).append(value)
            if len({len(v) for v in columns.values()}) > 1:
                raise BadInput(
                    "the length of values for each input/column name are not the same",
                    field=INSTANCES,
                )
            return {
                name: self._array(v, "instances.%s" % name, name) for name, v in columns.items()
            }
        return self._array(payload, INSTANCES)

    def _inputs(self, payload: Any) -> Any:
        if isinstance(payload, dict):
            return {name: self._array(v, "inputs.%s" % name, name) for name, v in payload.items()}
        columns = self.signature.columns
        if (
            len(columns) == 1
            and isinstance(payload, list)
            and not any(isinstance(item, dict) for item in payload)
        ):
            name = columns[0]["name"]
            return {name: self._array(payload, INPUTS, name)}
        if isinstance(payload, list):
            if payload and all(isinstance(item, dict) for item in payload):
                return payload
            return self._array(payload, INPUTS)
        return payload

    # ---- CSV and Parquet
    def read_csv(self, source: CsvSource) -> Any:
        if self.pd is None:
            return self._csv_records(source, None)
        try:
            frame = self.pd.read_csv(source, dtype=self.csv_dtypes)
        except Exception as exc:
            raise BadInput(
                "Failed to parse input as CSV with a header row: %s" % one_line(exc)
            ) from exc
        return self._cast_frame(frame)

    def iter_csv(self, source: CsvSource, chunk_rows: int) -> Iterator[Any]:
        if self.pd is None:
            yield from self._csv_records(source, chunk_rows)
            return
        try:
            reader = self.pd.read_csv(source, dtype=self.csv_dtypes, chunksize=chunk_rows)
            for chunk in reader:
                yield self._cast_frame(chunk)
        except BadInput:
            raise
        except Exception as exc:
            raise BadInput(
                "Failed to parse input as CSV with a header row: %s" % one_line(exc)
            ) from exc

    def read_parquet(self, raw: bytes) -> Any:
        assert self.pd is not None, "parquet bodies are refused without pandas"
        try:
            frame = self.pd.read_parquet(io.BytesIO(raw))
        except Exception as exc:
            raise BadInput(
                "Failed to parse input as a Pandas DataFrame. Ensure that the input is a valid "
                "Parquet Pandas DataFrame. Error: %s" % one_line(exc)
            ) from exc
        return self._cast_frame(frame)

    def _csv_records(self, source: CsvSource, chunk_rows: int | None) -> Any:
        """Without pandas: rows as dicts, numbers cast per the signature; a list of batches when
        chunking, else one list."""
        if isinstance(source, str):
            with open(source, newline="", encoding="utf-8-sig") as handle:
                return self._csv_records(handle, chunk_rows)
        import csv

        batch: list[dict[str, Any]] = []
        chunks: list[list[dict[str, Any]]] = []
        reader = csv.DictReader(source)
        for row in reader:
            record: dict[str, Any] = {}
            for name, value in row.items():
                cast = _PY_CASTS.get(self.types.get(name))
                try:
                    record[name] = cast(value) if cast and value != "" else value
                except ValueError:
                    raise BadInput(
                        "cannot convert %r to %s" % (value, self.types.get(name)),
                        field="column '%s'" % name,
                        line=reader.line_num,
                    ) from None
            batch.append(record)
            if chunk_rows and len(batch) >= chunk_rows:
                chunks.append(batch)
                batch = []
        if batch or not chunks:
            chunks.append(batch)
        return chunks if chunk_rows else chunks[0]

    # ---- casting and enforcement
    def _cast_frame(self, frame: Any) -> Any:
        """Cast the signature's columns in place, like MLflow's parsing (``astype``)."""
        assert self.pd is not None
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
                    "column %s to type '%s'. Error: %s" % (name, kind, one_line(exc))
                ) from exc
        return frame

    def enforce(self, data: Any) -> Any:
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
        if self.tensor and self.np is not None and isinstance(data, self.np.ndarray):
            self._check_shape(data, self.tensor[1])
        if pd is None and sig.columns and isinstance(data, list):
            present: set[Any] = set()
            for item in data:
                if isinstance(item, dict):
                    present.update(item)
            self._check_missing(present)
        return data

    def _check_missing(self, present: set[Any]) -> None:
        missing = [
            spec["name"]
            for spec in self.signature.columns
            if spec.get("required", True) and spec["name"] not in present
        ]
        if missing:
            extra = [name for name in present if name not in self.types]
            note = " Note that there were extra inputs: %s." % extra if extra else ""
            raise SchemaMismatch("Model is missing inputs %s.%s" % (missing, note))

    def _check_shape(self, array: Any, shape: Any) -> None:
        if not shape:
            return
        if array.ndim != len(shape) or any(
            want not in (-1, None) and want != got for want, got in zip(shape, array.shape)
        ):
            raise SchemaMismatch(
                "input of shape %s does not match the signature's tensor shape %s"
                % (tuple(array.shape), tuple(shape))
            )

    def _enforce_frame(self, frame: Any) -> Any:
        np = self.np
        assert self.pd is not None and np is not None
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
                    raise SchemaMismatch(
                        "Incompatible input types for column %s. Can not safely "
                        "convert %s to %s." % (name, column.dtype, target)
                    )
                column = column.astype(target)
            result[name] = column
        return result

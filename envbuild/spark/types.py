"""The prediction columns' Spark types, from the model's output signature (or ``result_type``).

MLflow's ``spark_udf`` defaults to ``double`` without a signature; so does envbuild. A tensor
output of shape ``(-1,)`` is one scalar column, ``(-1, k)`` an array column; several named
column outputs become several columns (``score``) or one struct (``predict_udf``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from envbuild.errors import UsageError

_COLUMN_TYPES = {
    "double": "double",
    "float": "float",
    "long": "bigint",
    "integer": "int",
    "boolean": "boolean",
    "string": "string",
    "binary": "binary",
    "datetime": "timestamp",
}
_TENSOR_TYPES = {
    "float64": "double",
    "float32": "float",
    "float16": "float",
    "int64": "bigint",
    "int32": "int",
    "int16": "smallint",
    "int8": "tinyint",
    "uint32": "bigint",
    "uint16": "int",
    "uint8": "smallint",
    "bool": "boolean",
    "str": "string",
    "object": "string",
    "bytes": "binary",
}


def _column_type(spec: Mapping[str, Any]) -> str:
    kind = spec.get("type")
    if kind == "array" and isinstance(spec.get("items"), Mapping):
        return f"array<{_column_type(spec['items'])}>"
    return _COLUMN_TYPES.get(str(kind), "string")


def _tensor_type(spec: Mapping[str, Any]) -> str:
    tensor = spec.get("tensor-spec") or {}
    base = _TENSOR_TYPES.get(str(tensor.get("dtype")), "double")
    shape = list(tensor.get("shape") or [-1])
    for _ in shape[1:]:
        base = f"array<{base}>"
    return base


def signature_outputs(outputs: Any, prediction_col: str) -> list[dict[str, str]]:
    """``[{"name", "type"}]`` for the model's output signature (a Spark DDL type each)."""
    specs = [s for s in (outputs or ()) if isinstance(s, Mapping)]
    if not specs:
        return [{"name": prediction_col, "type": "double"}]
    if any(s.get("type") == "tensor" for s in specs):
        return [{"name": prediction_col, "type": _tensor_type(specs[0])}]
    if len(specs) == 1:
        return [{"name": prediction_col, "type": _column_type(specs[0])}]
    return [
        {"name": str(s.get("name") or f"{prediction_col}_{i}"), "type": _column_type(s)}
        for i, s in enumerate(specs)
    ]


def result_outputs(result_type: Any, prediction_col: str) -> list[dict[str, str]]:
    """``result_type`` (a pyspark DataType or a DDL string) as output columns: a struct's fields
    are the columns, anything else is the one prediction column."""
    from pyspark.sql.types import DataType, StructType

    if isinstance(result_type, str):
        try:
            parsed = DataType.fromDDL(result_type)
        except Exception as exc:
            raise UsageError(
                f"result_type {result_type!r} is not a Spark type ({exc.__class__.__name__})",
                field="result_type",
            ) from None
    elif isinstance(result_type, DataType):
        parsed = result_type
    else:
        raise UsageError(
            f"result_type must be a pyspark DataType or a DDL string, not {type(result_type).__name__}",
            field="result_type",
        )
    if isinstance(parsed, StructType):
        return [{"name": f.name, "type": f.dataType.simpleString()} for f in parsed.fields]
    return [{"name": prediction_col, "type": parsed.simpleString()}]


def input_columns(inputs: Any) -> tuple[list[str], list[str]]:
    """(required, optional) input column names of a column-based signature ((), () otherwise)."""
    specs = [s for s in (inputs or ()) if isinstance(s, Mapping)]
    if not specs or any(s.get("type") == "tensor" or not s.get("name") for s in specs):
        return [], []
    required = [str(s["name"]) for s in specs if s.get("required", True)]
    optional = [str(s["name"]) for s in specs if not s.get("required", True)]
    return required, optional


def input_types(inputs: Any) -> dict[str, str]:
    """Input column name -> Spark DDL type (for reading CSV input as the signature says)."""
    specs = [s for s in (inputs or ()) if isinstance(s, Mapping)]
    return {
        str(s["name"]): _column_type(s)
        for s in specs
        if s.get("name") and s.get("type") not in ("tensor", None)
    }

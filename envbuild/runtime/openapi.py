"""OpenAPI 3.0 description of the scoring server, derived from the model's MLmodel signature.

Built from the plain MLmodel dict (not mlflow's Schema classes) so that it works in environments
without mlflow and for models saved by any MLflow version. Column-based signatures give typed
``dataframe_split``/``dataframe_records``/``inputs``/``instances`` bodies, tensor-based ones give
nested arrays of the tensor's shape; without a signature the bodies are generic but still valid.
"""

from __future__ import annotations

import json
from typing import Any, Dict

Schema = Dict[str, Any]
Meta = Dict[str, Any]

OPENAPI_VERSION = "3.0.3"

COLUMN_TYPES: dict[Any, Schema] = {
    "double": {"type": "number", "format": "double"},
    "float": {"type": "number", "format": "float"},
    "long": {"type": "integer", "format": "int64"},
    "integer": {"type": "integer", "format": "int32"},
    "string": {"type": "string"},
    "boolean": {"type": "boolean"},
    "binary": {"type": "string", "format": "byte", "description": "base64-encoded bytes"},
    "datetime": {"type": "string", "format": "date-time"},
}


def _decoded(meta: Meta, part: str) -> list[Any] | None:
    raw = (meta.get("signature") or {}).get(part)
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            return None
    return raw if isinstance(raw, list) and raw else None


def tensor_scalar(dtype: Any) -> Schema:
    """JSON schema of one element of a tensor, from the numpy dtype name MLflow stores
    ("float32", "int64", "uint8", "bool", "str", "bytes", "object")."""
    name = str(dtype or "").lower()
    if name.startswith(("float", "double", "half")):
        return {"type": "number", "format": "double" if name.endswith("64") else "float"}
    if name.startswith(("int", "uint")):
        return {"type": "integer", "format": "int64" if name.endswith("64") else "int32"}
    if name.startswith("bool"):
        return {"type": "boolean"}
    if name.startswith("bytes"):
        return {"type": "string", "format": "byte"}
    if name.startswith(("str", "object")):
        return {"type": "string"}
    return {}


def tensor_schema(dtype: Any, shape: Any, drop_first: bool = False) -> Schema:
    """Nested arrays for a tensor: -1 dimensions are unbounded, others fix the item count."""
    dims = list(shape or [])
    if drop_first and dims:
        dims = dims[1:]
    schema = tensor_scalar(dtype)
    for dim in reversed(dims):
        schema = {"type": "array", "items": schema}
        if isinstance(dim, int) and dim >= 0:
            schema["minItems"] = dim
            schema["maxItems"] = dim
    return schema


def column_type(spec: Schema) -> Schema:
    """JSON schema of one column value: scalars, array, object, map and any types of MLflow."""
    kind = spec.get("type")
    if kind in COLUMN_TYPES:
        return dict(COLUMN_TYPES[kind])
    if kind == "array":
        return {"type": "array", "items": column_type(spec.get("items") or {})}
    if kind == "object":
        props = spec.get("properties") or {}
        schema = {
            "type": "object",
            "properties": {
                name: _nullable(column_type(sub), sub.get("required", True))
                for name, sub in props.items()
            },
        }
        required = [name for name, sub in props.items() if sub.get("required", True)]
        if required:
            schema["required"] = required
        return schema
    if kind == "map":
        return {"type": "object", "additionalProperties": column_type(spec.get("values") or {})}
    if kind == "tensor":
        tensor = spec.get("tensor-spec") or {}
        return tensor_schema(tensor.get("dtype"), tensor.get("shape"), drop_first=True)
    return {}


def _nullable(schema: Schema, required: Any) -> Schema:
    if not required and schema:
        schema = dict(schema, nullable=True)
    return schema


def _any_of(schemas: list[Schema]) -> Schema:
    unique = []
    for schema in schemas:
        if schema not in unique:
            unique.append(schema)
    if not unique or {} in unique:
        return {}
    return unique[0] if len(unique) == 1 else {"anyOf": unique}


def _generic_bodies() -> dict[str, Any]:
    row = {"type": "array", "items": {}}
    return {
        "DataframeSplit": {
            "type": "object",
            "required": ["data"],
            "properties": {
                "columns": {"type": "array", "items": {"type": "string"}},
                "index": {"type": "array", "items": {}},
                "data": {"type": "array", "items": row},
            },
        },
        "DataframeRecords": {"type": "array", "items": {"type": "object"}},
        "Inputs": {},
        "Instances": {"type": "array", "items": {}},
    }


def _column_bodies(columns: list[Schema]) -> dict[str, Any]:
    named = [spec for spec in columns if spec.get("name")]
    if not named:
        value = _any_of([column_type(spec) for spec in columns])
        bodies = _generic_bodies()
        bodies["DataframeSplit"]["properties"]["data"]["items"] = {"type": "array", "items": value}
        bodies["Inputs"] = {"type": "array", "items": value}
        bodies["Instances"] = {"type": "array", "items": value}
        return bodies
    names = [spec["name"] for spec in named]
    required = [spec["name"] for spec in named if spec.get("required", True)]
    values = {
        spec["name"]: _nullable(column_type(spec), spec.get("required", True)) for spec in named
    }
    record = {"type": "object", "properties": values}
    if required:
        record["required"] = required
    by_column = {
        "type": "object",
        "properties": {name: {"type": "array", "items": schema} for name, schema in values.items()},
    }
    if required:
        by_column["required"] = list(required)
    return {
        "DataframeSplit": {
            "type": "object",
            "required": ["data"],
            "properties": {
                "columns": {"type": "array", "items": {"type": "string", "enum": names}},
                "index": {"type": "array", "items": {}},
                "data": {
                    "type": "array",
                    "items": {
                        "type": "array",
                        "items": _any_of(list(values.values())),
                        "description": "one row, values in the order of 'columns': %s" % names,
                    },
                },
            },
        },
        "DataframeRecords": {"type": "array", "items": record},
        "Inputs": {"oneOf": [by_column, {"type": "array", "items": record}]},
        "Instances": {"type": "array", "items": record},
    }


def _tensor_bodies(tensors: list[Schema]) -> dict[str, Any]:
    bodies = _generic_bodies()
    named = [spec for spec in tensors if spec.get("name")]
    if len(tensors) == 1 and not named:
        tensor = tensors[0].get("tensor-spec") or {}
        dtype, shape = tensor.get("dtype"), tensor.get("shape")
        bodies["Inputs"] = tensor_schema(dtype, shape)
        bodies["Instances"] = tensor_schema(dtype, shape)
        return bodies
    whole = {}
    rows = {}
    for spec in named:
        tensor = spec.get("tensor-spec") or {}
        whole[spec["name"]] = tensor_schema(tensor.get("dtype"), tensor.get("shape"))
        rows[spec["name"]] = tensor_schema(tensor.get("dtype"), tensor.get("shape"), True)
    names = list(whole)
    bodies["Inputs"] = {"type": "object", "properties": whole}
    bodies["Instances"] = {"type": "array", "items": {"type": "object", "properties": rows}}
    if names:
        bodies["Inputs"]["required"] = names
        bodies["Instances"]["items"]["required"] = names
    return bodies


def params_schema(params: list[Schema] | None) -> Schema:
    """Schema of the optional "params" object from the signature's params list."""
    properties: Schema = {}
    schema: Schema = {"type": "object", "properties": properties}
    for param in params or []:
        value: Schema = dict(COLUMN_TYPES.get(param.get("type"), {}))
        if param.get("shape"):
            value = {"type": "array", "items": value}
        if param.get("default") is not None:
            value["default"] = param["default"]
        properties[str(param.get("name"))] = value
    if params:
        schema["additionalProperties"] = False
    return schema


def output_schema(outputs: list[Schema] | None) -> Schema:
    if not outputs:
        return {}
    if all(spec.get("type") == "tensor" for spec in outputs):
        if len(outputs) == 1:
            tensor = outputs[0].get("tensor-spec") or {}
            return tensor_schema(tensor.get("dtype"), tensor.get("shape"))
        return {"type": "object"}
    named = [spec for spec in outputs if spec.get("name")]
    values = [column_type(spec) for spec in outputs]
    record = {"type": "object", "properties": {spec["name"]: column_type(spec) for spec in named}}
    if len(outputs) == 1:
        return {"type": "array", "items": _any_of([*values, record] if named else values)}
    return {"type": "array", "items": record if named else {}}


def _wrapper(key: str, description: str) -> Schema:
    """One accepted body shape: exactly this format key (MLflow refuses two), optional params."""
    others = [other for other in _NAMES if other != key]
    return {
        "type": "object",
        "description": description,
        "required": [key],
        "properties": {
            key: {"$ref": "#/components/schemas/%s" % _NAMES[key]},
            "params": {"$ref": "#/components/schemas/Params"},
        },
        "not": {"anyOf": [{"required": [other]} for other in others]},
    }


_NAMES = {
    "dataframe_split": "DataframeSplit",
    "dataframe_records": "DataframeRecords",
    "inputs": "Inputs",
    "instances": "Instances",
}


def _probe(name: str, summary: str) -> Schema:
    responses = {"200": {"description": "ready"}, "503": {"description": "loading"}}
    return {
        "get": {"summary": summary, "operationId": name, "responses": responses},
        "head": {"summary": summary, "operationId": name + "_head", "responses": responses},
    }


def _json_response(description: str, ref: str) -> Schema:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/" + ref}}},
    }


def build_openapi(meta: Meta, runner_version: str = "1") -> dict[str, Any]:
    """The OpenAPI 3.0 document for a model described by the MLmodel dict ``meta``."""
    inputs = _decoded(meta, "inputs")
    if inputs and all(spec.get("type") == "tensor" for spec in inputs):
        bodies = _tensor_bodies(inputs)
    elif inputs:
        bodies = _column_bodies(inputs)
    else:
        bodies = _generic_bodies()
    schemas = dict(bodies)
    schemas["Params"] = params_schema(_decoded(meta, "params"))
    schemas["InvocationRequest"] = {
        "oneOf": [
            _wrapper("dataframe_split", "pandas DataFrame in 'split' orientation"),
            _wrapper("dataframe_records", "pandas DataFrame in 'records' orientation"),
            _wrapper("inputs", "tensor or column input (TF-serving 'inputs')"),
            _wrapper("instances", "row input (TF-serving 'instances')"),
        ]
    }
    schemas["InvocationResponse"] = {
        "type": "object",
        "properties": {"predictions": output_schema(_decoded(meta, "outputs"))},
    }
    schemas["Error"] = {
        "type": "object",
        "required": ["error_code", "message"],
        "properties": {
            "error_code": {
                "type": "string",
                "description": "MLflow's error code: INVALID_PARAMETER_VALUE (the input breaks "
                "the signature or params schema), BAD_REQUEST (malformed input, or the model "
                "raised on it), INTERNAL_ERROR, ...",
            },
            "message": {"type": "string"},
            "error_class": {"type": "string"},
            "sqlstate": {"type": "string"},
            "stack_trace": {"type": "string", "description": "only with ENVBUILD_DEBUG=1"},
        },
    }
    versions: Schema = {
        "type": "object",
        "properties": {
            name: {"type": "string", "nullable": True}
            for name in (
                "model_uuid",
                "run_id",
                "python_version",
                "mlflow_version",
                "runner_version",
            )
        },
    }
    versions["properties"]["status"] = {"type": "string", "enum": ["ok", "loading", "failed"]}
    versions["properties"]["pid"] = {"type": "integer"}
    versions["properties"]["error"] = {"type": "string", "description": "why loading failed"}
    schemas["Metadata"] = versions
    uuid = meta.get("model_uuid")
    errors = {
        "400": _json_response(
            "the input is malformed, does not match the signature, or the model raised on it",
            "Error",
        ),
        "413": _json_response("the body exceeds ENVBUILD_MAX_BODY_BYTES", "Error"),
        "415": _json_response(
            "unsupported or missing Content-Type (Parquet needs pandas and pyarrow)", "Error"
        ),
        "500": _json_response("the predictions could not be written as JSON", "Error"),
        "503": _json_response("the model is still loading", "Error"),
    }
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "MLflow model%s" % (" " + uuid if uuid else ""),
            "version": str(runner_version),
            "description": "Scoring server run by envbuild's runtime; request formats are "
            "MLflow's (mlflow models serve).",
        },
        "paths": {
            "/invocations": {
                "post": {
                    "summary": "Score input with the model",
                    "operationId": "invocations",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/InvocationRequest"}
                            },
                            "text/csv": {
                                "schema": {"type": "string", "description": "CSV with a header row"}
                            },
                            "application/vnd.apache.parquet": {
                                "schema": {
                                    "type": "string",
                                    "format": "binary",
                                    "description": "a pandas DataFrame written by to_parquet()",
                                }
                            },
                        },
                    },
                    "responses": dict(
                        {"200": _json_response("predictions", "InvocationResponse")}, **errors
                    ),
                }
            },
            "/ping": _probe("ping", "200 once the model is loaded, 503 before"),
            "/health": _probe("health", "the same as /ping"),
            "/version": {
                "get": {
                    "summary": "The MLflow version serving the model, as a bare string "
                    "(what `mlflow models serve` answers)",
                    "operationId": "version",
                    "responses": {
                        "200": {
                            "description": "e.g. 3.17.2 (without MLflow in the environment: "
                            "the version the model was saved with)",
                            "content": {"application/json": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
            "/metadata": {
                "get": {
                    "summary": "The model's status, model and runtime versions as JSON",
                    "operationId": "metadata",
                    "responses": {"200": _json_response("versions", "Metadata")},
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "operationId": "openapi",
                    "responses": {"200": {"description": "the OpenAPI 3.0 document"}},
                }
            },
        },
        "components": {"schemas": schemas},
    }

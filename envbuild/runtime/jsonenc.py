"""Predictions as JSON, the way MLflow writes them, for the backend that runs without MLflow.

Mirrors ``mlflow.utils.proto_json_utils`` (``_get_jsonable_obj`` with ``pandas_orient="records"``
and ``NumpyEncoder``), so that the output bytes equal ``mlflow models predict``'s. numpy and pandas
are looked up in ``sys.modules`` only: if the model did not import them, its predictions hold none
of their types.
"""

from __future__ import annotations

import base64
import datetime
import json
import sys
from typing import Any


def jsonable(data: Any) -> Any:
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


def try_convert(obj: Any) -> tuple[Any, bool]:
    """Mirror of MLflow's ``NumpyEncoder.try_convert`` (same order of checks, same results)."""
    np = sys.modules.get("numpy")
    pd = sys.modules.get("pandas")
    if np is not None:
        if isinstance(obj, np.ndarray):
            if obj.dtype == object:
                return [try_convert(item)[0] for item in obj.tolist()], True
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

    def default(self, o: Any) -> Any:
        converted, ok = try_convert(o)
        if ok:
            return converted
        return json.JSONEncoder.default(self, o)


def dumps(obj: Any) -> str:
    return json.dumps(obj, cls=JsonEncoder)

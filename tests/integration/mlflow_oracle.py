"""What MLflow itself predicts for a request, in the test process: the oracle envbuild's
predictions are compared with (these are trusted test models, so loading them here is fine)."""

from __future__ import annotations

import io
import json
from pathlib import Path


def mlflow_predictions(model: Path, request: dict) -> list:
    """MLflow's own parsing, predict and encoding of ``request`` (a scoring-server body)."""
    import mlflow.pyfunc
    from mlflow.pyfunc import scoring_server

    loaded = mlflow.pyfunc.load_model(str(model))
    data, params = scoring_server._split_data_and_params(json.dumps(request))
    parsed = scoring_server.infer_and_parse_data(data, loaded.metadata.get_input_schema())
    buffer = io.StringIO()
    scoring_server.predictions_to_json(loaded.predict(parsed, params=params), buffer)
    return json.loads(buffer.getvalue())["predictions"]

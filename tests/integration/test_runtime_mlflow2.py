"""The runtime in an MLflow 2.x environment, whose scoring-server functions differ from 3.x.

MLflow 2.12 has ``_split_data_and_params`` + ``infer_and_parse_data`` but no ``_parse_json_data``;
the runner must pick those and still write what that MLflow's own ``models predict`` writes.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.integration import runtime_models as rm

pytestmark = [pytest.mark.integration, pytest.mark.network, pytest.mark.slow]

REFERENCE = """
import sys
from mlflow.pyfunc import scoring_server
model, json_in, json_out, csv_in, csv_out = sys.argv[1:]
assert not hasattr(scoring_server, "_parse_json_data"), "expected MLflow 2.x scoring code"
scoring_server._predict(model, json_in, json_out, "json")
scoring_server._predict(model, csv_in, csv_out, "csv")
"""


def test_predict_matches_mlflow_2(runtime_mlflow2, runtime_tiny, tmp_path):
    json_in = tmp_path / "in.json"
    json_in.write_text(
        json.dumps(
            {
                "dataframe_split": {"columns": ["a", "b"], "data": [[1.5, 2], [0.1, 3]]},
                "params": {"scale": 2},
            }
        )
    )
    csv_in = tmp_path / "in.csv"
    csv_in.write_text("a,b\n1.5,2\n0.1,3\n")
    reference = subprocess.run(
        [
            str(runtime_mlflow2),
            "-c",
            REFERENCE,
            str(runtime_tiny),
            str(json_in),
            str(tmp_path / "ref.json"),
            str(csv_in),
            str(tmp_path / "ref.csv.json"),
        ],
        capture_output=True,
        text=True,
        env=rm.subprocess_env(),
        timeout=300,
    )
    assert reference.returncode == 0, reference.stderr

    ours_json = rm.run_runner(
        "predict", "--model", runtime_tiny, "--input", json_in, python=runtime_mlflow2
    )
    assert ours_json.returncode == 0, ours_json.stderr
    assert b"loading without it" not in ours_json.stderr  # really used mlflow 2
    assert ours_json.stdout == (tmp_path / "ref.json").read_bytes()
    assert json.loads(ours_json.stdout) == {"predictions": [9.5, 12.1]}

    ours_csv = rm.run_runner(
        "predict", "--model", runtime_tiny, "--input", csv_in, python=runtime_mlflow2
    )
    assert ours_csv.returncode == 0, ours_csv.stderr
    assert ours_csv.stdout == (tmp_path / "ref.csv.json").read_bytes()


def test_exit_codes_with_mlflow_2(runtime_mlflow2, runtime_tiny):
    missing = rm.run_runner(
        "predict",
        "--model",
        runtime_tiny,
        python=runtime_mlflow2,
        stdin=b'{"instances": [{"a": 1.0}]}',
    )
    assert missing.returncode == 2, missing.stderr
    assert missing.stderr.decode().strip().splitlines()[-1] == (
        "error: <stdin>: Model is missing inputs ['b']."
    )
    failing = rm.run_runner(
        "predict",
        "--model",
        runtime_tiny,
        python=runtime_mlflow2,
        stdin=b'{"inputs": {"a": [-1.0], "b": [1]}}',
    )
    assert failing.returncode == 5
    assert b"error: model failed to predict: ArithmeticError: negative a" in failing.stderr

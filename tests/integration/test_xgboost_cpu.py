"""xgboost on Linux pulls NVIDIA's NCCL (``nvidia-nccl-cu12``, 352 MB) even for a CPU model;
``--accelerator cpu`` leaves it out (real MLflow model, real uv and PyPI) and the environment
still predicts what MLflow predicts: xgboost loads NCCL only for multi-GPU training."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from envbuild.python import find_interpreter
from tests.conftest import run_cli
from tests.integration.runtime_models import make_venv

pytestmark = [pytest.mark.integration, pytest.mark.network, pytest.mark.slow]

PACKAGES = ["mlflow-skinny==3.17.2", "xgboost==3.2.0", "pandas", "scipy"]

SAVE = """\
import json, sys
import numpy as np
import pandas as pd
import xgboost as xgb
import mlflow.xgboost

rng = np.random.default_rng(0)
X = pd.DataFrame(rng.normal(size=(200, 3)), columns=["a", "b", "c"])
y = (X["a"] + 2 * X["b"] - X["c"] > 0).astype(int)
booster = xgb.train({"objective": "binary:logistic", "max_depth": 3}, xgb.DMatrix(X, y), 10)
mlflow.xgboost.save_model(booster, sys.argv[1], input_example=X.head(4))
print(json.dumps(mlflow.pyfunc.load_model(sys.argv[1]).predict(X.head(4)).tolist()))
"""


@pytest.fixture(scope="module")
def xgboost_model(tmp_path_factory) -> tuple[Path, list]:
    root = tmp_path_factory.mktemp("xgb")
    python = make_venv(root / "venv", Path(find_interpreter("3.11").path), PACKAGES)
    saved = subprocess.run(
        [str(python), "-c", SAVE, str(root / "model")], capture_output=True, text=True, check=True
    )
    return root / "model", json.loads(saved.stdout.strip().splitlines()[-1])


def env() -> dict[str, str]:
    out = dict(os.environ)
    out.pop("PIP_FIND_LINKS", None)
    out["PIP_CONFIG_FILE"] = os.devnull
    return out


def test_cpu_leaves_out_nccl_and_predicts_the_same(xgboost_model, tmp_path: Path) -> None:
    model, predictions = xgboost_model
    default = run_cli("lock", str(model), "-o", str(tmp_path / "pylock.toml"), "--json", env=env())
    assert default.returncode == 0, default.stderr
    assert any(p.startswith("nvidia-nccl-cu12==") for p in json.loads(default.stdout)["packages"])
    cpu = run_cli(
        "lock",
        str(model),
        "--accelerator",
        "cpu",
        "-o",
        str(tmp_path / "pylock.cpu.toml"),
        "--json",
        env=env(),
    )
    assert cpu.returncode == 0, cpu.stderr
    data = json.loads(cpu.stdout)
    assert not any(p.startswith("nvidia-") for p in data["packages"])
    assert any(p.startswith("xgboost==3.2.0") for p in data["packages"])
    assert any("left out nvidia-nccl-cu12" in w for w in data["warnings"])
    assert 'left-out = ["nvidia-nccl-cu12"]' in (tmp_path / "pylock.cpu.toml").read_text()
    predicted = run_cli("predict", str(model), "--accelerator", "cpu", env=env())
    assert predicted.returncode == 0, predicted.stderr
    assert json.loads(predicted.stdout) == {"predictions": predictions}
    built = run_cli("env", str(model), "--accelerator", "cpu", "--json", env=env())
    prefix = Path(json.loads(built.stdout)["environment"]["path"])
    names = [p.name.lower() for p in prefix.glob("lib/python*/site-packages/*.dist-info")]
    assert names and not any(n.startswith("nvidia") for n in names)

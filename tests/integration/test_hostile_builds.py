"""Careless and hostile model folders through the real build path (uv, a real venv): a model that
needs nothing, temporary files after a run, an unreachable direct URL with credentials."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.conftest import run_cli, write_model

pytestmark = [pytest.mark.integration]

STDLIB_MLMODEL = """\
flavors:
  python_function:
    loader_module: stdlib_loader
    code: code
    python_version: "3.11"
saved_input_example_info:
  artifact_path: input_example.json
  type: dataframe
  pandas_orient: split
"""

STDLIB_LOADER = """\
class Summer:
    def predict(self, model_input, params=None):
        return [sum(row.values()) for row in model_input]


def _load_pyfunc(path):
    return Summer()
"""


def stdlib_model(root: Path, requirements: str = "") -> Path:
    """A pyfunc that needs nothing installed: MLflow's loader protocol, standard library only,
    with a raw (not serving) input example, so predict rebuilds the request itself."""
    return write_model(
        root,
        {
            "MLmodel": STDLIB_MLMODEL,
            "requirements.txt": requirements,
            "code/stdlib_loader.py": STDLIB_LOADER,
            "input_example.json": json.dumps({"columns": ["a", "b"], "data": [[1, 2], [3, 4]]}),
        },
    )


def cli_env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ, TMPDIR=str(tmp), PIP_CONFIG_FILE=os.devnull)
    env.pop("PIP_FIND_LINKS", None)
    return env


def test_a_model_with_no_requirements_gets_an_empty_environment(tmp_path: Path) -> None:
    model = stdlib_model(tmp_path / "m")
    temp = tmp_path / "tmp"
    temp.mkdir()
    locked = run_cli("lock", str(model), "--json", env=cli_env(temp))
    assert locked.returncode == 0, locked.stdout + locked.stderr
    assert json.loads(locked.stdout)["package_count"] == 0
    built = run_cli("env", str(model), "--json", env=cli_env(temp))
    assert built.returncode == 0, built.stdout + built.stderr
    predicted = run_cli("predict", str(model), env=cli_env(temp))
    assert predicted.returncode == 0, predicted.stderr
    assert json.loads(predicted.stdout) == {"predictions": [3, 7]}
    # nothing left behind in $TMPDIR: not the rebuilt request, not the lock's work folder
    assert sorted(p.name for p in temp.iterdir()) == []


def test_an_unreachable_direct_url_names_its_line_and_hides_its_credentials(
    tmp_path: Path,
) -> None:
    secret = "tok-9f8e7d6c"
    model = stdlib_model(
        tmp_path / "m",
        f"six==1.16.0\nmylib @ http://user:{secret}@127.0.0.1:9/mylib-1.0-py3-none-any.whl\n",
    )
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = cli_env(temp) | {"UV_HTTP_RETRIES": "0"}
    proc = run_cli("lock", str(model), env=env)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    error = next(line for line in proc.stderr.splitlines() if line.startswith("error: "))
    assert "requirements.txt:2" in error, error
    assert secret not in proc.stdout + proc.stderr
    log = next(line for line in proc.stderr.splitlines() if line.startswith("log: "))
    assert secret not in Path(log.removeprefix("log: ")).read_text()
    assert not (model / "pylock.toml").exists()
    assert sorted(p.name for p in temp.iterdir()) == []

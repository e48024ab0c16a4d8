"""Shared test helpers: writing small model folders by hand (unit tests) and running the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def write_model(root: Path, files: dict[str, str]) -> Path:
    """Write ``files`` (name -> text, dedented) into ``root`` and return it."""
    root.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(textwrap.dedent(text).lstrip("\n"))
    return root


MLMODEL_SKLEARN = """
flavors:
  python_function:
    env:
      conda: conda.yaml
      virtualenv: python_env.yaml
    loader_module: mlflow.sklearn
    model_path: model.pkl
    python_version: 3.11.7
  sklearn:
    pickled_model: model.pkl
    sklearn_version: 1.5.0
mlflow_version: 2.20.0
model_uuid: 0123456789abcdef
run_id: abc
utc_time_created: '2024-05-01 10:00:00.000000'
""".lstrip("\n")

PYTHON_ENV = """
python: 3.11.7
build_dependencies:
- pip==24.0
dependencies:
- -r requirements.txt
""".lstrip("\n")

CONDA = """
channels:
- conda-forge
dependencies:
- python=3.11.7
- pip<=24.0
- pip:
  - mlflow==2.20.0
  - scikit-learn==1.5.0
name: mlflow-env
""".lstrip("\n")


@pytest.fixture
def sklearn_model(tmp_path: Path) -> Path:
    """A hand-written, consistent sklearn model folder (no binary: stages 1-2 never read it)."""
    return write_model(
        tmp_path / "model",
        {
            "MLmodel": MLMODEL_SKLEARN,
            "python_env.yaml": PYTHON_ENV,
            "conda.yaml": CONDA,
            "requirements.txt": "mlflow==2.20.0\nscikit-learn==1.5.0\n",
        },
    )


def run_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None):
    """Run ``python -m envbuild ARGS`` as a user would; returns the CompletedProcess."""
    return subprocess.run(
        [sys.executable, "-m", "envbuild", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        check=False,
    )


def run_json(*args: str) -> tuple[int, dict]:
    proc = run_cli(*args, "--json")
    return proc.returncode, json.loads(proc.stdout)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests that need PyPI or Docker are slow by definition: the fast tier (``-m "not slow"``)
    needs neither, so it runs anywhere, offline."""
    for item in items:
        if item.get_closest_marker("network") or item.get_closest_marker("docker"):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session", autouse=True)
def isolated_envbuild_cache(tmp_path_factory: pytest.TempPathFactory):
    """Tests never touch the user's envbuild cache (uv's own package cache is shared: it is
    content-addressed and keeps reruns fast). ENVBUILD_TEST_CACHE_DIR reuses one across runs."""
    import os

    path = os.environ.get("ENVBUILD_TEST_CACHE_DIR") or str(
        tmp_path_factory.mktemp("envbuild-cache")
    )
    old = os.environ.get("ENVBUILD_CACHE_DIR")
    os.environ["ENVBUILD_CACHE_DIR"] = path
    yield Path(path)
    if old is None:
        os.environ.pop("ENVBUILD_CACHE_DIR", None)
    else:
        os.environ["ENVBUILD_CACHE_DIR"] = old


@pytest.fixture(scope="session", autouse=True)
def isolated_envbuild_home(tmp_path_factory: pytest.TempPathFactory):
    """Tests never touch the user's registry of shared environments (envbuild's data folder)."""
    import os

    old = os.environ.get("ENVBUILD_HOME")
    path = tmp_path_factory.mktemp("envbuild-home")
    os.environ["ENVBUILD_HOME"] = str(path)
    yield path
    if old is None:
        os.environ.pop("ENVBUILD_HOME", None)
    else:
        os.environ["ENVBUILD_HOME"] = old


@pytest.fixture(scope="session", autouse=True)
def portable_indexes():
    """Resolve against PyPI only. This machine's pip configuration adds local file:// indexes
    (/opt/pypi, /opt/wheels) that envbuild honours like any user's settings; a lock pointing at
    them would not install inside a Docker image, so the tests switch them off."""
    import os

    saved = {
        k: os.environ.get(k)
        for k in ("PIP_CONFIG_FILE", "PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL", "PIP_INDEX_URL")
    }
    os.environ["PIP_CONFIG_FILE"] = os.devnull
    for key in ("PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL", "PIP_INDEX_URL"):
        os.environ.pop(key, None)
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session", autouse=True)
def isolated_mlflow_tracking(tmp_path_factory: pytest.TempPathFactory):
    """MLflow 3 writes ./mlflow.db on its first tracking call; keep it out of the checkout."""
    import os

    saved = os.environ.get("MLFLOW_TRACKING_URI")
    if saved is None:
        db = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{db}"
    yield
    if saved is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)

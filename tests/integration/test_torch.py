"""A real PyTorch model logged with the CPU build of torch, end to end (real MLflow, uv, PyPI).

The logging environment is a throwaway venv made with pip, which takes this machine's CPU build
of ``torch==2.13.0`` from its local files (``download.pytorch.org`` is not reachable here). The
test serves that wheel from a PEP 503 simple index on loopback and gives it to envbuild as the
PyTorch CPU mirror (``ENVBUILD_TORCH_INDEX_URL``); everything else comes from PyPI. Then:

* ``capture --write`` locks ``torch==2.13.0+cpu`` from the mirror (the label chooses the CPU
  index, no ``--trust-model-indexes``), lists the roots in requirements.txt, and reports the
  torchvision that fails to import beside the CPU torch instead of pinning it;
* ``predict`` builds the environment from that lock (no ``nvidia-*`` package in it) and predicts
  what MLflow predicted;
* ``lock --accelerator cuda`` resolves the CUDA build instead (resolve only: 3 GB not installed);
* an unreachable mirror is one line naming it.

The venv (about 1.2 GB) and the wheel's copy are removed at the end (torch_model.py).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.integration.torch_model import logged_torch_model

pytestmark = [pytest.mark.integration, pytest.mark.network, pytest.mark.slow]


@pytest.fixture(scope="module")
def logged(tmp_path_factory) -> Iterator[dict]:
    with logged_torch_model(tmp_path_factory.mktemp("torch")) as facts:
        yield facts


def cli_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PIP_FIND_LINKS", None)
    env["PIP_CONFIG_FILE"] = os.devnull  # this machine's file:// indexes: not for the locks
    env.update(extra)
    return env


def cli(*args: str, **extra: str) -> subprocess.CompletedProcess:
    return run_cli(*args, env=cli_env(**extra))


@pytest.fixture(scope="module")
def captured(logged) -> dict:
    done = cli(
        "capture",
        str(logged["model"]),
        "--python",
        str(logged["python"]),
        "--write",
        "--json",
        ENVBUILD_TORCH_INDEX_URL=logged["mirror"],
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_capture_locks_the_cpu_build_from_the_mirror_and_reports_the_broken_torchvision(
    logged, captured
) -> None:
    model = logged["model"]
    assert "torch==2.13.0+cpu" in captured["requirements"]
    lines = (model / "requirements.txt").read_text().splitlines()
    assert lines[0] == "--extra-index-url https://download.pytorch.org/whl/cpu"  # for pip
    assert lines[1:] == captured["requirements"]
    assert "numpy" not in {r.split("==")[0].lower() for r in lines}  # torch requires it: lock
    (vision,) = captured["broken"]
    assert vision["name"] == "torchvision"
    assert "operator torchvision::nms does not exist" in vision["broken"]
    assert not any(r.startswith("torchvision") for r in captured["requirements"])
    lock = (model / "pylock.toml").read_text()
    assert 'name = "torchvision"' not in lock
    assert 'version = "2.13.0+cpu"' in lock
    assert f'accelerator-index = "{logged["mirror"]}"' in lock
    assert 'accelerator = "cpu"' in lock and "nvidia" not in lock


def test_the_environment_has_no_nvidia_package_and_predicts_what_mlflow_predicts(
    logged, captured
) -> None:
    model = str(logged["model"])
    mirror = logged["mirror"]
    env = cli("env", model, "--json", ENVBUILD_TORCH_INDEX_URL=mirror)
    assert env.returncode == 0, env.stderr
    report = json.loads(env.stdout)
    assert report["lock_source"] == "model"
    prefix = Path(report["environment"]["path"])
    installed = {
        p.name.split("-")[0].lower() for p in prefix.glob("lib/python*/site-packages/*.dist-info")
    }
    assert "torch" in installed and not any(n.startswith("nvidia") for n in installed)
    (torch_info,) = prefix.glob("lib/python*/site-packages/torch-*.dist-info")
    assert torch_info.name == "torch-2.13.0+cpu.dist-info"
    predicted = cli("predict", model, ENVBUILD_TORCH_INDEX_URL=mirror)
    assert predicted.returncode == 0, predicted.stderr
    assert json.loads(predicted.stdout) == {"predictions": logged["predictions"]}


def test_auto_and_cuda_locks_of_the_same_model(logged, captured, tmp_path: Path) -> None:
    model = str(logged["model"])
    auto = cli(
        "lock",
        model,
        "--accelerator",
        "auto",
        "-o",
        str(tmp_path / "pylock.auto.toml"),
        "--json",
        ENVBUILD_TORCH_INDEX_URL=logged["mirror"],
    )
    assert auto.returncode == 0, auto.stderr
    data = json.loads(auto.stdout)
    assert data["accelerator"] == "cpu"
    assert data["accelerator_reason"].startswith("torch==2.13.0+cpu (requirements.txt:")
    cuda = cli(
        "lock", model, "--accelerator", "cuda", "-o", str(tmp_path / "pylock.cuda.toml"), "--json"
    )
    assert cuda.returncode == 0, cuda.stderr
    data = json.loads(cuda.stdout)
    assert data["accelerator"] == "cuda"
    assert "torch==2.13.0" in data["packages"]  # PyPI's Linux build: the CUDA one
    nvidia = [p for p in data["packages"] if p.startswith("nvidia-")]
    assert any(p.startswith("nvidia-cudnn-cu") for p in nvidia), data["packages"]
    assert any("is resolved as torch==2.13.0 for --accelerator cuda" in w for w in data["warnings"])


def test_an_unreachable_mirror_is_named(logged, captured, tmp_path: Path) -> None:
    done = cli(
        "lock",
        str(logged["model"]),
        "--accelerator",
        "cpu",
        "-o",
        str(tmp_path / "pylock.toml"),
        "--torch-index-url",
        "http://127.0.0.1:9/pt/{accelerator}",
        UV_HTTP_RETRIES="0",
    )
    assert done.returncode == 3
    first = done.stderr.strip().splitlines()[0]
    assert "cannot reach the PyTorch cpu index http://127.0.0.1:9/pt/cpu" in first, done.stderr
    assert "--torch-index-url" in done.stderr

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

The venv (about 1.2 GB) and the wheel's copy are removed at the end.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from envbuild.python import find_interpreter
from tests.conftest import run_cli

pytestmark = [pytest.mark.integration, pytest.mark.network, pytest.mark.slow]

TORCH = "torch==2.13.0"  # the CPU build pip finds among this machine's local files (cp311)
VISION = "torchvision==0.28.0"  # PyPI's: fails to import beside the CPU torch
MLFLOW = "mlflow-skinny==3.17.2"

CODE = """\
import torch


def vision_helper():  # never called: a static import capture must check
    import torchvision

    return torchvision.__version__
"""

SAVE = """\
import json, sys
import numpy as np
import torch
import mlflow.pytorch
from mlflow.models import ModelSignature
from mlflow.types import Schema, TensorSpec

model = torch.nn.Sequential(torch.nn.Linear(3, 2))
with torch.no_grad():
    model[0].weight.copy_(torch.tensor([[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]]))
    model[0].bias.copy_(torch.tensor([0.1, -0.2]))
example = np.array([[1.0, 2.0, 3.0], [0.5, -1.0, 4.0]], dtype=np.float32)
signature = ModelSignature(
    inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, 3))]),
    outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, 2))]),
)
mlflow.pytorch.save_model(
    model, sys.argv[1], input_example=example, signature=signature, code_paths=[sys.argv[2]]
)
print(json.dumps(mlflow.pyfunc.load_model(sys.argv[1]).predict(example).tolist()))
"""


def machine_pip_env() -> dict[str, str]:
    """pip with this machine's own configuration (the session's tests switch it off for the
    locks: see tests/conftest.py), which is where the CPU build of torch is found."""
    env = dict(os.environ)
    env.pop("PIP_CONFIG_FILE", None)
    return env


def pip(python: Path, *args: str) -> None:
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *args],
        check=True,
        capture_output=True,
        text=True,
        env=machine_pip_env(),
    )


def simple_index(root: Path, wheel: Path) -> Path:
    """A PEP 503 index of one wheel (the file's sha256 in the link, as PyPI gives it)."""
    import hashlib
    from urllib.parse import quote

    digest = hashlib.sha256()
    with wheel.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    (root / "simple" / "torch").mkdir(parents=True)
    link = f"/files/{quote(wheel.name)}#sha256={digest.hexdigest()}"
    (root / "simple" / "torch" / "index.html").write_text(
        f'<html><body><a href="{link}">{wheel.name}</a></body></html>\n'
    )
    (root / "files").mkdir()
    shutil.move(str(wheel), root / "files" / wheel.name)
    return root


@pytest.fixture(scope="module")
def logged(tmp_path_factory) -> Iterator[dict]:
    """The logging venv, the model saved from it, MLflow's predictions and the loopback mirror."""
    root = tmp_path_factory.mktemp("torch")
    python311 = Path(find_interpreter("3.11").path)
    try:
        subprocess.run([str(python311), "-m", "venv", str(root / "venv")], check=True)
        python = root / "venv" / "bin" / "python"
        # pip's own configuration (this machine's local files) supplies the CPU build of torch
        wheels = root / "wheels"
        subprocess.run(
            [str(python), "-m", "pip", "download", "-q", "--no-deps", "-d", str(wheels), TORCH],
            check=True,
            capture_output=True,
            env=machine_pip_env(),
        )
        found = list(wheels.glob("torch-2.13.0+cpu-*.whl"))
        assert found, f"pip found no CPU build of {TORCH} here: {sorted(wheels.iterdir())}"
        (wheel,) = found
        # from a find-links folder, as pip's configuration does it (a wheel given by path would
        # be recorded as a local build); the label makes it win over PyPI's 3 GB CUDA build
        pip(python, "--find-links", str(wheels), TORCH, MLFLOW, "pandas")
        pip(python, "--no-deps", VISION)
        version = subprocess.run(
            [str(python), "-c", "import torch; print(torch.__version__)"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        assert version == "2.13.0+cpu", version
        mirror = simple_index(root / "mirror", wheel)
        code = root / "torch_model_code.py"
        code.write_text(CODE)
        saved = subprocess.run(
            [str(python), "-c", SAVE, str(root / "model"), str(code)],
            capture_output=True,
            text=True,
            check=True,
            cwd=root,
        )
        handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(mirror))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield {
                "python": python,
                "model": root / "model",
                "predictions": json.loads(saved.stdout.strip().splitlines()[-1]),
                "mirror": f"http://127.0.0.1:{server.server_address[1]}/simple",
                "root": root,
            }
        finally:
            server.shutdown()
            server.server_close()
    finally:
        shutil.rmtree(root, ignore_errors=True)  # ~1.2 GB venv and the wheel


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

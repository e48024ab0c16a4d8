"""A real PyTorch model logged with the CPU build of torch, and a loopback PyTorch CPU mirror
(for tests/integration/test_torch.py and bench/image.py).

The logging environment is a throwaway venv made with pip, which takes this machine's CPU build
of ``torch==2.13.0`` from its local files (``download.pytorch.org`` is not reachable here); the
same wheel is served from a PEP 503 simple index on loopback, for envbuild to use as the PyTorch
CPU mirror (``ENVBUILD_TORCH_INDEX_URL``). Everything is removed when the context ends (the venv
is about 1.2 GB).
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

from envbuild.python import find_interpreter

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


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """No access log on stderr."""


@contextlib.contextmanager
def logged_torch_model(root: Path) -> Iterator[dict]:
    """The logging venv, the model saved from it, MLflow's predictions and the loopback mirror
    (``python``, ``model``, ``predictions``, ``mirror``, ``wheel``), all under ``root``."""
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
        handler = functools.partial(_QuietHandler, directory=str(mirror))
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
                "wheel": mirror / "files" / wheel.name,
            }
        finally:
            server.shutdown()
            server.server_close()
    finally:
        shutil.rmtree(root, ignore_errors=True)  # ~1.2 GB venv and the wheel

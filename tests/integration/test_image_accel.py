"""Images of accelerator locks and of locks holding local files, with a real engine (no GPU here).

One small image covers both halves of issue 16's image work: a pyfunc model whose lock takes a
package from a find-links folder the test makes (a wheel no index has, so the build can only
install it from the context) and NVIDIA's CUDA runtime as a wheel (``--accelerator cuda``, so the
image is a CUDA-wheel image on the ``python:X.Y-slim`` stand-in). The container serves the model;
the labels and environment say which device; the local file is in no layer of the final image.
``--gpus all`` reaches the engine as a device request: without a GPU runtime it fails with one
line. What runs on a real GPU is not tested here (README).
"""

from __future__ import annotations

import base64
import hashlib
import json
import zipfile
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.integration import docker_images
from tests.integration.docker_images import host_ca_bundle, remove_image
from tests.integration.test_image import (
    cli_env,
    http,
    new_tag,
    predict_example_in,
    python_in,
    reuse_tag,
    saved_image_contains,
    serving,
)

docker_engine = docker_images.docker_engine
python_slim_images = docker_images.python_slim_images

pytestmark = [pytest.mark.integration, pytest.mark.docker, pytest.mark.network, pytest.mark.slow]

LOCAL_NAME = "envbuild-accel-localpkg"  # on no index: only the find-links folder has it
CUDA_RUNTIME = "nvidia-cuda-runtime-cu12==12.8.90"  # ~1 MB: a CUDA library as a wheel
WHEEL_MARK = b"envbuild-accel-wheel-archive-comment"

MLMODEL = """\
flavors:
  python_function:
    loader_module: accel_loader
    code: code
    python_version: 3.11.7
    env:
      virtualenv: python_env.yaml
mlflow_version: 2.20.0
"""

LOADER = """\
import envbuild_accel_localpkg


class Scaler:
    def predict(self, model_input, params=None):
        return [envbuild_accel_localpkg.scale(row["a"]) for row in model_input]


def _load_pyfunc(path):
    return Scaler()
"""


def make_wheel(folder: Path) -> Path:
    """A pure-Python wheel written by hand (zip + METADATA + WHEEL + RECORD)."""
    module = "envbuild_accel_localpkg"
    dist_info = f"{module}-1.0.dist-info"
    files = {
        f"{module}/__init__.py": b"SECRET_MARK = 'envbuild-local-wheel-mark'\n"
        b"def scale(x):\n    return 3 * x\n",
        f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {LOCAL_NAME}\nVersion: 1.0\n".encode(),
        f"{dist_info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: envbuild-test\n"
        b"Root-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append(f"{dist_info}/RECORD,,")
    files[f"{dist_info}/RECORD"] = ("\n".join(record) + "\n").encode()
    path = folder / f"{module}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
        archive.comment = WHEEL_MARK  # in the .whl's bytes only, not in what it installs
    return path


@pytest.fixture(scope="module")
def local_model(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("accel-image")
    links = root / "links"
    links.mkdir()
    make_wheel(links)
    model = root / "model"
    (model / "code").mkdir(parents=True)
    (model / "MLmodel").write_text(MLMODEL)
    (model / "python_env.yaml").write_text("python: 3.11.7\ndependencies:\n- -r requirements.txt\n")
    (model / "requirements.txt").write_text(
        f"{LOCAL_NAME}==1.0\n{CUDA_RUNTIME}\npyyaml==6.0.2\n"  # the runner reads MLmodel
    )
    (model / "code" / "accel_loader.py").write_text(LOADER)
    (model / "serving_input_example.json").write_text(
        json.dumps({"dataframe_split": {"columns": ["a"], "data": [[1], [2.5]]}})
    )
    args = ("lock", str(model), "--find-links", str(links), "--accelerator", "cuda", "--json")
    locked = run_cli(*args, env=cli_env())
    assert locked.returncode == 0, locked.stderr
    return model, json.loads(locked.stdout)


def test_an_image_of_a_lock_with_local_files_and_cuda_wheels_serves_the_model(
    local_model, python_slim_images, docker_engine
) -> None:
    model, lock = local_model
    assert lock["accelerator"] == "cuda"
    assert any("local files" in w for w in lock["warnings"])  # a lock of this machine's files
    tag = new_tag("accel")
    try:
        built = run_cli(
            "image",
            str(model),
            "-t",
            tag,
            "--network",
            "host",
            "--ca-cert",
            str(host_ca_bundle()),
            "--json",
            env=cli_env(),
        )
        assert built.returncode == 0, built.stdout + built.stderr
        result = json.loads(built.stdout)
        assert result["lock_source"] == "model"
        assert result["local_files"] == ["envbuild_accel_localpkg-1.0-py3-none-any.whl"]
        assert result["base_image"] == python_slim_images["3.11"]  # CUDA as wheels: slim
        assert result["accelerator"]["device"] == "cuda"
        labels = result["labels"]
        assert labels["envbuild.device"] == "cuda" and labels["envbuild.cuda"] == "12.8"
        assert labels["envbuild.accelerator"] == "cuda"
        image = docker_engine.images.get(tag)
        assert image.labels["envbuild.device"] == "cuda"
        env = dict(item.split("=", 1) for item in image.attrs["Config"]["Env"])
        assert env["ENVBUILD_DEVICE"] == "cuda" and env["ENVBUILD_CUDA"] == "12.8"
        assert predict_example_in(tag) == {"predictions": [3, 7.5]}
        with serving(docker_engine, tag) as (base, _):
            body = json.dumps({"dataframe_split": {"columns": ["a"], "data": [[4]]}}).encode()
            assert http(f"{base}/invocations", body) == (200, b'{"predictions": [12]}')
        installed = python_in(
            tag, "import importlib.metadata as m; print(m.version('nvidia-cuda-runtime-cu12'))"
        )
        assert installed.strip() == "12.8.90"
        # the wheel's files are in the environment; the wheel itself is in no layer
        found = saved_image_contains(docker_engine, tag, [b"envbuild-local-wheel-mark", WHEEL_MARK])
        assert found[b"envbuild-local-wheel-mark"] and not found[WHEEL_MARK]
    finally:
        remove_image(tag)


def test_gpus_reach_the_engine_as_a_device_request(local_model, python_slim_images) -> None:
    """No GPU runtime on this engine: the request is refused, in one line, with a hint."""
    model, _ = local_model
    try:
        done = run_cli("predict", str(model), "--kind", "docker", "--gpus", "all", env=cli_env())
    finally:
        remove_image(reuse_tag(model))
    assert done.returncode == 4, done.stdout + done.stderr
    first = done.stderr.strip().splitlines()[-2 if "hint:" in done.stderr else -1]
    assert "--gpus all" in done.stderr and "GPU" in done.stderr, done.stderr
    assert first.startswith("error:")
    bad = run_cli("predict", str(model), "--kind", "docker", "--gpus", "two")
    assert bad.returncode == 2 and "not a GPU count" in bad.stderr


def test_an_offline_image_builds_without_network(local_model, python_slim_images) -> None:
    """--offline: installed here from uv's cache and the find-links wheel, then a build whose
    RUN steps have no network at all (--network none)."""
    model, _ = local_model
    warm = run_cli("env", str(model), "--no-compile", env=cli_env())  # uv's cache has it all
    assert warm.returncode == 0, warm.stderr
    tag = new_tag("accel-offline")
    try:
        built = run_cli(
            "image",
            str(model),
            "-t",
            tag,
            "--offline",
            "--network",
            "none",
            "--json",
            env=cli_env(),
        )
        assert built.returncode == 0, built.stdout + built.stderr
        result = json.loads(built.stdout)
        assert result["offline"] is True and result["local_files"] == []
        assert predict_example_in(tag) == {"predictions": [3, 7.5]}
        compiled = python_in(
            tag,
            "import envbuild_accel_localpkg, importlib.util as u; "
            "print(u.cache_from_source(envbuild_accel_localpkg.__file__))",
        ).strip()
        assert python_in(tag, f"import os; print(os.path.exists({compiled!r}))").strip() == "True"
    finally:
        remove_image(tag)

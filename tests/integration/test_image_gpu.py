"""What `envbuild image` decides for accelerator locks and local files, without an engine (fast;
no Docker, no network, no GPU): the base image from the CUDA table, the Python installed into a
CUDA base, the labels and environment naming the device, the rendered Dockerfile, and the build
context holding the lock's local files. The image tests (test_image.py) build such images."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from envbuild.envspec import read_env
from envbuild.errors import BuildError
from envbuild.image import ImageOptions, plan_image, write_context
from envbuild.image.context import dockerfile_text
from envbuild.image.gpu import choose_base, table
from envbuild.lock.pylock import lock_from_text
from envbuild.lock.select import LockChoice
from envbuild.lock.toml import render
from envbuild.model import load_model
from tests.conftest import write_model

pytestmark = [pytest.mark.integration]

MLMODEL = """
flavors:
  python_function:
    env:
      virtualenv: python_env.yaml
    loader_module: mlflow.tensorflow
    python_version: 3.11.7
mlflow_version: 3.1.0
"""


def model(root: Path) -> Path:
    return write_model(
        root,
        {
            "MLmodel": MLMODEL,
            "python_env.yaml": "python: 3.11.7\ndependencies:\n- -r requirements.txt\n",
            "requirements.txt": "tensorflow==2.17.0\n",
        },
    )


def wheel(name: str, url: str | None = None) -> dict:
    return {
        "name": name,
        "url": url or f"https://files.example.org/{name}",
        "hashes": {"sha256": hashlib.sha256(name.encode()).hexdigest()},
    }


def lock(*packages: tuple[str, str], accelerator: str | None = "cuda", wheels=None) -> str:
    """A pylock.toml as envbuild writes it, for linux/amd64 and Python 3.11.7."""
    tool = {"python": "3.11.7", "platforms": ["linux/amd64"], "input-digest": "sha256:x"}
    if accelerator:
        tool["accelerator"] = accelerator
    entries = []
    for name, version in packages:
        files = (wheels or {}).get(name) or [wheel(f"{name}-{version}-py3-none-any.whl")]
        entries.append({"name": name, "version": version, "wheels": files})
    doc = {
        "lock-version": "1.0",
        "environments": ["sys_platform == 'linux' and platform_machine == 'x86_64'"],
        "requires-python": "==3.11.*",
        "created-by": "envbuild",
        "packages": entries,
        "tool": {"envbuild": tool},
    }
    return render(doc)


def plan_for(tmp_path: Path, text: str, **options):
    spec = load_model(model(tmp_path / "m"))
    lk = lock_from_text(text, path=tmp_path / "pylock.toml")
    opts = ImageOptions(platform="linux/amd64", uv_source="binary", **options)
    return plan_image(spec, read_env(spec), opts, lock=LockChoice(lk, "given"))


def froms(text: str) -> list[str]:
    return re.findall(r"^FROM (.*)$", text, flags=re.M)


CUDA_WHEELS = [
    ("nvidia-cublas-cu12", "12.5.3.2"),
    ("nvidia-cuda-runtime-cu12", "12.5.82"),
    ("nvidia-cudnn-cu12", "9.3.0.75"),
]


def test_tensorflow_on_system_cuda_gets_a_cuda_base_with_python_installed(tmp_path: Path) -> None:
    plan = plan_for(tmp_path, lock(("tensorflow", "2.17.0"), ("numpy", "1.26.4")))
    base = "nvidia/cuda:12.3.2-cudnn8-runtime-ubuntu22.04"
    assert plan.base_image == base and plan.python_install
    assert plan.gpu is not None and plan.gpu.reason == (
        "tensorflow 2.17.0 loads the system's CUDA 12.3 and cuDNN 8.9 (no CUDA wheels in the lock)"
    )
    text = dockerfile_text(plan)
    assert froms(text) == [f"{base} AS build", base]
    build, final = text.split(f"FROM {base}\n")
    assert "uv python install --quiet 3.11.7" in build
    assert "sys.version_info" not in build  # the base has no Python to check
    assert "COPY --from=build /opt/python /opt/python" in final
    assert "ENVBUILD_DEVICE=cuda" in final and "ENVBUILD_CUDA=12.3" in final
    assert "NVIDIA_DRIVER_CAPABILITIES=compute,utility" in final
    assert plan.labels["envbuild.device"] == "cuda" and plan.labels["envbuild.cuda"] == "12.3"
    assert plan.labels["envbuild.accelerator"] == "cuda"


@pytest.mark.parametrize(
    ("version", "base"),
    [
        ("2.18.0", "nvidia/cuda:12.5.1-cudnn-runtime-ubuntu22.04"),
        ("2.15.1", "nvidia/cuda:12.2.2-cudnn8-runtime-ubuntu22.04"),
        ("2.13.1", "nvidia/cuda:11.8.0-cudnn8-runtime-ubuntu22.04"),
        ("2.10.0", "nvidia/cuda:11.2.2-cudnn8-runtime-ubuntu20.04"),
    ],
)
def test_the_table_row_follows_the_tensorflow_version(version: str, base: str) -> None:
    choice = choose_base(lock_from_text(lock(("tensorflow", version))))
    assert choice.base_image == base and choice.python_install


def test_a_tensorflow_newer_than_the_table_gets_its_newest_row_and_a_warning() -> None:
    choice = choose_base(lock_from_text(lock(("tensorflow", "2.21.0"))))
    newest = table()["tensorflow"][0]
    assert choice.base_image == newest["base"]
    assert "newer than envbuild's CUDA table" in choice.warnings[0]


def test_cuda_libraries_as_wheels_run_on_python_slim(tmp_path: Path) -> None:
    and_cuda = lock(("tensorflow", "2.17.0"), *CUDA_WHEELS)
    plan = plan_for(tmp_path, and_cuda)
    assert plan.base_image.endswith("python:3.11-slim") and not plan.python_install
    assert plan.labels["envbuild.cuda"] == "12.5"  # from nvidia-cuda-runtime-cu12
    text = dockerfile_text(plan)
    assert "uv python install" not in text and "sys.version_info" in text
    assert "ENVBUILD_DEVICE=cuda" in text
    # PyTorch's CUDA builds: the default builds on Linux, accelerator not even given
    torch = choose_base(lock_from_text(lock(("torch", "2.13.0"), *CUDA_WHEELS, accelerator=None)))
    assert (torch.device, torch.base_image, torch.cuda) == ("cuda", None, "12.5")


def test_onnxruntime_gpu_without_its_wheels_is_warned_about() -> None:
    choice = choose_base(lock_from_text(lock(("onnxruntime-gpu", "1.22.0"))))
    assert choice.base_image is None and not choice.python_install
    assert "onnxruntime-gpu 1.22.0 loads the system's CUDA" in choice.warnings[0]


def test_base_image_still_overrides(tmp_path: Path) -> None:
    plan = plan_for(tmp_path, lock(("tensorflow", "2.17.0")), base_image="my/cuda-python:3.11")
    assert plan.base_image == "my/cuda-python:3.11" and not plan.python_install
    assert "uv python install" not in dockerfile_text(plan)


def test_a_cpu_lock_is_a_cpu_image(tmp_path: Path) -> None:
    plan = plan_for(tmp_path, lock(("torch", "2.13.0+cpu"), accelerator="cpu"))
    assert plan.labels["envbuild.device"] == "cpu" and "envbuild.cuda" not in plan.labels
    assert plan.labels["envbuild.accelerator"] == "cpu"
    text = dockerfile_text(plan)
    assert "ENVBUILD_DEVICE" not in text and "NVIDIA_" not in text


def test_local_files_are_copied_into_the_build_stage_only(tmp_path: Path) -> None:
    links = tmp_path / "links"
    links.mkdir()
    mine = links / "mylib-1.0-py3-none-any.whl"
    mine.write_bytes(b"a wheel")
    mac = links / "fast-1.0-cp311-cp311-macosx_11_0_arm64.whl"
    mac.write_bytes(b"for another platform")
    linux = links / "fast-1.0-cp311-cp311-manylinux_2_28_x86_64.whl"
    linux.write_bytes(b"for this image")
    text = lock(
        ("mylib", "1.0"),
        ("fast", "1.0"),
        ("six", "1.16.0"),
        accelerator=None,
        wheels={
            "mylib": [wheel(mine.name, mine.as_uri())],
            "fast": [wheel(mac.name, mac.as_uri()), wheel(linux.name, linux.as_uri())],
        },
    )
    plan = plan_for(tmp_path, text)
    assert [f.name for f in plan.local_files] == [mine.name, linux.name]
    assert plan.install_lock is not None and "file://" not in plan.install_lock
    assert f'path = "files/{mine.name}"' in plan.install_lock
    assert plan.lock.text == text  # the image keeps the lock itself as it is
    assert not any("will not install" in w for w in plan.warnings)
    context = write_context(plan, tmp_path / "ctx")
    assert sorted(p.name for p in (context / "build" / "files").iterdir()) == sorted(
        [mine.name, linux.name]
    )
    assert (context / "build" / "pylock.toml").read_text() == plan.install_lock
    dockerfile = (context / "Dockerfile").read_text()
    build, final = dockerfile.split("\nFROM ", 2)[1:]
    assert "COPY build/files/ /opt/envbuild-build/files/" in build
    assert " build/" not in final and "files/" not in final


def test_a_missing_local_file_and_a_local_folder_are_refused(tmp_path: Path) -> None:
    gone = tmp_path / "gone-1.0-py3-none-any.whl"
    text = lock(
        ("gone", "1.0"), accelerator=None, wheels={"gone": [wheel(gone.name, gone.as_uri())]}
    )
    with pytest.raises(BuildError) as info:
        plan_for(tmp_path / "a", text)
    assert "does not exist on this machine" in str(info.value)
    folder = lock(("src", "1.0"), accelerator=None).replace(
        'name = "src"\nversion = "1.0"\n',
        'name = "src"\nversion = "1.0"\ndirectory = { path = "/src" }\n',
    )
    with pytest.raises(BuildError) as info:
        plan_for(tmp_path / "b", folder)
    assert "from a local folder" in str(info.value) and "pip wheel" in str(info.value.hint)

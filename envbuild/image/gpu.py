"""Which base image a lock needs for its accelerator, from one data table (``cuda_bases.toml``).

A CUDA lock whose frameworks load CUDA from wheels (PyTorch's builds, ``jax[cuda12]``,
``onnxruntime-gpu[cuda,cudnn]``: the ``nvidia-*`` distributions are in the lock) runs on
``python:X.Y-slim``: the container needs only the host's driver, which ``--gpus`` passes in. A
framework that loads the system's CUDA (TensorFlow from PyPI without ``[and-cuda]``) needs an
``nvidia/cuda:X.Y-cudnnN-runtime`` base with the CUDA and cuDNN it was built with; such a base
has no Python of the model's version, so the build stage installs one (uv's standalone builds)
and the final stage copies it. ``--base-image`` overrides the choice (and must then hold the
model's Python ``X.Y``).
"""

from __future__ import annotations

import fnmatch
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from envbuild.accelerator import cuda_version, is_cuda_library
from envbuild.lock.pylock import Lock

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, from PyPI
    import tomli as tomllib

TABLE = Path(__file__).resolve().parent / "cuda_bases.toml"


@lru_cache(maxsize=1)
def table() -> dict[str, Any]:
    """The compatibility table (see its header for the sources)."""
    return tomllib.loads(TABLE.read_text(encoding="utf-8"))


@dataclass(frozen=True)
class BaseChoice:
    """The accelerator an image is for and the base it needs."""

    device: str  # cpu, cuda, rocm, xpu
    accelerator: str | None  # the lock's (cpu, cuda, cu121, ...)
    cuda: str | None  # CUDA X.Y: of the lock's wheels, else of the chosen base
    base_image: str | None  # None: the default python:X.Y-slim
    python_install: bool  # the base has no Python: the build stage installs it
    reason: str
    warnings: tuple[str, ...] = field(default=())

    def labels(self) -> dict[str, str]:
        out = {"envbuild.device": self.device}
        if self.accelerator:
            out["envbuild.accelerator"] = self.accelerator
        if self.cuda:
            out["envbuild.cuda"] = self.cuda
        return out

    def to_dict(self) -> dict[str, object]:
        return {
            "device": self.device,
            "accelerator": self.accelerator,
            "cuda": self.cuda,
            "base_image": self.base_image,
            "python_install": self.python_install,
            "reason": self.reason,
        }


def _device(lk: Lock) -> str:
    accelerator = lk.accelerator or ""
    if accelerator == "cuda" or (accelerator.startswith("cu") and accelerator[2:].isdigit()):
        return "cuda"
    if accelerator.startswith("rocm"):
        return "rocm"
    if accelerator == "xpu":
        return "xpu"
    if not accelerator and any(is_cuda_library(canonicalize_name(p.name)) for p in lk.packages):
        return "cuda"  # the default builds on Linux: PyPI's torch is a CUDA build
    return "cpu"


def _version(text: str) -> Version | None:
    try:
        return Version(text)
    except InvalidVersion:
        return None


def choose_base(lk: Lock) -> BaseChoice:
    """The base an image of ``lk`` needs (None: the default ``python:X.Y-slim``), and why."""
    device = _device(lk)
    pins = [(p.name, p.version) for p in lk.packages]
    cuda = cuda_version(pins) if device == "cuda" else None
    if device != "cuda":
        return BaseChoice(device, lk.accelerator, None, None, False, f"a {device} lock")
    names = {canonicalize_name(p.name): p for p in lk.packages}
    data = table()
    warnings: list[str] = []
    for framework, facts in sorted(data["frameworks"].items()):
        present = [names[n] for n in facts["names"] if n in names]
        if not present:
            continue
        package = present[0]
        if all(any(fnmatch.fnmatch(n, pattern) for n in names) for pattern in facts["wheels"]):
            continue  # its CUDA libraries come as wheels
        rows = data.get(framework) if facts.get("builds") != "none" else None
        version = _version(package.version)
        if not rows or version is None:
            warnings.append(
                f"{package.name} {package.version} loads the system's CUDA and the lock holds no "
                f"CUDA wheels for it: install it with its CUDA extra ({framework}'s nvidia-* "
                "wheels) or pass --base-image with CUDA and Python"
            )
            continue
        row = next((r for r in rows if version >= Version(r["from"])), None)
        if row is None:
            warnings.append(
                f"{package.name} {package.version} is older than envbuild's CUDA table: pass "
                "--base-image"
            )
            continue
        if version.release[:2] > Version(rows[0]["from"]).release[:2]:
            warnings.append(
                f"{package.name} {package.version} is newer than envbuild's CUDA table (up to "
                f"{rows[0]['from']}): assuming CUDA {row['cuda']} and cuDNN {row['cudnn']}; "
                "--base-image overrides"
            )
        reason = (
            f"{package.name} {package.version} loads the system's CUDA {row['cuda']} and cuDNN "
            f"{row['cudnn']} (no CUDA wheels in the lock)"
        )
        return BaseChoice(
            device, lk.accelerator, cuda or row["cuda"], row["base"], True, reason, tuple(warnings)
        )
    reason = "every CUDA library comes as wheels: the host's driver is all the image needs"
    return BaseChoice(device, lk.accelerator, cuda, None, False, reason, tuple(warnings))

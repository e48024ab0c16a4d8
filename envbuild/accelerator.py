"""Accelerator builds (PyTorch's CPU, CUDA, ROCm and XPU wheels) as a first-class choice.

PyTorch publishes one build per accelerator, each on an index of its own
(``https://download.pytorch.org/whl/cpu``, ``/cu121``, ``/rocm6.0`` ...), and marks them with a
local version label (``2.13.0+cpu``). PyPI has only one build per platform: on Linux the CUDA one
(about 3 GB of ``nvidia-*`` wheels), so a model logged on a CPU rebuilt from PyPI alone gets a
5 GB environment, and a pin with a label does not resolve at all. envbuild therefore:

* resolves the **torch family** (:data:`TORCH_FAMILY`, the one list of those names) from the
  PyTorch index of the chosen accelerator as an *explicit* index: that index is consulted for
  those names only, never for any other (a package index serving ``numpy`` or ``requests`` next
  to torch must not be able to substitute them: dependency confusion);
* lets a **label in a pin** (``torch==2.13.0+cpu``) choose that index by default, without
  ``--trust-model-indexes``: it is a known, named source, not an arbitrary option of the model;
* decides ``--accelerator auto`` from what the model was logged with (:func:`decide`) and says why;
* takes **mirrors** of the PyTorch index (``--torch-index-url`` or ``ENVBUILD_TORCH_INDEX_URL``,
  with ``{accelerator}`` standing for ``cpu``/``cu121``/...) for air-gapped machines.

``cuda`` without a version means PyPI's own Linux build of torch (CUDA, with its libraries as
``nvidia-*`` wheels): no extra index. This module decides; ``lock/uv.py`` writes the explicit index
for uv (``[[tool.uv.index]] explicit = true`` + ``[tool.uv.sources]``).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from envbuild.errors import UsageError

if TYPE_CHECKING:
    from envbuild.envspec import EnvSpec

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, from PyPI
    import tomli as tomllib

PYTORCH_INDEX = "https://download.pytorch.org/whl"
TORCH_INDEX_VARIABLE = "ENVBUILD_TORCH_INDEX_URL"
INDEX_NAME = "envbuild-pytorch"  # the explicit index's name in the resolution's pyproject.toml

# The packages PyTorch's indexes publish per accelerator: the names uv's own --torch-backend routes
# to those indexes (uv 0.13, crates/uv-torch/src/backend.rs `applies_to`), with each Triton build
# kept for the accelerator it belongs to (the CPU index has no Triton).
TORCH_FAMILY = frozenset(
    {
        "torch",
        "torchvision",
        "torchaudio",
        "torchtext",
        "torchdata",
        "torcharrow",
        "torchcsprng",
        "torchdistx",
        "torchserve",
        "torch-model-archiver",
        "torch-tb-profiler",
    }
)
_TRITON = {"cu": ("triton", "pytorch-triton"), "rocm": ("pytorch-triton-rocm",)}
_TRITON["xpu"] = ("pytorch-triton-xpu",)

# Which target platforms an accelerator's index has builds for (elsewhere: the default index).
_PLATFORMS = {
    "cpu": None,  # every platform (macOS builds are CPU builds, unlabelled)
    "cu": "sys_platform == 'linux' or sys_platform == 'win32'",
    "rocm": "sys_platform == 'linux'",
    "xpu": "sys_platform == 'linux' or sys_platform == 'win32'",
}

_ACCELERATOR = re.compile(r"^(cpu|cuda|cu\d{2,3}|rocm\d+\.\d+(\.\d+)?|xpu|auto)$")
_LABEL = re.compile(r"^(cpu|cu\d{2,3}|rocm\d+\.\d+(\.\d+)?|xpu)$")
ACCELERATOR_HELP = (
    "cpu, cuda (PyPI's CUDA build), cuXYZ (PyTorch's CUDA X.YZ build, e.g. cu121), rocmX.Y, xpu, "
    "or auto (decided from the model's pins and the packages it was logged with)"
)


def parse_accelerator(text: str | None) -> str | None:
    """``--accelerator`` validated (None: not given)."""
    if text is None:
        return None
    value = text.strip().lower()
    if not _ACCELERATOR.match(value):
        raise UsageError(
            f"unknown accelerator {text!r}", field="--accelerator", hint=f"use {ACCELERATOR_HELP}"
        )
    return value


def family_of(accelerator: str | None) -> frozenset[str]:
    """The names resolved from ``accelerator``'s PyTorch index (Triton only where it exists)."""
    kind = _kind(accelerator)
    return TORCH_FAMILY | frozenset(_TRITON.get(kind or "", ()))


def _kind(accelerator: str | None) -> str | None:
    if accelerator is None or accelerator == "cuda":
        return None
    if accelerator.startswith("cu"):
        return "cu"
    if accelerator.startswith("rocm"):
        return "rocm"
    return accelerator  # cpu, xpu


def has_index(accelerator: str | None) -> bool:
    """Whether ``accelerator`` is resolved from a PyTorch index (``cuda`` and None: PyPI)."""
    return _kind(accelerator) is not None


def platform_marker(accelerator: str) -> str | None:
    """The targets ``accelerator``'s index has builds for, as a marker (None: all of them)."""
    return _PLATFORMS.get(_kind(accelerator) or "")


def torch_index_url(accelerator: str, mirror: str | None = None) -> str:
    """The index of ``accelerator``'s builds: PyTorch's, or ``mirror`` (``{accelerator}`` in it is
    replaced, so that one setting mirrors every accelerator)."""
    if mirror:
        return mirror.replace("{accelerator}", accelerator).rstrip("/")
    return f"{PYTORCH_INDEX}/{accelerator}"


def is_cuda_library(name: str) -> bool:
    """NVIDIA's CUDA libraries as wheels (``nvidia-cublas-cu12``, ``nvidia-nccl-cu12``, ...)."""
    return name.startswith("nvidia-")


def is_pytorch_index(url: str) -> bool:
    """Whether ``url`` is one of PyTorch's accelerator indexes (what capture writes as
    ``--extra-index-url`` for pip's sake; envbuild uses it as an explicit index instead)."""
    base, _, label = url.rstrip("/").rpartition("/")
    return base == PYTORCH_INDEX and bool(_LABEL.match(label))


def label_of(version: str) -> str | None:
    """The accelerator a PyTorch local version label names (``cpu`` of ``2.13.0+cpu``)."""
    from packaging.version import InvalidVersion, Version

    try:
        local = Version(version).local
    except InvalidVersion:
        return None
    return local if local and _LABEL.match(local) else None


def _pinned(text: str) -> tuple[str, str] | None:
    """``(canonical name, version)`` of an ``==`` pin, else None."""
    from packaging.requirements import InvalidRequirement
    from packaging.requirements import Requirement as PkgRequirement
    from packaging.utils import canonicalize_name

    try:
        req = PkgRequirement(text)
    except InvalidRequirement:
        return None
    specs = list(req.specifier)
    if len(specs) == 1 and specs[0].operator in ("==", "===") and "*" not in specs[0].version:
        return canonicalize_name(req.name), specs[0].version
    return None


def requirement_label(text: str) -> str | None:
    """The accelerator label of a torch-family ``==`` pin (``torch==2.13.0+cpu`` -> ``cpu``)."""
    pinned = _pinned(text)
    if pinned is None or pinned[0] not in family_of("cu121") | family_of("rocm6.0"):
        return None
    return label_of(pinned[1])


def retarget(text: str, accelerator: str | None) -> str:
    """A family pin for ``accelerator``'s index: a label of another accelerator is dropped
    (``torch==2.13.0+cu121`` -> ``torch==2.13.0``, which the chosen index then provides)."""
    from packaging.requirements import Requirement as PkgRequirement
    from packaging.version import Version

    label = requirement_label(text)
    if label is None or label == accelerator:
        return text
    req = PkgRequirement(text)
    version = str(Version(next(iter(req.specifier)).version).public)
    marker = f"; {req.marker}" if req.marker else ""
    extras = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
    return f"{req.name}{extras}=={version}{marker}"


@dataclass(frozen=True)
class AcceleratorChoice:
    """The accelerator a resolution targets, what was asked, and why it was decided."""

    name: str | None  # cpu, cuda, cu121, rocm6.0, xpu; None: the index's default builds
    requested: str | None  # what the user asked: None (not given), auto, or a name
    reason: str  # one line, for messages and --json

    def to_dict(self) -> dict[str, object]:
        return {"accelerator": self.name, "requested": self.requested, "reason": self.reason}


def _labels(pins: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """``(pin, label)`` of the family pins carrying an accelerator label, in order."""
    out = []
    for text, where in pins:
        label = requirement_label(text)
        if label is not None:
            out.append((f"{text} ({where})" if where else text, label))
    return out


def decide(
    env: EnvSpec,
    requested: str | None,
    *,
    installed: Sequence[tuple[str, str]] = (),
) -> AcceleratorChoice:
    """The accelerator to resolve ``env`` for.

    ``requested`` is ``--accelerator`` (already parsed). Given a name, that is the choice. Not
    given, a label in a family pin chooses (``torch==2.13.0+cpu`` -> ``cpu``); nothing else does.
    ``auto`` also looks at ``installed`` (``(name, version)`` of the environment the model was
    logged in, e.g. the ``pylock.toml`` capture wrote): ``nvidia-*`` distributions there mean CUDA,
    a torch without them means the CPU build, and no evidence means the default builds.
    """
    from packaging.utils import canonicalize_name

    pins = [(r.text, str(r.origin)) for r in env.requirements]
    labelled = _labels(pins) or _labels((f"{n}=={v}", "logged with") for n, v in installed)
    if requested not in (None, "auto"):
        return AcceleratorChoice(requested, requested, f"--accelerator {requested}")
    if labelled:
        chosen = labelled[0][1]
        others = sorted({label for _, label in labelled if label != chosen})
        reason = f"{labelled[0][0]} is PyTorch's {chosen} build"
        if others:
            reason += f" (other labels ignored: {', '.join(others)})"
        return AcceleratorChoice(chosen, requested, reason)
    if requested is None:
        return AcceleratorChoice(None, None, "no accelerator label in the model's pins")
    names = {canonicalize_name(n) for n, _ in installed} | {r.name for r in env.requirements}
    nvidia = sorted(n for n in names if n.startswith("nvidia-"))
    if nvidia:
        shown = ", ".join(nvidia[:3]) + (f" and {len(nvidia) - 3} more" if len(nvidia) > 3 else "")
        return AcceleratorChoice("cuda", requested, f"the model was logged with {shown}")
    if "torch" in names and installed:
        return AcceleratorChoice(
            "cpu", requested, "the model was logged with torch and no nvidia-* package"
        )
    return AcceleratorChoice(
        None, requested, "no accelerator label and no nvidia-* package in the model"
    )


# ``source = "installed"`` however a TOML writer spaces or quotes it (checked before parsing)
_INSTALLED_SOURCE = re.compile(r"""source["']?\s*=\s*["']installed["']""")


def installed_from(model_path: Path) -> list[tuple[str, str]]:
    """``(name, version)`` of the environment the model was logged in, when its folder holds
    the ``pylock.toml`` capture wrote (``source = "installed"``); else nothing."""
    try:
        text = (Path(model_path) / "pylock.toml").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return []
    if not _INSTALLED_SOURCE.search(text):
        return []  # not capture's: no need to parse a lock of a hundred packages twice
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return []
    tool = doc.get("tool", {}).get("envbuild", {})
    if not isinstance(tool, dict) or tool.get("source") != "installed":
        return []
    return [
        (str(p["name"]), str(p.get("version", "")))
        for p in doc.get("packages", [])
        if isinstance(p, dict) and p.get("name")
    ]


def cuda_version(packages: Iterable[tuple[str, str]]) -> str | None:
    """The CUDA ``X.Y`` a lock's CUDA libraries are for (``nvidia-cuda-runtime-cu12==12.8.90`` ->
    ``12.8``), else the label of a ``+cuXYZ`` build (``cu121`` -> ``12.1``)."""
    from packaging.utils import canonicalize_name

    for name, version in packages:
        if canonicalize_name(name).startswith("nvidia-cuda-runtime"):
            parts = version.split(".")
            if len(parts) >= 2:
                return f"{parts[0]}.{parts[1]}"
    for _, version in packages:
        label = label_of(version)
        if label and label.startswith("cu"):
            digits = label[2:]
            return f"{digits[:-1]}.{digits[-1]}"
    return None

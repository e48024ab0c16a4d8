"""Rendering the image's Dockerfile from ``templates/Dockerfile.tmpl`` (see ``templates.py`` for
the template language). Every value is checked to be one line, so a value can never inject an
instruction; the image layout (paths, user, port, health check) comes from ``layout.py``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from envbuild.errors import BuildError, UsageError
from envbuild.image import layout
from envbuild.templates import read_template, render

TEMPLATE_NAME = "Dockerfile.tmpl"
_LABEL_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")
# build-arg names the template declares when envbuild passes them (index settings)
_ARG_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")


def _one_line(name: str, value: str) -> str:
    if "\n" in value or "\r" in value:
        raise UsageError(f"{name} must be one line, got {value!r}")
    return value


def quote(value: str) -> str:
    """A double-quoted Dockerfile word that the builder reads back as exactly ``value``:
    ``\\``, ``"`` and ``$`` escaped (no variable expansion), control characters refused."""
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise UsageError(f"control characters are not allowed in a label: {value!r}")
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
    return f'"{escaped}"'


def label_instruction(labels: Mapping[str, str]) -> str:
    """One ``LABEL`` instruction for all labels, one per line, sorted (stable cache, stable diff)."""
    if not labels:
        return ""
    parts = []
    for key in sorted(labels):
        if not _LABEL_KEY.match(key):
            raise UsageError(
                f"invalid label key {key!r}",
                field="--label",
                hint="use letters, digits, '.', '-', '/' and '_', e.g. com.example.team=ml",
            )
        parts.append(f"{quote(key)}={quote(_one_line('a label value', labels[key]))}")
    return "LABEL " + " \\\n      ".join(parts)


@dataclass(frozen=True)
class DockerfileInputs:
    """Everything the Dockerfile depends on; equal inputs render equal bytes."""

    base_image: str
    python_minor: str
    model_name: str
    envbuild_version: str
    uv_version: str
    uv_binary: bool  # True: build/uv is in the context; False: pip installs uv in the build
    ca_cert: bool  # True: build/ca.pem is in the context
    network: str = "host"
    build_arg_names: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    workers: int = 1
    local_files: bool = False  # build/pylock.toml and build/files/ are in the context
    prestaged: bool = False  # --offline: build/site/ holds the installed packages
    python_install: bool = False  # the base has no Python: uv installs python_version
    python_version: str = ""
    device: str = "cpu"  # what the model runs on: cpu, cuda, rocm, xpu
    cuda: str = ""  # CUDA X.Y of a CUDA image
    base_lock_name: str | None = None  # the environment is a prefix from the context (conda)
    pip_packages: bool = True  # the pip lock installs anything


def render_dockerfile(inputs: DockerfileInputs) -> str:
    """The Dockerfile text for ``inputs`` (see templates/Dockerfile.tmpl)."""
    for name in inputs.build_arg_names:
        if not _ARG_NAME.match(name):
            raise BuildError(f"invalid build-arg name {name!r}")
    template = read_template(TEMPLATE_NAME)
    values: dict[str, str | bool] = {
        **layout.template_values(),
        "base_image": _one_line("--base-image", inputs.base_image),
        "python_minor": inputs.python_minor,
        "model_name": _one_line("the model name", inputs.model_name).replace('"', "'"),
        "envbuild_version": inputs.envbuild_version,
        "uv_version": inputs.uv_version,
        "uv_binary": inputs.uv_binary,
        "ca_cert": inputs.ca_cert,
        "network": _one_line("--network", inputs.network),
        "build_args": "\n".join(f"ARG {name}" for name in inputs.build_arg_names),
        "build_arg_flags": "".join(f" --build-arg {name}" for name in inputs.build_arg_names),
        "labels": label_instruction(inputs.labels),
        "workers": str(inputs.workers),
        "local_files": inputs.local_files,
        "prestaged": inputs.prestaged,
        "python_install": inputs.python_install,
        "python_version": _one_line("the Python version", inputs.python_version),
        "device": _one_line("the device", inputs.device),
        "cuda_image": inputs.device == "cuda",
        "cuda": _one_line("the CUDA version", inputs.cuda),
        "prefix": inputs.base_lock_name is not None,
        "base_lock_name": inputs.base_lock_name or "",
        "env_variable": "CONDA_PREFIX" if inputs.base_lock_name else "VIRTUAL_ENV",
        "pip_packages": inputs.pip_packages,
    }
    return render(template, values, name=TEMPLATE_NAME)

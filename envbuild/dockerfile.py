"""Rendering the image's Dockerfile from ``templates/Dockerfile.tmpl``.

The Dockerfile is text a user reads (``envbuild image --context``) and reviews, so it lives in a
template file, not in Python strings. The template language is deliberately tiny (no Jinja
dependency for one file): ``{{ name }}`` substitutes a value and whole-line ``{% if name %}`` /
``{% else %}`` / ``{% endif %}`` keep or drop lines. Every name the template uses must be given,
and every value is checked to be one line, so a value can never inject an instruction.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from envbuild.errors import BuildError, UsageError

TEMPLATE_NAME = "Dockerfile.tmpl"
_VAR = re.compile(r"\{\{\s*([a-z_][a-z0-9_]*)\s*\}\}")
_DIRECTIVE = re.compile(r"^\s*\{%\s*(if|else|endif)\s*([a-z_][a-z0-9_]*)?\s*%\}\s*$")
_LABEL_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")
# build-arg names the template declares when envbuild passes them (index settings)
_ARG_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")


def templates_dir() -> Path:
    """The folder holding envbuild's templates, in a wheel or in a source checkout.

    A wheel ships them as ``envbuild/templates`` (hatch force-include); an editable install or a
    checkout has them at the repository's top level, next to the ``envbuild`` package.
    """
    package = Path(__file__).resolve().parent
    for candidate in (package / "templates", package.parent / "templates"):
        if (candidate / TEMPLATE_NAME).is_file():
            return candidate
    raise BuildError(
        f"envbuild's {TEMPLATE_NAME} is missing (looked in {package / 'templates'} and "
        f"{package.parent / 'templates'})",
        hint="reinstall envbuild",
    )


def render(template: str, values: Mapping[str, str | bool]) -> str:
    """Render ``template`` with ``values`` (strings for ``{{ }}``, anything truthy for ``if``)."""
    out: list[str] = []
    stack: list[tuple[bool, bool]] = []  # (this block's condition, enclosing blocks all true)
    for number, line in enumerate(template.splitlines(), start=1):
        directive = _DIRECTIVE.match(line)
        active = all(cond for cond, _ in stack)
        if directive:
            word, name = directive.groups()
            if word == "if":
                if name is None or name not in values:
                    raise BuildError(f"{TEMPLATE_NAME}:{number}: unknown condition {name!r}")
                stack.append((bool(values[name]), active))
            elif not stack:
                raise BuildError(f"{TEMPLATE_NAME}:{number}: {word} without if")
            elif word == "else":
                cond, outer = stack.pop()
                stack.append((not cond, outer))
            else:
                stack.pop()
            continue
        if active:
            out.append(_VAR.sub(lambda m, n=number: _value(values, m.group(1), n), line))
    if stack:
        raise BuildError(f"{TEMPLATE_NAME}: an if block is not closed")
    return "\n".join(out) + "\n"


def _value(values: Mapping[str, str | bool], name: str, number: int) -> str:
    if name not in values:
        raise BuildError(f"{TEMPLATE_NAME}:{number}: no value for {{{{ {name} }}}}")
    return str(values[name])


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


def render_dockerfile(inputs: DockerfileInputs) -> str:
    """The Dockerfile text for ``inputs`` (see templates/Dockerfile.tmpl)."""
    for name in inputs.build_arg_names:
        if not _ARG_NAME.match(name):
            raise BuildError(f"invalid build-arg name {name!r}")
    template = (templates_dir() / TEMPLATE_NAME).read_text(encoding="utf-8")
    values: dict[str, str | bool] = {
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
    }
    return render(template, values)

"""The conda half of a model's environment, as a value: match specs with their lines, and channels.

:func:`envbuild.envspec.read_env` already reads ``conda.yaml`` (every non-``pip:`` entry becomes a
``CondaDependency`` with its ``file:line``; ``channels:`` as written). This module decides what of
that goes to the solver, the way conda itself treats an environment file:

* every entry is a conda match spec, in conda's own syntax (``numpy=1.18.1`` is ``1.18.1.*``,
  ``keras==2.2.5`` exact, ``python=3.8.*``, ``psutil>5.0.0,<6.0.0``, ``numpy 1.18 py38_0``), parsed
  by py-rattler leniently (as conda does) when solving, so a malformed one is a ModelError naming
  its line;
* ``pip`` after the ``pip:`` block is just another spec; an entry repeated verbatim is dropped; the
  same package with different specs keeps both (both must hold, as in conda), with a warning;
* ``python``: the model's own ``python=...`` entry, replaced by ``python`` when given (``--python``);
  when ``conda.yaml`` names none, the Python that ``read_env`` chose (``python_env.yaml`` or
  MLmodel) is added, so the channel always brings the interpreter.

``digest()`` is the identity of these inputs (what ``lock --check`` compares, like
:meth:`EnvSpec.digest`); the target platform, channels after overrides and the as-of date are
solve parameters, recorded by whoever records the lock.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from envbuild.envspec import CondaDependency, EnvSpec
from envbuild.errors import ModelError
from envbuild.requirements import Origin

if TYPE_CHECKING:
    from rattler import MatchSpec


@dataclass(frozen=True)
class CondaSpec:
    """What the conda solver is asked for. Immutable; ``digest()`` is its identity."""

    model_path: Path
    dependencies: tuple[CondaDependency, ...]  # in file order, python included
    channels: tuple[str, ...]  # the model's channels, as written (may be empty)
    warnings: tuple[str, ...] = field(default=(), compare=False)

    @property
    def python(self) -> tuple[CondaDependency, ...]:
        """The ``python`` specs (usually one)."""
        return tuple(d for d in self.dependencies if d.name.lower() == "python")

    def origin_path(self, dep: CondaDependency) -> Path:
        """The file a dependency was written in (absolute, for error messages)."""
        return self.model_path / dep.origin.file

    def digest(self) -> str:
        """sha256 of the specs (order-free) and channels (ordered: they are priorities)."""
        payload = {
            "conda": sorted(d.spec for d in self.dependencies),
            "channels": list(self.channels),
        }
        blob = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
        return "sha256:" + hashlib.sha256(blob).hexdigest()

    def match_specs(self) -> list[MatchSpec]:
        """The specs as py-rattler objects; a spec py-rattler cannot read is a ModelError."""
        from rattler import MatchSpec
        from rattler.exceptions import InvalidMatchSpecError

        out = []
        for dep in self.dependencies:
            try:
                out.append(MatchSpec(dep.spec, strict=False))
            except InvalidMatchSpecError as exc:
                raise ModelError(
                    f"invalid conda package spec {dep.spec!r}: {exc}",
                    path=self.origin_path(dep),
                    field="dependencies",
                    line=dep.origin.line,
                ) from None
        return out

    def to_dict(self) -> dict[str, object]:
        return {
            "dependencies": [{"spec": d.spec, "origin": str(d.origin)} for d in self.dependencies],
            "channels": list(self.channels),
            "digest": self.digest(),
        }


def conda_spec(env: EnvSpec, *, python: str | None = None) -> CondaSpec:
    """The conda half of ``env`` (see the module docstring); ``python`` overrides its Python."""
    warnings: list[str] = []
    deps: list[CondaDependency] = []
    seen: dict[str, CondaDependency] = {}
    by_name: dict[str, CondaDependency] = {}
    for dep in env.conda_dependencies:
        if python is not None and dep.name.lower() == "python":
            continue
        normalized = " ".join(dep.spec.split())
        if normalized in seen:
            continue
        seen[normalized] = dep
        earlier = by_name.get(dep.name.lower())
        if earlier is not None:
            warnings.append(
                f"{dep.origin}: {dep.name} is listed again ({dep.spec}, first {earlier.spec} at "
                f"{earlier.origin}); both apply"
            )
        else:
            by_name[dep.name.lower()] = dep
        deps.append(dep)
    if python is not None:
        deps.insert(0, _python_dep(python, Origin("--python")))
    elif "python" not in by_name:
        if env.python is not None:
            deps.insert(0, _python_dep(env.python.version, env.python.origin))
        else:
            deps.insert(0, CondaDependency("python", "python", Origin("conda.yaml")))
            warnings.append("no Python version in any environment file; the newest is solved for")
    return CondaSpec(
        model_path=env.model_path,
        dependencies=tuple(deps),
        channels=tuple(env.channels),
        warnings=tuple(warnings),
    )


def _python_dep(version: str, origin: Origin) -> CondaDependency:
    text = version.strip()
    spec = f"python={text}" if text[:1].isdigit() else f"python{text}"
    return CondaDependency(spec, "python", origin)

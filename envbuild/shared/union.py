"""One environment for several models: the union of their requirements, resolved once, or the
conflicts named by model and ``file:line``.

Each model contributes its requirement set (``wanted.model_requirements``: its current lock's
pins, else its requirement lines), each line keeping its origin prefixed by the model as it was
given (``models/a/requirements.txt:2``), so that uv's explanation, mapped back to the lines by
``lock/explain.py``, names both sides of a conflict. The models must agree on their Python
``X.Y`` (one environment has one Python) unless ``--python`` chooses it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import canonicalize_name

from envbuild.envspec import EnvSpec, PythonRequest
from envbuild.errors import ResolutionError, UsageError
from envbuild.model import ModelSpec
from envbuild.requirements import Origin, Requirement
from envbuild.shared.wanted import ModelRequirements

_NAME_TOKEN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?")


@dataclass(frozen=True)
class Member:
    """One model of a union, as the user named it."""

    label: str  # MODEL as given on the command line
    spec: ModelSpec
    env: EnvSpec
    wanted: ModelRequirements

    def origin(self, origin: Origin) -> Origin:
        return Origin(f"{self.label.rstrip('/')}/{origin.file}", origin.line)


def _python(members: Sequence[Member], python: str | None) -> PythonRequest | None:
    """The union's Python: ``--python`` (a version), else the models' common ``X.Y``."""
    if python:
        return None  # the interpreter --python names decides (see create.py)
    asked = [(m, m.wanted.python) for m in members if m.wanted.python is not None]
    minors = {request.minor for _, request in asked if request is not None}
    if len(minors) > 1:
        shown = ", ".join(
            f"{m.label} asks for Python {request.text} ({m.origin(request.origin)})"
            for m, request in asked
            if request is not None
        )
        raise UsageError(
            f"the models need different Pythons and one environment has one: {shown}",
            field="--from",
            hint="pass --python X.Y to build for one of them (the verdict of the others will "
            "say python), or create one environment per Python",
        )
    if not asked:
        return None
    first, request = asked[0]
    assert request is not None
    if len({r.specifier for _, r in asked if r is not None}) > 1:  # 3.11.7 and 3.11.9: any 3.11
        return PythonRequest(request.minor, first.origin(request.origin), f"=={request.minor}.*")
    return PythonRequest(request.text, first.origin(request.origin), request.specifier)


def union_env(members: Sequence[Member], python: str | None = None) -> EnvSpec:
    """One EnvSpec holding every model's requirement lines (origins prefixed by the model)."""
    requirements = tuple(
        Requirement(r.text, r.name, m.origin(r.origin), r.hashes)
        for m in members
        for r in m.wanted.requirements
    )
    constraints = tuple(
        Requirement(r.text, r.name, m.origin(r.origin), r.hashes)
        for m in members
        for r in m.wanted.constraints
    )
    warnings = tuple(f"{m.label}: {w}" for m in members for w in m.wanted.warnings)
    return EnvSpec(
        model_path=Path.cwd(),
        python=_python(members, python),
        requirements=requirements,
        constraints=constraints,
        build_requirements=(),
        conda_dependencies=(),
        channels=(),
        index_options=(),
        source=", ".join(m.label for m in members),
        files=(),
        warnings=warnings,
    )


def union_failure(error: ResolutionError, union: EnvSpec, members: Sequence[Member]) -> Exception:
    """A conflict among the models as one line naming each model's pins; other failures (no
    network, an unknown package) are returned as they are."""
    if "conflicts with" not in error.message and "cannot be installed" not in error.message:
        return error
    mentioned: list[str] = [canonicalize_name(t) for t in _NAME_TOKEN.findall(error.message)]
    order = {name: index for index, name in reversed(list(enumerate(mentioned)))}
    pins = sorted(
        (r for r in (*union.requirements, *union.constraints) if r.name in order),
        key=lambda r: order[r.name],
    )
    if len(pins) < 2:
        return error
    owners = []
    for pin in pins:
        for member in members:
            if pin.origin.file.startswith(member.label.rstrip("/") + "/"):
                owners.append(member.label)
                break
    models = list(dict.fromkeys(owners))
    head, sep, reason = error.message.partition(": ")
    because = reason if sep and "conflicts with" in head else error.message
    shown = [f"{pin.text} ({pin.origin})" for pin in pins]
    return ResolutionError(
        f"the models {', '.join(models)} cannot share one environment: {shown[0]} conflicts "
        f"with {', '.join(shown[1:])}: {because}",
        hint="relax one of these pins, or give the models separate environments",
        log_path=error.log_path,
    )

"""What a model asks of an environment: its requirements, each with the ``file:line`` it was
written at, and its Python.

One rule, used by ``check``, ``--environment`` and ``environments create --from``: a model's
requirements are its lock's pins when it has a ``pylock.toml`` that still matches its
requirement files (the exact versions it was locked with: every transitive package, each
``name==version`` at the lock's ``file:line``), else the requirement lines of the file envbuild
reads (``python_env.yaml`` > ``requirements.txt`` > ``conda.yaml``, see ``envspec.py``). A
stale or foreign lock is not trusted: the requirement files are used, with a warning. The
requirement lines the model names itself are *direct*; the rest of a lock is transitive.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from envbuild.envspec import EnvSpec, PythonRequest
from envbuild.errors import LockMismatchError
from envbuild.lock.pylock import PYLOCK_NAME, Lock, read_lock
from envbuild.requirements import Origin, Requirement


@dataclass(frozen=True)
class ModelRequirements:
    """The requirement set a verdict checks (see the module docstring)."""

    model_path: Path
    python: PythonRequest | None
    requirements: tuple[Requirement, ...]
    constraints: tuple[Requirement, ...]
    source: str  # the file the requirements come from (pylock.toml, requirements.txt ...)
    direct: frozenset[str]  # canonical names the model's own requirement lines name
    warnings: tuple[str, ...] = field(default=())

    @property
    def from_lock(self) -> bool:
        return self.source == PYLOCK_NAME


def _package_lines(text: str) -> list[int]:
    """1-based line of each ``[[packages]]`` entry's ``name``, in document order."""
    lines: list[int] = []
    inside = False
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped == "[[packages]]":
            inside = True
        elif inside and stripped.startswith("name ="):
            lines.append(number)
            inside = False
    return lines


def lock_requirements(lk: Lock) -> tuple[Requirement, ...]:
    """Every package of ``lk`` as ``name==version[; marker]`` at its ``pylock.toml:line``."""
    from packaging.utils import canonicalize_name

    lines = _package_lines(lk.text)
    out = []
    for index, package in enumerate(lk.packages):
        text = f"{package.name}=={package.version}"
        if package.marker:
            text += f"; {package.marker}"
        line = lines[index] if index < len(lines) else None
        out.append(
            Requirement(
                text=text, name=canonicalize_name(package.name), origin=Origin(PYLOCK_NAME, line)
            )
        )
    return tuple(out)


def model_requirements(env: EnvSpec) -> ModelRequirements:
    """The model's requirement set: its current lock's pins, else its requirement lines."""
    direct = frozenset(r.name for r in env.requirements)
    own = env.model_path / PYLOCK_NAME
    warnings: list[str] = []
    if own.is_file():
        problem = None
        try:
            lk = read_lock(own)
        except LockMismatchError as exc:
            problem = exc.message
        else:
            if lk.input_digest != env.digest():
                problem = "it no longer matches the model's requirements"
        if problem is None:
            return ModelRequirements(
                env.model_path, env.python, lock_requirements(lk), (), PYLOCK_NAME, direct
            )
        warnings.append(
            f"{PYLOCK_NAME} is not used: {problem}; the model's requirements are taken from "
            f"{env.source}"
        )
    return ModelRequirements(
        env.model_path,
        env.python,
        env.requirements,
        env.constraints,
        env.source,
        direct,
        tuple(warnings),
    )

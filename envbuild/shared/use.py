"""Using a shared environment for a model: what is installed there now, the verdict, and the
environment to run in.

What is installed is read from the version's metadata for what envbuild made (a virtualenv
under the registry, an image pinned by id: immutable), and asked again of a registered prefix's
interpreter each time (its owner may have changed it since: the verdict is for what is there
now, and a warning names what changed). A registered prefix or image that no longer exists is
an :class:`~envbuild.errors.EnvironmentUnsuitable` (exit 8), as is a verdict that is not
satisfied, unless the caller allows a mismatch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from envbuild.envs.process import ProcessEnvironment
from envbuild.envspec import EnvSpec
from envbuild.errors import EnvironmentUnsuitable
from envbuild.shared.names import Ref
from envbuild.shared.record import PREFIX, Installed, SharedEnvironment
from envbuild.shared.store import Registry
from envbuild.shared.verdict import Verdict, judge
from envbuild.shared.wanted import model_requirements


@dataclass(frozen=True)
class Selected:
    """A shared environment chosen for a model, and its verdict."""

    record: SharedEnvironment
    installed: Installed
    verdict: Verdict
    warnings: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.record.name,
            "version": self.record.version,
            "runs_in": self.record.runs_in,
            "verdict": self.verdict.to_dict(),
        }


def prefix_environment(record: SharedEnvironment, kind: str, version: str) -> ProcessEnvironment:
    """A prefix environment as an :class:`Environment`. One envbuild built is a virtualenv of
    its own (first runs may write bytecode into it); a registered one is run as its activation
    would, and never written to (no bytecode)."""
    from envbuild.envs.venv import venv_environment

    assert record.prefix is not None and record.python is not None
    prefix = Path(record.prefix)
    details = {"shared": record.ref}
    if record.managed:
        return venv_environment(
            prefix,
            key=record.ref,
            lock_digest=record.lock_digest,
            version=version,
            details=details,
            kind=kind,
        )
    return registered_environment(prefix, Path(record.python), kind, version, record.ref)


def registered_environment(
    prefix: Path, python: Path, kind: str, version: str, ref: str
) -> ProcessEnvironment:
    """A registered prefix as its activation would set it up, never written to."""
    variables = {"PYTHONDONTWRITEBYTECODE": "1"}
    if (prefix / "pyvenv.cfg").is_file():
        variables["VIRTUAL_ENV"] = str(prefix)
    elif (prefix / "conda-meta").is_dir():
        variables["CONDA_PREFIX"] = str(prefix)
    return ProcessEnvironment(
        kind=kind,
        path=prefix,
        python=python,
        key=ref,
        lock_digest=None,
        interpreter_version=version,
        details={"shared": ref},
        variables=variables,
        path_entries=(str(python.parent),),
        write_bytecode=False,
    )


def installed_now(record: SharedEnvironment, kind: str) -> tuple[Installed, tuple[str, ...]]:
    """What ``record`` holds now, and a warning when a registered prefix changed."""
    if record.runs_in != PREFIX:
        return record.installed, ()
    assert record.python is not None
    if not Path(record.python).exists():
        raise EnvironmentUnsuitable(
            f"{record.ref}: its prefix {record.prefix} no longer exists (no {record.python})",
            hint=f"register the environment again, or remove it: envbuild environments remove "
            f"{record.ref}",
        )
    if record.managed:
        return record.installed, ()
    from envbuild.shared.probe import probe_process

    environment = prefix_environment(record, kind, record.installed.python_version)
    now = probe_process(environment, EnvironmentUnsuitable)
    changes = record.installed.difference(now)
    if not changes:
        return now, ()
    shown = ", ".join(changes[:5]) + (f" and {len(changes) - 5} more" if len(changes) > 5 else "")
    return now, (
        f"{record.ref}: the registered prefix {record.prefix} changed since it was registered "
        f"({shown}); the verdict is for what is installed now",
    )


def verdict_for(
    env: EnvSpec, record: SharedEnvironment, kind: str, *, model: str | None = None
) -> tuple[Verdict, Installed]:
    """The verdict of ``record`` for the model ``env`` describes."""
    installed, warnings = installed_now(record, kind)
    verdict = judge(
        model_requirements(env),
        installed,
        model=model or str(env.model_path),
        environment=record.ref,
        warnings=warnings,
    )
    return verdict, installed


def unsuitable(verdict: Verdict, model: Path) -> EnvironmentUnsuitable:
    return EnvironmentUnsuitable(
        f"{verdict.environment} does not satisfy the model: {verdict.summary()}",
        path=model,
        verdict=verdict.to_dict(),
        hint=f"`envbuild check {model} --environment {verdict.environment}` lists every row; "
        "--allow-mismatch runs the model there anyway",
    )


def select(
    env: EnvSpec,
    ref: Ref,
    kind: str,
    *,
    allow_mismatch: bool = False,
    registry: Registry | None = None,
) -> Selected:
    """The shared environment ``ref`` for the model ``env`` describes, with its verdict; an
    EnvironmentUnsuitable (exit 8) when it does not satisfy the model, unless
    ``allow_mismatch`` (the verdict is then a warning)."""
    record = (registry or Registry.default()).get(ref)
    verdict, installed = verdict_for(env, record, kind)
    warnings = list(verdict.warnings)
    if not verdict.satisfied:
        if not allow_mismatch:
            raise unsuitable(verdict, env.model_path)
        warnings.append(
            f"{record.ref} does not satisfy the model (running it anyway: --allow-mismatch): "
            f"{verdict.summary()}"
        )
    return Selected(record, installed, verdict, tuple(warnings))

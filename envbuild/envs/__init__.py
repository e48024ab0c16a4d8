"""Stage 4: materialized environments built from a lock (``venv`` now; ``docker``, ``conda`` and
named shared environments plug in beside it).

Every kind returns an :class:`Environment`: where its interpreter is and how to run a command in
it. The runner (stage 5) only needs that, so it does not care which kind it runs in.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

KINDS = ("venv", "local")


@dataclass(frozen=True)
class Environment:
    """A finished environment: its interpreter and the facts that identify it."""

    kind: str  # venv, local (later docker, conda, shared)
    path: Path  # the environment's prefix
    python: Path  # its interpreter
    key: str  # cache key (lock digest + interpreter identity)
    lock_digest: str | None
    interpreter_version: str
    built: bool = False  # built by this call (False: reused from the cache)
    seconds: float = 0.0
    details: dict[str, str] = field(default_factory=dict)

    def run_env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """Environment variables for a process running inside this environment."""
        env = dict(base if base is not None else os.environ)
        for key in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE"):
            env.pop(key, None)
        env["PYTHONNOUSERSITE"] = "1"
        if self.kind != "local":
            # a venv built with --no-compile gets its .pyc written on first use, for what is
            # really imported (atomic writes: concurrent first runs are safe)
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["VIRTUAL_ENV"] = str(self.path)
            env["PATH"] = os.pathsep.join([str(self.python.parent), env.get("PATH", "")])
        return env

    def to_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "path": str(self.path),
            "python": str(self.python),
            "key": self.key,
            "lock_digest": self.lock_digest,
            "python_version": self.interpreter_version,
            "built": self.built,
            "seconds": round(self.seconds, 3),
            **self.details,
        }

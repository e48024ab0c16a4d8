"""``lock --check``: does a lock still match the model? Answered without resolving anything.

The lock records the digest of the model's requirement inputs (``input-digest``) and the lists
they came from, so a mismatch names what changed (``requirements.txt:2 adds numpy==2.0``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from envbuild.envspec import EnvSpec
from envbuild.errors import LockMismatchError
from envbuild.lock.pylock import Lock
from envbuild.redact import redact
from envbuild.target import parse_python, resolve_platforms


def verify(
    env: EnvSpec,
    lk: Lock,
    *,
    python: str | None = None,
    platforms: Iterable[str] | None = None,
) -> Lock:
    """Check that ``lk`` was made from ``env``'s current requirements and for the asked Python
    (the model's when ``python`` is None) and platforms (any when None); return it.

    Raises LockMismatchError (exit 3), naming what changed, when it does not match.
    """
    target = lk.path or env.model_path / "pylock.toml"
    shown_model = _shown(env.model_path)
    regenerate = f"run `envbuild lock {shown_model}` to update it"
    current = env.digest()
    if lk.input_digest != current:
        raise LockMismatchError(
            "out of date: " + _describe_change(lk, env, current), path=target, hint=regenerate
        )
    if python:
        wanted = parse_python(python)
        ok = lk.python == wanted or (wanted.count(".") == 1 and lk.python_minor == wanted)
        if not ok:
            raise LockMismatchError(
                f"locked for Python {lk.python}, not {wanted}", path=target, hint=regenerate
            )
    elif env.python is not None and not (
        lk.python == env.python.version or env.python.admits(lk.python)
    ):
        raise LockMismatchError(
            f"locked for Python {lk.python} but the model asks for {env.python.text} "
            f"({env.python.origin})",
            path=target,
            hint=f"{regenerate}, or pass --python {lk.python} if that Python was intended",
        )
    if platforms is not None:
        wanted_platforms = [p.name for p in resolve_platforms(platforms)]
        if sorted(lk.platforms) != sorted(wanted_platforms):
            raise LockMismatchError(
                f"locked for {', '.join(lk.platforms)}, not {', '.join(wanted_platforms)}",
                path=target,
                hint=regenerate,
            )
    return lk


def _shown(path: Path) -> str:
    """A folder as the user would type it in the hint's command: relative unless that climbs."""
    rel = os.path.relpath(path)
    return str(path) if rel.startswith("..") else rel


def _describe_change(lk: Lock, env: EnvSpec, current: str) -> str:
    """What changed since the lock, from the requirement lists it records (one line)."""
    tool = lk.tool
    parts: list[str] = []
    for key, reqs in (("requirements", env.requirements), ("constraints", env.constraints)):
        before = set(tool.get(key, []))
        now = {redact(r.text): r for r in reqs}
        label = "" if key == "requirements" else "constraint "
        for text in sorted(set(now) - before):
            parts.append(f"{now[text].origin} adds {label}{text}")
        for text in sorted(before - set(now)):
            parts.append(f"{label}{text} was removed")
    model_python = env.python.specifier if env.python else None
    if tool.get("model-python") != model_python:
        parts.append(
            f"the model's Python changed from {tool.get('model-python')} to {model_python}"
        )
    if not parts:
        parts.append("the model's index options changed")
    shown = "; ".join(parts[:6]) + (f"; and {len(parts) - 6} more" if len(parts) > 6 else "")
    return f"{shown} (input digest {lk.input_digest[:19]}…, now {current[:19]}…)"

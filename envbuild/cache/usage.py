"""How the cache knows what is used: when, by which models, and by which running command.

* **last used**: ``KEY.used`` beside the entry; its modification time is touched on every use
  (one ``utime``: cheap enough for every ``predict``);
* **users**: ``KEY.users`` lists the model folders or URIs that used the entry (a few lines,
  rewritten atomically only when a new one appears), for ``envbuild cache list``;
* **in use**: a command that runs in an environment holds a *shared* ``flock`` on ``KEY.inuse``
  for as long as it lives — the descriptor is inherited across ``exec``, so ``serve`` and ``run``
  (which become the runner or the command) keep holding it. ``prune`` takes an *exclusive*
  non-blocking lock before removing an entry, so it never removes one that is in use.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

MAX_USERS = 50
_held: list[int] = []  # descriptors kept open for the life of the process (and its exec)


def sidecar(entry: Path, suffix: str) -> Path:
    return entry.parent / f"{entry.name}.{suffix}"


def touch(entry: Path) -> None:
    """Record a use of ``entry`` now."""
    marker = sidecar(entry, "used")
    with contextlib.suppress(OSError):
        try:
            os.utime(marker)
        except FileNotFoundError:
            marker.touch()


def last_used(entry: Path) -> float | None:
    try:
        return sidecar(entry, "used").stat().st_mtime
    except OSError:
        return None


def record_user(entry: Path, user: str) -> None:
    """Remember that ``user`` (a model folder or URI, credentials already hidden) used it."""
    from envbuild.files import atomic_write

    known = users(entry)
    if user in known:
        return
    with contextlib.suppress(OSError):
        atomic_write(
            sidecar(entry, "users"), "".join(f"{u}\n" for u in [*known, user][-MAX_USERS:])
        )


def users(entry: Path) -> list[str]:
    try:
        text = sidecar(entry, "users").read_text(encoding="utf-8")
    except OSError:
        return []
    return [line for line in text.splitlines() if line.strip()]


def hold(entry: Path) -> None:
    """Mark ``entry`` in use until this process (or what it execs) ends."""
    path = sidecar(entry, "inuse")
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
    except OSError:
        os.close(fd)
        return
    os.set_inheritable(fd, True)
    _held.append(fd)


def in_use(entry: Path) -> bool:
    """Does a running command hold ``entry``? (Tries the exclusive lock and lets it go.)"""
    with exclusive(entry) as free:
        return not free


@contextlib.contextmanager
def exclusive(entry: Path) -> Iterator[bool]:
    """Hold ``entry`` exclusively while removing it; yields False when someone uses it."""
    path = sidecar(entry, "inuse")
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        yield True
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)

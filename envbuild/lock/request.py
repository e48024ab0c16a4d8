"""What ``envbuild lock`` asks of a kind (:class:`LockRequest`) and what it gets back
(:class:`LockOutcome`): the venv kind writes ``pylock.toml`` (:class:`PipLocks`), the conda kind
``pixi.lock`` + ``pylock.conda.toml`` (``lock.conda.CondaLocks``); the CLI prints either the same
way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from envbuild.lock.pylock import Lock


@dataclass(frozen=True)
class LockRequest:
    """The options of ``envbuild lock``; each kind uses those that apply to it."""

    output: str | None = None  # -o: the pip lock file (venv), the folder of both (conda)
    folder: str | None = None  # without -o: where the lock files go (None: the model folder;
    # a downloaded model's cache entry, which keeps the model itself read-only)
    python: str | None = None
    platforms: tuple[str, ...] = ()
    accelerator: str | None = None
    torch_index_url: str | None = None  # a mirror of PyTorch's indexes
    as_of: str | None = None  # as typed: DATE, RFC 3339 time, or "model"
    offline: bool = False
    index_url: str | None = None
    extra_index_urls: tuple[str, ...] = ()
    find_links: tuple[str, ...] = ()
    trust_model_indexes: bool = False
    channels: tuple[str, ...] = ()  # conda: --channel
    override_channels: bool = False  # conda: --override-channels
    cuda: str | None = None  # conda: the target's CUDA (__cuda)


class LockOutcome(Protocol):
    """What was written or checked, for ``lock``'s output."""

    @property
    def warnings(self) -> tuple[str, ...]: ...

    @property
    def pip_lock(self) -> Lock:
        """The pip lock (the whole lock of a venv, the pip half of a conda environment)."""
        ...

    def to_dict(self) -> dict[str, object]: ...

    def summary(self, *, checked: bool, shown: Callable[[Path], str] = str) -> list[str]: ...


@dataclass(frozen=True)
class PipLocks:
    """The venv kind's lock: one ``pylock.toml``."""

    lock: Lock

    @property
    def warnings(self) -> tuple[str, ...]:
        return self.lock.warnings

    @property
    def pip_lock(self) -> Lock:
        return self.lock

    def to_dict(self) -> dict[str, object]:
        return dict(self.lock.to_dict())

    def summary(self, *, checked: bool, shown: Callable[[Path], str] = str) -> list[str]:
        lock = self.lock
        path = shown(lock.path) if lock.path else "-"
        verb = "up to date" if checked else ("wrote" if lock.changed else "unchanged")
        where = ", ".join(lock.platforms)
        as_of = f" as of {lock.as_of}" if lock.as_of else ""
        lines = [
            f"{path}: {verb}: {len(lock.packages)} packages for Python {lock.python} on "
            f"{where}{as_of}",
            f"digest {lock.digest}",
        ]
        return lines + accelerator_lines(lock)


def accelerator_lines(lock: Lock) -> list[str]:
    """Which builds the torch family comes in, and why (for ``lock``'s summary)."""
    lines = []
    if lock.accelerator is None and lock.accelerator_reason:
        lines.append(f"accelerator: the default builds ({lock.accelerator_reason})")
    if lock.accelerator:
        index = lock.indexes.get("accelerator-index")
        origin = f", the torch family from {index}" if index else ""
        why = f" ({lock.accelerator_reason})" if lock.accelerator_reason else ""
        lines.append(f"accelerator {lock.accelerator}{why}{origin}")
    return lines

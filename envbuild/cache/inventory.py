"""``envbuild cache``: what the cache holds, and removing what is old, big or no longer wanted.

Entries are ``ROOT/KIND/KEY`` folders with a marker (environments, locks, downloaded models,
conda prefixes and conda locks); the reuse images of ``--kind docker`` (``envbuild/<model>:<lock>-<model>``) are
listed from the Docker engine when one answers, and so are the build stages envbuild's builds
leave behind (``stage``: the classic builder keeps a multi-stage build's earlier stage as an
untagged image, labelled ``envbuild.stage=build`` by the templates; it is only the layer cache
that makes a rebuild fast, and hundreds of MB each). Sizes count each hard-linked file once (uv and
py-rattler link files from their own caches). Removal never touches an entry that a running
command holds (``usage.hold``) or that is being built (its build lock), and goes through a rename
first, so a reader never sees half an entry.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from envbuild.cache import MARKER, cache_root, read_marker
from envbuild.cache.usage import exclusive, in_use, last_used, sidecar, users
from envbuild.errors import UsageError

KINDS = ("envs", "locks", "models", "conda", "conda-locks", "packs")
SIDECARS = ("used", "users", "inuse", "lock")
IMAGE_REPOSITORY = "envbuild/"


@dataclass(frozen=True)
class Entry:
    """One thing in the cache, as ``cache list`` shows it."""

    kind: str  # env, lock, model, conda, conda-lock, pack, image, stage
    key: str
    path: str  # folder, or the image tag
    size: int  # bytes on disk (hard links counted once)
    created: float | None
    last_used: float | None
    users: tuple[str, ...] = ()
    in_use: bool = False
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def age_reference(self) -> float:
        """When it was last wanted: last used, else created."""
        return self.last_used or self.created or 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "key": self.key,
            "path": self.path,
            "size": self.size,
            "created": _iso(self.created),
            "last_used": _iso(self.last_used),
            "users": list(self.users),
            "in_use": self.in_use,
            **self.details,
        }


def _iso(moment: float | None) -> str | None:
    if moment is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(moment))


def disk_usage(path: Path, seen: set[tuple[int, int]] | None = None) -> int:
    """Bytes ``path`` occupies, each inode counted once (in ``seen``, shared across entries).

    A file hard-linked from uv's or py-rattler's own cache is counted for its share (its size
    divided by its link count): removing the entry frees about that much, not the whole file.
    """
    seen = seen if seen is not None else set()
    total = 0
    for folder, dirs, files in os.walk(path, followlinks=False):
        for name in [*files, *dirs]:
            try:
                info = os.lstat(os.path.join(folder, name))
            except OSError:
                continue
            identity = (info.st_dev, info.st_ino)
            if identity in seen:
                continue
            seen.add(identity)
            total += info.st_blocks * 512 // max(1, info.st_nlink)
    return total


_SINGULAR = {
    "envs": "env",
    "locks": "lock",
    "models": "model",
    "conda": "conda",
    "conda-locks": "conda-lock",
    "packs": "pack",
}


def entries(root: Path | None = None, *, images: bool = True) -> list[Entry]:
    """Every finished entry of the cache (and envbuild's reuse images), oldest use first."""
    base = root or cache_root()
    seen: set[tuple[int, int]] = set()
    found: list[Entry] = []
    for kind in KINDS:
        folder = base / kind
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            if not path.is_dir() or path.name.startswith("."):
                continue
            marker = read_marker(path)
            if marker is None or marker.get("key") != path.name:
                continue
            details: dict[str, Any] = {
                k: marker[k]
                for k in (
                    "python_version",
                    "lock_digest",
                    "installer",
                    "python",
                    "reference",
                    "archive",
                )
                if k in marker
            }
            found.append(
                Entry(
                    kind=_SINGULAR[kind],
                    key=path.name,
                    path=str(path),
                    size=disk_usage(path, seen),
                    created=marker.get("created"),
                    last_used=last_used(path),
                    users=tuple(users(path)),
                    in_use=in_use(path),
                    details=details,
                )
            )
    if images:
        found.extend(_images())
    found.sort(key=lambda e: e.age_reference)
    return found


def _images() -> list[Entry]:
    """The ``--kind docker`` reuse images and the build stages on the engine, when one answers
    (quietly none else)."""
    try:
        import docker  # noqa: F401 - a dependency, but the engine may be absent

        from envbuild.image.engine import client

        engine = client()
    except Exception:
        return []
    out: list[Entry] = []
    running = {c.image.id for c in engine.containers.list() if c.image is not None}
    for image in engine.images.list(filters={"label": "envbuild.version"}):
        tags = [t for t in image.tags if t.startswith(IMAGE_REPOSITORY)]
        if not tags:
            continue  # an image the user named (-t scorer:1) is theirs, not the cache's
        created = image.attrs.get("Created")
        moment = _parse_docker_time(created) if isinstance(created, str) else None
        out.append(
            Entry(
                kind="image",
                key=image.id,
                path=tags[0],
                size=int(image.attrs.get("Size") or 0),
                created=moment,
                last_used=None,
                in_use=image.id in running,
                details={"tags": tags},
            )
        )
    for image in engine.images.list(filters={"dangling": True, "label": "envbuild.stage=build"}):
        created = image.attrs.get("Created")
        out.append(
            Entry(
                kind="stage",
                key=image.id,
                path=f"<build stage {image.id.removeprefix('sha256:')[:12]}>",
                size=int(image.attrs.get("Size") or 0),  # its base image's layers included
                created=_parse_docker_time(created) if isinstance(created, str) else None,
                last_used=None,
                details={"labels": dict(image.labels or {})},
            )
        )
    return out


def _parse_docker_time(text: str) -> float | None:
    import calendar

    match = re.match(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})", text)
    if match is None:
        return None
    return float(calendar.timegm(time.strptime(match.group(1), "%Y-%m-%dT%H:%M:%S")))


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?$", re.IGNORECASE)


def parse_duration(text: str) -> float:
    """``30d``, ``12h``, ``2w``, ``90m``, ``45s`` -> seconds."""
    match = _DURATION.match(text.strip().lower())
    if match is None:
        raise UsageError(
            f"invalid duration {text!r}", field="--older-than", hint="write it as 30d, 12h or 2w"
        )
    unit = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}[match.group(2)]
    return float(match.group(1)) * unit


def parse_size(text: str) -> int:
    """``20G``, ``500M``, ``1.5T``, ``4096`` -> bytes (powers of 1024)."""
    match = _SIZE.match(text.strip())
    if match is None:
        raise UsageError(
            f"invalid size {text!r}", field="--max-size", hint="write it as 20G or 500M"
        )
    power = "kmgt".find(match.group(2).lower()) + 1 if match.group(2) else 0
    return int(float(match.group(1)) * 1024**power)


@dataclass(frozen=True)
class Pruned:
    """What a prune removed (or would remove), and what it left because it was in use."""

    removed: tuple[Entry, ...]
    kept_in_use: tuple[Entry, ...]
    freed: int
    dry_run: bool
    remaining: int  # bytes still in the cache

    def to_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "removed": [e.to_dict() for e in self.removed],
            "kept_in_use": [e.to_dict() for e in self.kept_in_use],
            "freed": self.freed,
            "remaining": self.remaining,
        }


def choose(
    found: Iterable[Entry], *, older_than: float | None, max_size: int | None, now: float
) -> list[Entry]:
    """The entries a prune removes: those not used for ``older_than`` seconds, then the least
    recently used until the rest fits in ``max_size`` (in-use entries are never chosen)."""
    pool = sorted(found, key=lambda e: e.age_reference)
    chosen: list[Entry] = []
    if older_than is not None:
        chosen = [e for e in pool if not e.in_use and e.age_reference < now - older_than]
    if max_size is not None:
        total = sum(e.size for e in pool if e not in chosen)
        for entry in pool:
            if total <= max_size:
                break
            if entry in chosen or entry.in_use:
                continue
            chosen.append(entry)
            total -= entry.size
    return chosen


def prune(
    *,
    older_than: float | None = None,
    max_size: int | None = None,
    everything: bool = False,
    dry_run: bool = False,
    root: Path | None = None,
    on_progress: Callable[[str], None] | None = None,
) -> Pruned:
    """Remove old entries (``older_than`` seconds), then least recently used ones down to
    ``max_size`` bytes; or ``everything``. In-use entries are kept."""
    found = entries(root)
    now = time.time()
    if everything:
        chosen = [e for e in found if not e.in_use]
    else:
        chosen = choose(found, older_than=older_than, max_size=max_size, now=now)
    removed: list[Entry] = []
    kept = [e for e in found if e.in_use and (everything or _would_go(e, older_than, now))]
    for entry in chosen:
        if on_progress:
            on_progress(f"removing {entry.kind} {entry.key[:12]} ({entry.size / 1e6:.0f} MB)")
        if dry_run or _remove_entry(entry):
            removed.append(entry)
        else:
            kept.append(entry)
    freed = sum(e.size for e in removed)
    return Pruned(tuple(removed), tuple(kept), freed, dry_run, sum(e.size for e in found) - freed)


def _would_go(entry: Entry, older_than: float | None, now: float) -> bool:
    return older_than is not None and entry.age_reference < now - older_than


def _remove_entry(entry: Entry) -> bool:
    """Remove one entry unless it is in use or being built; False when it was kept."""
    if entry.kind in ("image", "stage"):
        return _remove_image(entry)
    from filelock import FileLock, Timeout

    path = Path(entry.path)
    build_lock = FileLock(str(sidecar(path, "lock")), mode=0o644)
    try:
        build_lock.acquire(timeout=0)
    except Timeout:
        return False  # being built (or rebuilt) right now
    try:
        with exclusive(path) as free:
            if not free:
                return False
            doomed = path.parent / f".tmp-{entry.key}-removed-{os.getpid()}"
            try:
                os.rename(path, doomed)
            except OSError:
                return False
            shutil.rmtree(doomed, ignore_errors=True)
        for suffix in ("used", "users"):
            with contextlib.suppress(OSError):
                sidecar(path, suffix).unlink()
        return True
    finally:
        build_lock.release()


def _remove_image(entry: Entry) -> bool:
    import docker

    from envbuild.image.engine import client

    try:
        client().images.remove(entry.key, force=False)
    except docker.errors.APIError:
        return False  # used by a container, or gone
    return True


def logs_size(root: Path | None = None) -> int:
    folder = (root or cache_root()) / "logs"
    return disk_usage(folder) if folder.is_dir() else 0


__all__ = ["MARKER", "Entry", "Pruned", "entries", "parse_duration", "parse_size", "prune"]

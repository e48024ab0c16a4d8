"""envbuild's content-addressed cache: build in a temporary folder, publish by atomic rename.

Invariants (what makes it crash- and concurrency-safe):

* an entry ``ROOT/KIND/KEY`` is *finished* iff it holds a marker file whose ``key`` equals KEY;
  the marker is written last, inside the temporary folder, before the rename — so a folder that
  was renamed into place is always complete, and anything else is never used;
* builds of one key are serialized by a file lock (``ROOT/KIND/KEY.lock``); a second builder that
  waited for the lock finds the finished entry and does no work;
* a build killed midway leaves only ``ROOT/KIND/.tmp-KEY-*``; the next build of that key removes
  such leftovers under the lock, and an entry without a valid marker is removed and rebuilt.

Every use of an entry (``publish`` finding it finished, or building it) touches ``KEY.used``:
its modification time is the entry's "last used" (``usage.py``). ``envbuild cache`` lists and
prunes entries (``inventory.py``), never one a running command holds (``usage.hold``). Temporary
build folders older than a day (of builds killed long ago, for any key) are swept by any build.

``in_place=True`` is for content that hard-codes its own path (a conda prefix: the installer
writes the prefix into scripts and binaries, and post-link steps run there), so it cannot be built
elsewhere and renamed. The build then fills ``ROOT/KIND/KEY`` itself, under the same lock, and the
same invariant holds: until the marker is written (atomically, last) the entry is unfinished, so
a killed build is never used and the next builder removes it and starts again.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

MARKER = ".envbuild-complete.json"


def cache_root() -> Path:
    """``$ENVBUILD_CACHE_DIR``, else the platform's user cache folder (``~/.cache/envbuild``)."""
    configured = os.environ.get("ENVBUILD_CACHE_DIR")
    if configured:
        return Path(configured).expanduser().resolve()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("envbuild", appauthor=False))


def read_marker(entry: Path) -> dict[str, Any] | None:
    """The marker of a finished entry, or None when the entry is absent or unfinished."""
    try:
        data = json.loads((entry / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def is_finished(entry: Path, key: str) -> bool:
    marker = read_marker(entry)
    return marker is not None and marker.get("key") == key


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif path.exists():
        shutil.rmtree(path, ignore_errors=True)


def publish(
    kind: str,
    key: str,
    build: Callable[[Path], dict[str, Any] | None],
    *,
    root: Path | None = None,
    on_wait: Callable[[], None] | None = None,
    in_place: bool = False,
) -> tuple[Path, bool]:
    """Return ``(entry path, built_now)`` for ``KIND/KEY``, building it with ``build`` if needed.

    ``build(tmp)`` fills the temporary folder and may return extra marker data. It runs under the
    lock; if it raises, the temporary folder is removed and nothing is published. With
    ``in_place`` it is given the entry's own (empty) folder instead (see the module docstring).
    """
    from envbuild.cache.usage import touch

    base = (root or cache_root()) / kind
    entry = base / key
    if is_finished(entry, key):
        touch(entry)
        return entry, False
    from filelock import FileLock, Timeout  # 9 ms of imports a finished entry does not need

    base.mkdir(parents=True, exist_ok=True)
    _sweep_stale(base)
    lock = FileLock(str(base / f"{key}.lock"), mode=0o644)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if on_wait is not None:
            on_wait()
        lock.acquire()
    try:
        if is_finished(entry, key):
            touch(entry)
            return entry, False
        for leftover in base.glob(f".tmp-{key}-*"):
            _remove(leftover)
        _remove(entry)
        if in_place:
            _build_in_place(entry, key, build)
            touch(entry)
            return entry, True
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{key}-", dir=base))
        try:
            extra = build(tmp) or {}
            marker = {"key": key, "created": time.time(), **extra}
            (tmp / MARKER).write_text(
                json.dumps(marker, indent=2, sort_keys=True), encoding="utf-8"
            )
            os.rename(tmp, entry)
            _fsync_dir(base)
        except BaseException:
            _remove(tmp)
            raise
        touch(entry)
        return entry, True
    finally:
        lock.release()


STALE_SECONDS = 24 * 3600


def _sweep_stale(base: Path) -> None:
    """Remove temporary build folders of any key left more than a day ago (killed builds)."""
    cutoff = time.time() - STALE_SECONDS
    for leftover in base.glob(".tmp-*"):
        try:
            if leftover.stat().st_mtime < cutoff:
                _remove(leftover)
        except OSError:
            continue


def _build_in_place(entry: Path, key: str, build: Callable[[Path], dict[str, Any] | None]) -> None:
    entry.mkdir()
    try:
        extra = build(entry) or {}
        marker = {"key": key, "created": time.time(), **extra}
        from envbuild.files import atomic_write

        atomic_write(entry / MARKER, json.dumps(marker, indent=2, sort_keys=True))
        _fsync_dir(entry)
    except BaseException:
        _remove(entry)
        raise


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)

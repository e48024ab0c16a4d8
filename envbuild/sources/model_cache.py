"""The model cache: downloaded models, one entry per immutable reference.

Layout (under envbuild's cache, :func:`envbuild.cache.cache_root`)::

    models/KEY/model/                   the MLflow model folder, as downloaded (files read-only)
    models/KEY/.envbuild-complete.json  the marker, written last: key, layout, identity, reference
    models/KEY/pylock.toml              what `envbuild lock URI` resolved for it (never in model/)
    models/KEY.lock                     serializes downloads of KEY (a file lock)
    models/.tmp-KEY-*                   a download in progress (or killed: removed by the next one)

``KEY`` is the sha256 (32 hex digits) of the layout version and the reference's identity (the run
and artifact path, registered name and version, logged model id or artifact URI, *and* the store
holding it: see :func:`envbuild.sources.refs.identity`). An alias is not part of it: it is resolved
to a version first, so moving ``@champion`` to an already downloaded version downloads nothing.

Publishing goes through :func:`envbuild.cache.publish` (temporary folder, atomic rename, marker
last): a download killed at any point leaves no entry that looks finished, and two processes
downloading the same reference do it once. The folder lives beside the marker, not around it, so
the model folder holds exactly the model's files (its digest, in image tags, is the model's own).
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envbuild.cache import cache_root, is_finished, publish, read_marker

KIND = "models"
LAYOUT = "models-1"  # bump when the entry layout changes
MODEL_DIR = "model"


@dataclass(frozen=True)
class Entry:
    """A finished cache entry: the model folder and what the marker recorded about it."""

    path: Path
    folder: Path
    reference: Mapping[str, Any]


def cache_key(identity: Mapping[str, str]) -> str:
    blob = LAYOUT + "\n" + json.dumps(dict(identity), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:32]


def lookup(identity: Mapping[str, str], *, root: Path | None = None) -> Entry | None:
    """The finished entry for ``identity``, or None (nothing is created or locked)."""
    key = cache_key(identity)
    path = (root or cache_root()) / KIND / key
    if not is_finished(path, key):
        return None
    return _entry(path)


def store(
    identity: Mapping[str, str],
    reference: Mapping[str, Any],
    fill: Callable[[Path], Path],
    *,
    root: Path | None = None,
    on_wait: Callable[[], None] | None = None,
) -> tuple[Entry, bool]:
    """The entry for ``identity``, downloading it with ``fill(tmp) -> tmp/model`` if needed.

    Returns ``(entry, downloaded_now)``. ``fill`` runs under the entry's lock in a temporary
    folder that is removed if it raises; the folder it returns is made read-only.
    """

    def build(tmp: Path) -> dict[str, Any]:
        folder = fill(tmp)
        if folder != tmp / MODEL_DIR:
            raise RuntimeError(f"model downloaded to {folder}, expected {tmp / MODEL_DIR}")
        files, size = make_read_only(folder)
        return {
            "layout": LAYOUT,
            "identity": dict(identity),
            "reference": dict(reference),
            "files": files,
            "bytes": size,
        }

    path, built = publish(KIND, cache_key(identity), build, root=root, on_wait=on_wait)
    return _entry(path), built


def _entry(path: Path) -> Entry:
    marker = read_marker(path) or {}
    reference = marker.get("reference")
    return Entry(
        path=path,
        folder=path / MODEL_DIR,
        reference=reference if isinstance(reference, dict) else {},
    )


def entry_holding(path: Path, *, root: Path | None = None) -> Path | None:
    """The finished entry whose model folder holds ``path`` (a downloaded model given by its
    path, as envbuild's own messages show it), or None. Such a folder is as read-only as when
    it is given by its URI."""
    base = ((root or cache_root()) / KIND).resolve()
    try:
        rel = Path(os.path.realpath(path)).relative_to(base)
    except ValueError:
        return None
    if len(rel.parts) < 2 or rel.parts[1] != MODEL_DIR:
        return None
    entry = base / rel.parts[0]
    return entry if is_finished(entry, rel.parts[0]) else None


def lock_file(entry: Path) -> Path:
    """Where ``envbuild lock URI`` writes the lock it resolves for a downloaded model: in the
    entry, beside the read-only model folder (whose files and digest stay as downloaded), so it
    goes away with the entry."""
    from envbuild.lock.pylock import PYLOCK_NAME

    return entry / PYLOCK_NAME


def make_read_only(folder: Path) -> tuple[int, int]:
    """Clear every write bit of the files under ``folder``; returns (files, bytes).

    Directories stay writable so that the cache can remove the entry; the real guard is
    :attr:`envbuild.sources.Source.read_only`, which commands check before writing (write bits
    do not stop root).
    """
    files = size = 0
    for dirpath, _dirs, names in os.walk(folder):
        for name in names:
            file = Path(dirpath) / name
            info = file.lstat()
            if stat.S_ISREG(info.st_mode):
                file.chmod(
                    stat.S_IMODE(info.st_mode) & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
                )
                files += 1
                size += info.st_size
    return files, size

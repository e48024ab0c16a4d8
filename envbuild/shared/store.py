"""The registry on disk: one folder per version, published atomically, never changed after.

Layout (``ROOT`` is ``$ENVBUILD_HOME``, else the platform's user data folder for envbuild)::

    ROOT/environments/NAME/VERSION/environment.json   the metadata (what, how made, installed)
    ROOT/environments/NAME/VERSION/pylock.toml        the lock, when built from one
    ROOT/environments/NAME/VERSION/env/               the virtualenv, when envbuild built it
    ROOT/environments/NAME/VERSION.lock               held while that version is created

A version is created with ``cache.publish``: built in ``NAME/.tmp-VERSION-*`` under its file
lock, the completion marker written last, then renamed into place. So a version is either
complete or absent (a killed ``create`` leaves a temporary folder the next one removes), readers
never wait and never see half of one, and of two concurrent ``create`` of one version exactly
one proceeds: the other finds the lock held (or the version there) and stops with an error.
Removing renames the version out of sight first, then deletes it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envbuild.cache import MARKER, is_finished, publish
from envbuild.errors import RegistryError
from envbuild.shared.names import Ref, check_name, check_version, version_key
from envbuild.shared.record import SharedEnvironment

METADATA = "environment.json"
FOLDER = "environments"


def registry_root() -> Path:
    """``$ENVBUILD_HOME``, else the platform's user data folder (``~/.local/share/envbuild``)."""
    configured = os.environ.get("ENVBUILD_HOME")
    if configured:
        return Path(configured).expanduser().resolve()
    from platformdirs import user_data_dir

    return Path(user_data_dir("envbuild", appauthor=False))


@dataclass(frozen=True)
class Registry:
    """The named shared environments under ``root`` (see the module docstring)."""

    root: Path

    @classmethod
    def default(cls) -> Registry:
        return cls(registry_root())

    @property
    def folder(self) -> Path:
        return self.root / FOLDER

    # -- reading ------------------------------------------------------------------------------
    def names(self) -> list[str]:
        try:
            entries = sorted(os.scandir(self.folder), key=lambda e: e.name)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise RegistryError(
                f"cannot read the registry: {exc.strerror}", path=self.folder
            ) from None
        return [e.name for e in entries if e.is_dir() and not e.name.startswith(".")]

    def versions(self, name: str) -> list[SharedEnvironment]:
        """Every complete version of ``name``, oldest first (by creation time)."""
        base = self.folder / name
        try:
            entries = list(os.scandir(base))
        except FileNotFoundError:
            return []
        found = []
        for entry in entries:
            if entry.name.startswith(".") or not entry.is_dir():
                continue
            path = Path(entry.path)
            if is_finished(path, entry.name):
                found.append(self._read(path))
            elif (path / MARKER).exists():  # a marker that is not a finished one: damaged
                raise RegistryError(
                    "broken registry file: the completion marker is unreadable",
                    path=path / MARKER,
                    hint=f"remove it with `envbuild environments remove {name}:{entry.name}`",
                )
        return sorted(found, key=lambda e: (e.created, version_key(e.version)))

    def all(self) -> list[SharedEnvironment]:
        return [version for name in self.names() for version in self.versions(name)]

    def _read(self, folder: Path) -> SharedEnvironment:
        path = folder / METADATA
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RegistryError("broken registry file: it is missing", path=path) from None
        except (OSError, ValueError) as exc:
            raise RegistryError(f"broken registry file: {exc}", path=path) from None
        record = SharedEnvironment.from_dict(data, path)
        if (record.name, record.version) != (folder.parent.name, folder.name):
            raise RegistryError(
                f"broken registry file: it describes {record.ref}, not "
                f"{folder.parent.name}:{folder.name}",
                path=path,
            )
        return record

    def get(self, ref: Ref) -> SharedEnvironment:
        """The version ``ref`` names (the newest when it names none); a RegistryError listing
        what exists otherwise."""
        versions = self.versions(ref.name)
        if not versions:
            known = ", ".join(sorted({v.name for v in self.all()})) or "none"
            raise RegistryError(
                f"no shared environment named {ref.name!r} (known: {known})",
                field="--environment",
                hint="`envbuild environments list` shows them; `envbuild environments create` "
                "makes one",
            )
        if ref.version is None:
            return versions[-1]
        for version in versions:
            if version.version == ref.version:
                return version
        listing = ", ".join(
            v.version for v in sorted(versions, key=lambda v: version_key(v.version))
        )
        raise RegistryError(
            f"{ref.name} has no version {ref.version!r} (versions: {listing})",
            field="--environment",
        )

    def next_version(self, name: str) -> str:
        """One more than the highest numeric version (``1`` for a new name)."""
        numbers = [int(v.version) for v in self.versions(name) if v.version.isdigit()]
        return str(max(numbers, default=0) + 1)

    # -- writing ------------------------------------------------------------------------------
    def create(
        self,
        name: str,
        version: str,
        build: Callable[[Path], SharedEnvironment],
    ) -> SharedEnvironment:
        """Publish ``name:version``: ``build(folder)`` fills a private folder (which becomes the
        version's) and returns its record, written as the metadata file before the rename."""
        check_name(name)
        check_version(version)
        entry = self.folder / name / version
        if is_finished(entry, version):
            raise self._exists(name, version)

        def busy() -> None:
            raise RegistryError(
                f"{name}:{version} is being created by another process",
                hint="wait for it and use that one, or create another version (--version)",
            )

        def fill(tmp: Path) -> dict[str, Any]:
            record = build(tmp)
            (tmp / METADATA).write_text(
                json.dumps(record.to_dict(), indent=2, sort_keys=True) + "\n", encoding="utf-8"
            )
            return {"environment": record.ref}

        path, built = publish(f"{FOLDER}/{name}", version, fill, root=self.root, on_wait=busy)
        if not built:  # another process finished it between our check and our lock
            raise self._exists(name, version)
        return self._read(path)

    @staticmethod
    def _exists(name: str, version: str) -> RegistryError:
        return RegistryError(
            f"{name}:{version} already exists (versions are immutable)",
            hint="create another version (--version, or none for the next number), or remove "
            f"this one first: envbuild environments remove {name}:{version}",
        )

    def remove(self, record: SharedEnvironment) -> None:
        """Forget ``record``: its folder is renamed out of sight (readers stop seeing it at
        once), then deleted. What it registered (a prefix, an image) is left alone."""
        from filelock import FileLock, Timeout

        base = self.folder / record.name
        lock = FileLock(str(base / f"{record.version}.lock"), mode=0o644)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            raise RegistryError(
                f"{record.ref} is being created by another process", hint="try again later"
            ) from None
        try:
            gone = Path(tempfile.mkdtemp(prefix=f".removing-{record.version}-", dir=base))
            os.replace(base / record.version, gone / "entry")
            shutil.rmtree(gone, ignore_errors=True)
        finally:
            lock.release()  # the lock file stays: unlinking it could let two creators in

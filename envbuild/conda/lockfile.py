"""The conda lock: rattler's lock file format (``pixi.lock``), one environment, one platform.

Decision: the lock is written in rattler's lock file format (the one pixi uses; version 7 with
py-rattler 0.28) through py-rattler's own ``LockFile`` writer, rather than as an ``@EXPLICIT``
file:

* it holds each package's whole record — URL, sha256 *and* md5, size, ``depends``/``constrains``,
  noarch kind, build and index timestamps — so installing needs nothing but the package files: no
  repodata, no second solve, and ``--offline`` works from the package cache alone. An
  ``@EXPLICIT`` file holds only ``URL#hash``; installing it with rattler would need every
  record's metadata again (from repodata, i.e. the network, or from each downloaded archive);
* rattler's writer is canonical: packages are sorted, fields in a fixed order, and fields that the
  URL implies (name, version, build, subdir, channel) are left out, so the same solve gives the
  same bytes (:attr:`CondaLock.digest`, part of the environment's cache key), and a diff of two
  locks shows only what changed;
* it also records the target platform's *virtual packages* (what the solve assumed about the
  system) and the channels, in priority order;
* pixi and every rattler-based tool read it; conda reads it through the conda-lockfiles plugin.
  For tools that only take an explicit file, :meth:`CondaLock.explicit` renders the same records
  as ``@EXPLICIT`` with a sha256 for every package (``URL#SHA256``, conda >= 24.9), in dependency
  order.

The bytes depend on py-rattler's writer, so upgrading py-rattler across a lock format version
changes them (and so the cache key): the lock records the format version it was written in, and
``lock_from_text`` reads every version rattler reads.

Every URL in the lock is canonical and credential-free (see :mod:`envbuild.conda.channels`); a
``file://`` channel makes a warning (such a lock installs only where that folder exists; an
image is installed on the host, so it works there too).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from envbuild.errors import LockMismatchError
from envbuild.files import atomic_write, temporary_directory

if TYPE_CHECKING:
    from rattler import LockFile, RepoDataRecord

    from envbuild.conda.channels import CondaChannel
    from envbuild.conda.platforms import CondaPlatform

LOCK_NAME = "pixi.lock"  # the name pixi and the conda-lockfiles plugin recognise
ENVIRONMENT = "default"
_HINT = "run `envbuild lock MODEL --kind conda` to write it again"


@dataclass(frozen=True)
class CondaRecord:
    """One locked conda package."""

    name: str
    version: str
    build: str
    subdir: str
    channel: str  # canonical channel base URL ("https://conda.anaconda.org/conda-forge/")
    url: str
    sha256: str  # hex
    md5: str | None = None
    size: int | None = None
    depends: tuple[str, ...] = ()
    noarch: str | None = None  # "python", "generic" or None

    @property
    def file_name(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    def __str__(self) -> str:
        return f"{self.name}={self.version}={self.build}"

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "version": self.version,
            "build": self.build,
            "subdir": self.subdir,
            "channel": self.channel,
            "url": self.url,
            "sha256": self.sha256,
        }


@dataclass(frozen=True)
class CondaLock:
    """A conda lock: its canonical text and what it says. ``digest`` (of ``text``) is its identity."""

    text: str
    digest: str  # "sha256:<hex of text's UTF-8 bytes>"
    platform: str  # conda subdir: "linux-64"
    virtual_packages: tuple[str, ...]  # "__glibc=2.28=0", ...
    channels: tuple[str, ...]  # canonical URLs, in priority order
    records: tuple[CondaRecord, ...]  # sorted by name
    path: Path | None = field(default=None, compare=False)
    warnings: tuple[str, ...] = field(default=(), compare=False)

    def record(self, name: str) -> CondaRecord | None:
        wanted = name.lower()
        return next((r for r in self.records if r.name == wanted), None)

    @property
    def python_version(self) -> str | None:
        """The version of the locked ``python`` package (the environment's interpreter)."""
        python = self.record("python")
        return python.version if python else None

    def explicit(self) -> str:
        """The records as an ``@EXPLICIT`` file (``URL#SHA256``, dependencies first)."""
        lines = [
            "# conda environment from envbuild's lock; install with",
            "# conda create --name ENV --file THIS_FILE",
            f"# platform: {self.platform}",
            "@EXPLICIT",
        ]
        lines += [f"{r.url}#{r.sha256}" for r in dependency_order(self.records)]
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict[str, object]:
        return {
            "digest": self.digest,
            "platform": self.platform,
            "virtual_packages": list(self.virtual_packages),
            "channels": list(self.channels),
            "packages": [r.to_dict() for r in self.records],
            "path": str(self.path) if self.path else None,
        }


def text_digest(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def dependency_order(records: Sequence[CondaRecord]) -> list[CondaRecord]:
    """``records`` with every package after the ones it depends on (ties by name): the order
    conda links an explicit file in."""
    by_name = {r.name: r for r in records}
    needs = {
        r.name: sorted({d.split()[0].lower() for d in r.depends} & set(by_name) - {r.name})
        for r in records
    }
    done: list[CondaRecord] = []
    placed: set[str] = set()
    visiting: set[str] = set()

    def place(name: str) -> None:
        if name in placed or name in visiting:  # a cycle links in name order
            return
        visiting.add(name)
        for dep in needs[name]:
            place(dep)
        visiting.discard(name)
        placed.add(name)
        done.append(by_name[name])

    for name in sorted(by_name):
        place(name)
    return done


# ---------------------------------------------------------------------------------------------
# rattler <-> values


def lock_from_records(
    records: Sequence[RepoDataRecord],
    platform: CondaPlatform,
    channels: Sequence[CondaChannel],
) -> CondaLock:
    """The canonical lock of solved ``records`` (whose URLs are already canonical)."""
    from rattler import LockChannel, LockFile, LockPlatform

    lock_platform = LockPlatform(
        platform.subdir, virtual_packages=[str(v) for v in platform.virtual_packages]
    )
    lock_file = LockFile([lock_platform])
    lock_file.set_channels(ENVIRONMENT, [LockChannel(c.url) for c in channels])
    for record in sorted(records, key=lambda r: r.name.normalized):
        lock_file.add_conda_package(ENVIRONMENT, lock_platform, record)
    text = _write_text(lock_file)
    lock = lock_from_text(text)
    local = sorted({c.url for c in channels if c.is_local})
    warnings = tuple(
        f"channel {url} is a local folder: the lock installs only on a machine that has it "
        "(images are fine: envbuild installs the conda packages on the host)"
        for url in local
    )
    return CondaLock(**{**_fields(lock), "warnings": warnings})


def lock_from_text(text: str, *, path: Path | None = None) -> CondaLock:
    """Parse a conda lock (rattler's lock file format) into a :class:`CondaLock`."""
    shown = path or Path(LOCK_NAME)
    lock_file = _parse(text, shown)
    env = lock_file.environment(ENVIRONMENT)
    if env is None:
        raise LockMismatchError(
            f"no {ENVIRONMENT!r} environment", path=shown, field="environments", hint=_HINT
        )
    platforms = env.platforms()
    if len(platforms) != 1:
        names = ", ".join(p.name for p in platforms) or "none"
        raise LockMismatchError(
            f"expected one platform, found {names}", path=shown, field="platforms", hint=_HINT
        )
    platform = platforms[0]
    records = []
    for record in env.conda_repodata_records_for_platform(platform) or []:
        if record.sha256 is None:
            raise LockMismatchError(
                f"{record.file_name} has no sha256", path=shown, field="packages", hint=_HINT
            )
        records.append(_record(record))
    vps: list[str] = []
    for lp in lock_file.platforms():
        if lp.name == platform.name:
            vps = list(lp.virtual_packages)
    return CondaLock(
        text=text,
        digest=text_digest(text),
        platform=platform.name,
        virtual_packages=tuple(vps),
        channels=tuple(str(c) for c in env.channels()),
        records=tuple(sorted(records, key=lambda r: r.name)),
        path=path,
    )


def read_lock(path: str | os.PathLike[str]) -> CondaLock:
    target = Path(path)
    try:
        text = target.read_text(encoding="utf-8")
    except OSError as exc:
        raise LockMismatchError(
            f"cannot read the conda lock: {exc.strerror}", path=target, hint=_HINT
        ) from None
    return lock_from_text(text, path=target)


def write_lock(lock: CondaLock, path: str | os.PathLike[str]) -> CondaLock:
    """Write ``lock`` to ``path`` atomically; return it with its path set."""
    target = Path(path)
    atomic_write(target, lock.text)
    return CondaLock(**{**_fields(lock), "path": target})


def repodata_records(lock: CondaLock) -> list[RepoDataRecord]:
    """The lock's packages as py-rattler records (what ``rattler.install`` takes)."""
    lock_file = _parse(lock.text, lock.path or Path(LOCK_NAME))
    env = lock_file.environment(ENVIRONMENT)
    assert env is not None  # lock_from_text checked
    return list(env.conda_repodata_records_for_platform(env.platforms()[0]) or [])


def _fields(lock: CondaLock) -> dict[str, Any]:
    return {name: getattr(lock, name) for name in CondaLock.__dataclass_fields__}


def _write_text(lock_file: LockFile) -> str:
    with temporary_directory("conda-lock") as tmp:
        target = Path(tmp) / LOCK_NAME
        lock_file.to_path(target)
        return target.read_text(encoding="utf-8")


def _parse(text: str, shown: Path) -> LockFile:
    from rattler import LockFile

    with temporary_directory("conda-lock") as tmp:
        target = Path(tmp) / LOCK_NAME
        target.write_text(text, encoding="utf-8")
        try:
            return LockFile.from_path(target)
        except Exception as exc:  # rattler raises its own parse errors (and ValueError)
            message = " ".join(str(exc).split()) or type(exc).__name__
            raise LockMismatchError(
                f"not a readable conda lock: {message}", path=shown, hint=_HINT
            ) from None


def _record(record: RepoDataRecord) -> CondaRecord:
    noarch = record.noarch
    kind = None
    if noarch.python:
        kind = "python"
    elif noarch.generic:
        kind = "generic"
    return CondaRecord(
        name=record.name.normalized,
        version=str(record.version),
        build=str(record.build),
        subdir=record.subdir,
        channel=_base(record.channel),
        url=record.url,
        sha256=record.sha256.hex() if record.sha256 else "",
        md5=record.md5.hex() if record.md5 else None,
        size=record.size,
        depends=tuple(record.depends),
        noarch=kind,
    )


def _base(url: str | None) -> str:
    if not url:
        return ""
    return url if url.endswith("/") else url + "/"

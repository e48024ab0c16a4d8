"""The packed archive's bytes: a reproducible ``.tar.gz`` written from a staged folder, and reading
it back (the manifest, and a full integrity check).

Reproducible means: packing the same lock twice gives the same archive. So the manifest comes
first (it can be read without decompressing the rest), then every member sorted by path, with a
fixed modification time, owner 0:0 without names, and modes reduced to 0755 (folders and
executables) or 0644; the gzip header carries neither a timestamp nor a file name. Symlinks stay
symlinks (relative, inside the tree); hard links are written as files.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import stat
import tarfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from envbuild.errors import ArchiveError

MANIFEST = "envbuild-pack.json"
FORMAT = "envbuild-pack/1"
MTIME = 315532800  # 1980-01-01T00:00:00Z, as in wheels: a fixed date every tool accepts
COMPRESSLEVEL = 6  # gzip's own default: level 9 takes twice as long for 2% less


def _members(tree: Path) -> Iterator[Path]:
    """Every path below ``tree``, sorted by its relative POSIX name (folders before contents)."""
    found: list[tuple[str, Path]] = []
    for folder, dirs, files in os.walk(tree):
        base = Path(folder)
        for name in dirs + files:
            path = base / name
            found.append((path.relative_to(tree).as_posix(), path))
    for _, path in sorted(found):
        yield path


def _info(name: str, mode: int, kind: bytes, size: int = 0, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = size
    info.linkname = link
    info.mtime = MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode = mode
    return info


def write_archive(tree: Path, manifest: dict[str, Any], dest: Path) -> None:
    """Write ``tree`` (with ``manifest`` as its first member) to ``dest``, reproducibly."""
    data = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode("utf-8")
    with (
        open(dest, "wb") as raw,
        gzip.GzipFile(
            filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=COMPRESSLEVEL
        ) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        tar.addfile(_info(MANIFEST, 0o644, tarfile.REGTYPE, len(data)), io.BytesIO(data))
        for path in _members(tree):
            name = path.relative_to(tree).as_posix()
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                tar.addfile(_info(name, 0o777, tarfile.SYMTYPE, link=os.readlink(path)))
            elif stat.S_ISDIR(st.st_mode):
                tar.addfile(_info(name, 0o755, tarfile.DIRTYPE))
            elif stat.S_ISREG(st.st_mode):
                mode = 0o755 if st.st_mode & 0o111 else 0o644
                with open(path, "rb") as handle:
                    tar.addfile(_info(name, mode, tarfile.REGTYPE, st.st_size), handle)


def write_files_archive(files: list[tuple[str, Path, bool]], dest: Path) -> None:
    """Write ``(name, file, executable)`` entries (a model folder's files) to ``dest``,
    reproducibly: the same files give the same archive."""
    with (
        open(dest, "wb") as raw,
        gzip.GzipFile(
            filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=COMPRESSLEVEL
        ) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        folders: set[str] = set()
        for name, path, executable in sorted(files):
            parts = name.split("/")[:-1]
            for depth in range(1, len(parts) + 1):
                folder = "/".join(parts[:depth])
                if folder not in folders:
                    folders.add(folder)
                    tar.addfile(_info(folder, 0o755, tarfile.DIRTYPE))
            size = path.stat().st_size
            with open(path, "rb") as handle:
                mode = 0o755 if executable else 0o644
                tar.addfile(_info(name, mode, tarfile.REGTYPE, size), handle)


def read_manifest(path: Path) -> dict[str, Any]:
    """The manifest of a packed archive (its first member), or an ArchiveError saying why not."""
    try:
        with tarfile.open(path, mode="r:gz") as tar:
            first = tar.next()
            if first is None or first.name != MANIFEST or not first.isfile():
                raise ArchiveError(
                    f"not an envbuild archive: its first member is not {MANIFEST}",
                    path=path,
                    hint="make one with `envbuild pack MODEL`",
                )
            handle = tar.extractfile(first)
            assert handle is not None
            manifest = json.loads(handle.read().decode("utf-8"))
    except FileNotFoundError:
        raise ArchiveError("no such file", path=path) from None
    except IsADirectoryError:
        raise ArchiveError("is a folder, expected a .tar.gz archive", path=path) from None
    except (tarfile.TarError, OSError, EOFError, zlib.error, ValueError) as exc:
        raise ArchiveError(
            f"corrupted or not a .tar.gz archive ({_reason(exc)})", path=path
        ) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        raise ArchiveError(
            f"unsupported archive format {found!r} (this envbuild reads {FORMAT})",
            path=path,
            field=MANIFEST,
        )
    return manifest


def verify_archive(path: Path) -> dict[str, Any]:
    """Read the whole archive once (gzip checks its CRC at the end) and check that what the
    manifest says is inside is there; returns the manifest."""
    manifest = read_manifest(path)
    needed = {
        str(manifest.get("python", {}).get("executable", "")),
        str(manifest.get("runner", "")),
    }
    needed.discard("")
    try:
        with tarfile.open(path, mode="r:gz") as tar:
            for member in tar:
                needed.discard(member.name)
                if member.isfile():
                    handle = tar.extractfile(member)
                    assert handle is not None
                    while handle.read(1 << 20):
                        pass
            # tar stops at its end marker; gzip checks its CRC only at the end of the stream,
            # and a flipped byte in a stored (uncompressed) block is caught by nothing else
            assert tar.fileobj is not None
            while tar.fileobj.read(1 << 20):
                pass
    except (tarfile.TarError, OSError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise ArchiveError(f"corrupted archive ({_reason(exc)})", path=path) from None
    if needed:
        raise ArchiveError(f"incomplete archive: {', '.join(sorted(needed))} missing", path=path)
    return manifest


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__

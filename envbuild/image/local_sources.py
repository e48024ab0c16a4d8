"""Packages a lock takes from this machine's files (find-links folders, ``file://`` indexes) in an
image: copied into the build context and installed from there, in the build stage only.

The lock itself keeps the files' original locations (it is the model's lock, recorded in the
image as is). The build stage gets a copy of it in which each local file is a ``path`` next to the
lock (``files/NAME``, PEP 751 paths are relative to the lock), with the same hashes, so
``uv pip sync --require-hashes`` checks them as it checks downloads, the build never reaches back
to the host, and the final stage (which starts afresh from the base) holds none of the files.
Only the files an installer could pick for the image's platform are copied.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from packaging.markers import InvalidMarker, Marker
from packaging.utils import InvalidWheelFilename, parse_wheel_filename

from envbuild.errors import BuildError
from envbuild.lock.pylock import Lock, file_name
from envbuild.lock.toml import render
from envbuild.target import Platform

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, from PyPI
    import tomli as tomllib

FILES_DIR = "files"  # in the build context's build/ folder, and next to the build stage's lock


@dataclass(frozen=True)
class LocalFile:
    """One file of this machine the build stage installs from."""

    name: str  # its file name, unique in the context's build/files/
    source: Path  # where it is on this machine
    package: str  # name==version, for messages


def _local_path(entry: Mapping[str, Any], lock_dir: Path | None) -> Path | None:
    url = entry.get("url")
    if isinstance(url, str) and urlsplit(url).scheme.lower() == "file":
        return Path(unquote(urlsplit(url).path))
    path = entry.get("path")
    if isinstance(path, str):
        found = Path(path)
        return found if found.is_absolute() or lock_dir is None else lock_dir / found
    return None


def _applies(marker: str | None, platform: Platform, python: str) -> bool:
    if not marker:
        return True
    environment = {
        "sys_platform": platform.sys_platform,
        "platform_machine": platform.machine,
        "platform_system": "Linux",
        "os_name": "posix",
        "python_version": ".".join(python.split(".")[:2]),
        "python_full_version": python if python.count(".") == 2 else f"{python}.0",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
    }
    try:
        return Marker(marker).evaluate(environment)
    except (InvalidMarker, ValueError):
        return True  # cannot tell: copy it (it is only a file in the build stage)


def _fits(name: str, platform: Platform) -> bool:
    """Whether a wheel could be installed on ``platform`` (sdists always could)."""
    if not name.endswith(".whl"):
        return True
    try:
        _, _, _, tags = parse_wheel_filename(name)
    except InvalidWheelFilename:
        return True
    for tag in tags:
        plat = tag.platform
        if plat == "any" or (
            (plat.startswith(("manylinux", "musllinux", "linux")))
            and plat.endswith(platform.machine)
        ):
            return True
    return False


def plan_local_files(lk: Lock, platform: Platform) -> tuple[tuple[LocalFile, ...], str | None]:
    """The local files to copy for ``platform`` and the build stage's lock text (None: the lock
    installs nothing from this machine, the build stage uses it as is)."""
    if not lk.local_packages:
        return (), None
    doc = tomllib.loads(lk.text)
    lock_dir = lk.path.parent if lk.path else None
    files: dict[str, LocalFile] = {}
    for entry in doc.get("packages", []):
        pin = f"{entry.get('name')}=={entry.get('version')}"
        if entry.get("directory"):
            raise BuildError(
                f"the lock installs {pin} from a local folder ({entry['directory'].get('path')}), "
                "which an image cannot build from",
                path=lk.path,
                hint="build a wheel of it and put it in a find-links folder (pip wheel -w DIR), "
                "or publish it to an index",
            )
        wanted = _applies(entry.get("marker"), platform, lk.python)
        kept_wheels = []
        for wheel in entry.get("wheels", []):
            source = _local_path(wheel, lock_dir)
            if source is None:
                kept_wheels.append(wheel)
                continue
            if not (wanted and _fits(file_name(wheel), platform)):
                continue  # a local file for another platform: not this image's business
            kept_wheels.append(_relocate(wheel, source, pin, files, lk))
        if "wheels" in entry:
            entry["wheels"] = kept_wheels
            if not kept_wheels:
                del entry["wheels"]
        for key in ("sdist", "archive"):
            item = entry.get(key)
            source = _local_path(item, lock_dir) if isinstance(item, Mapping) else None
            if source is not None and isinstance(item, Mapping):
                if wanted:
                    entry[key] = _relocate(item, source, pin, files, lk)
                else:
                    del entry[key]
    return tuple(files.values()), render(doc)


def _relocate(
    item: Mapping[str, Any], source: Path, pin: str, files: dict[str, LocalFile], lk: Lock
) -> dict[str, Any]:
    if not source.is_file():
        raise BuildError(
            f"the lock installs {pin} from {source}, which does not exist on this machine",
            path=lk.path,
            hint="lock again where the find-links folder or file:// index is",
        )
    name = file_name(item) or source.name
    known = files.get(name)
    if known is not None and known.source != source:
        raise BuildError(f"two local files are both named {name}: {known.source}, {source}")
    files[name] = LocalFile(name, source, pin)
    out = {k: v for k, v in item.items() if k not in ("url", "path")}
    out["name"] = name
    out["path"] = f"{FILES_DIR}/{name}"
    return out

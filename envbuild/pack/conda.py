"""Packing the ``conda`` kind: the conda prefix itself, made relocatable the way conda-pack does.

A conda prefix carries its interpreter (the ``python`` package) and finds its ``sys.prefix`` from
the executable's place, like the venv kind's relocated interpreter. What ties it to its path is
the installer's work: every file a package declared with a *prefix placeholder*
(``conda-meta/*.json``: ``paths_data.paths[]`` entries with ``prefix_placeholder`` and
``file_mode`` text or binary) got the prefix written over the placeholder, and the scripts of
noarch packages' entry points and of the pip half (uv) name the prefix's Python in their
shebang. So:

* the prefix is copied without what is not the environment: envbuild's cache marker, rattler's
  ``CACHEDIR.TAG``, ``pkgs/``, bytecode (compiled again, deterministically, by ``pack``), the
  pip half's lock (the archive has it as ``envbuild/pylock.toml``);
* files the installer wrote the prefix into get their package's placeholder back (text: the
  prefix replaced; binary: conda's NUL-padded C strings undone), checked against the package's
  own sha256 in ``conda-meta``; every other file holding the prefix (entry-point and pip-half
  scripts, files changed by link scripts) gets the standard text placeholder, or, if binary and
  not a package's placeholder file, keeps the build prefix as its placeholder (a new path may
  then be no longer than it). So the archive does not depend on where the cache is: packing
  the same locks on another machine gives the same bytes;
* ``conda-meta/*.json`` lose what is this machine's (rattler's package-cache paths) and the
  installed files' sha256 (``sha256_in_prefix``: it depends on the prefix);
* ``envbuild/prefixes.json`` lists the files with a placeholder, ``envbuild/unpack.py`` (see
  there) writes the unpacked folder's path over them, and ``envbuild/pixi.lock`` is the conda
  half's lock.

Without ``unpack.py``, the interpreter, its standard library and every package that does not
embed its prefix work from any folder; files listed in ``prefixes.json`` name the placeholder
(``sysconfig``'s build variables, entry-point scripts' shebangs, compiled-in data paths).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any

from envbuild.errors import BuildError
from envbuild.pack.unpack import replace_binary, short_shebang

if TYPE_CHECKING:
    from envbuild.prepare import Prepared

PREFIXES = "envbuild/prefixes.json"
UNPACK = "envbuild/unpack.py"
CONDA_LOCK = "envbuild/pixi.lock"
TEXT_PLACEHOLDER = "/opt/anaconda1anaconda2anaconda3"  # conda's own, for files without one
_NOT_ENVIRONMENT = {".envbuild-complete.json", "CACHEDIR.TAG", "pkgs", "envs", "envbuild"}
_NOT_CONDA_META = ("pylock.envbuild.toml", "envbuild-requirements.txt")
_MACHINE_KEYS = ("extracted_package_dir", "package_tarball_full_path", "link")


def stage(prepared: Prepared, tree: Path) -> dict[str, Any]:
    """Fill ``tree`` with the relocatable copy of the conda prefix; returns the manifest's
    ``python`` entry (with the conda-only manifest entries under ``"manifest"``)."""
    prefix = prepared.environment.path
    conda_lock = getattr(prepared.environment, "conda_lock", None)
    if conda_lock is None or not (prefix / "conda-meta").is_dir():
        raise BuildError(f"{prefix} is not a conda environment built by envbuild")
    _copy_prefix(prefix, tree)
    needles = sorted({str(prefix), os.path.realpath(prefix)}, key=len, reverse=True)
    records: dict[str, dict[str, str]] = {}
    for meta in sorted((tree / "conda-meta").glob("*.json")):
        data = json.loads(meta.read_text(encoding="utf-8"))
        paths = (data.get("paths_data") or {}).get("paths") or []
        for entry in paths:
            placeholder = entry.get("prefix_placeholder")
            target = tree / str(entry.get("_path", ""))
            if not placeholder or target.is_symlink() or not target.is_file():
                continue
            mode = "binary" if entry.get("file_mode") == "binary" else "text"
            content = target.read_bytes()
            new = content
            for needle in needles:
                if mode == "binary":
                    new = replace_binary(
                        new, needle.encode(), placeholder.encode(), len(placeholder)
                    )
                else:
                    new = short_shebang(new.replace(needle.encode(), placeholder.encode()))
            if mode == "binary" and hashlib.sha256(new).hexdigest() != entry.get("sha256"):
                # not the package's file any more (a link script?): keep it as installed
                records[entry["_path"]] = {"mode": "binary", "placeholder": needles[0]}
                continue
            if new != content:
                _rewrite(target, new)
            records[entry["_path"]] = {"mode": mode, "placeholder": placeholder}
    records.update(_other_files(tree, records, needles))
    for meta in sorted((tree / "conda-meta").glob("*.json")):
        _normalize_meta(meta, tree, records)
    python = _describe(tree)
    record = conda_lock.record("python")
    if record is not None:
        python["built_from"] = f"conda package python={record.version}={record.build}"
    (tree / "envbuild").mkdir(exist_ok=True)
    shutil.copyfile(Path(__file__).with_name("unpack.py"), tree / UNPACK)
    (tree / PREFIXES).write_text(
        json.dumps(
            {"files": [{"path": rel, **records[rel]} for rel in sorted(records)]},
            indent=1,
            sort_keys=True,
        )
        + "\n",
        encoding="utf-8",
    )
    (tree / CONDA_LOCK).write_text(conda_lock.text, encoding="utf-8")
    binary = [r for r in records.values() if r["mode"] == "binary"]
    python["manifest"] = {
        "conda_lock": {
            "digest": conda_lock.digest,
            "platform": conda_lock.platform,
            "packages": len(conda_lock.records),
            "path": CONDA_LOCK,
        },
        "relocate": {
            "script": UNPACK,
            "files": PREFIXES,
            "text": len(records) - len(binary),
            "binary": len(binary),
            "max_prefix": min((len(r["placeholder"].encode()) for r in binary), default=None),
        },
    }
    return python


def _normalize_meta(meta: Path, tree: Path, records: dict[str, dict[str, str]]) -> None:
    """Nothing of this machine (package-cache paths) or of the build prefix in a package's
    record: the files holding a placeholder are described as they are in the archive."""
    data = json.loads(meta.read_text(encoding="utf-8"))
    for key in _MACHINE_KEYS:
        data.pop(key, None)
    for entry in (data.get("paths_data") or {}).get("paths") or []:
        entry.pop("sha256_in_prefix", None)
        rel = entry.get("_path")
        if rel in records:
            content = (tree / rel).read_bytes()
            entry["sha256"] = hashlib.sha256(content).hexdigest()
            entry["size_in_bytes"] = len(content)
    meta.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _copy_prefix(prefix: Path, tree: Path) -> None:
    def ignore(folder: str, names: list[str]) -> set[str]:
        here = Path(folder)
        skipped = {n for n in names if n == "__pycache__" or n.endswith((".pyc", ".pyo"))}
        if here == prefix:
            skipped |= {n for n in names if n in _NOT_ENVIRONMENT}
        elif here == prefix / "conda-meta":
            skipped |= {n for n in names if n in _NOT_CONDA_META}
        return skipped

    shutil.copytree(prefix, tree, symlinks=True, ignore=ignore, dirs_exist_ok=True)
    real = os.path.realpath(prefix)
    for folder, dirs, files in os.walk(tree):
        for name in dirs + files:
            path = Path(folder) / name
            if not path.is_symlink():
                continue
            link = os.readlink(path)
            if not os.path.isabs(link):
                continue
            inside = next(
                (
                    base
                    for base in (str(prefix), real)
                    if link == base or link.startswith(base + "/")
                ),
                None,
            )
            if inside is None:
                raise BuildError(f"{path.relative_to(tree)} links outside the environment: {link}")
            at = tree / os.path.relpath(link, inside)
            path.unlink()
            os.symlink(os.path.relpath(at, path.parent), path)


def _other_files(
    tree: Path, records: dict[str, dict[str, str]], needles: list[str]
) -> dict[str, dict[str, str]]:
    """Files holding the prefix that no package declared: scripts get the text placeholder."""
    found: dict[str, dict[str, str]] = {}
    encoded = [n.encode() for n in needles]
    for folder, _dirs, files in os.walk(tree):
        for name in files:
            path = Path(folder) / name
            rel = path.relative_to(tree).as_posix()
            if rel in records or rel.startswith("conda-meta/") or path.is_symlink():
                continue
            content = path.read_bytes()
            if not any(n in content for n in encoded):
                continue
            if b"\0" in content:
                found[rel] = {"mode": "binary", "placeholder": needles[0]}
                continue
            for needle in encoded:
                content = content.replace(needle, TEXT_PLACEHOLDER.encode())
            content = short_shebang(content)  # as a build at a shorter path writes it
            _rewrite(path, content)
            found[rel] = {"mode": "text", "placeholder": TEXT_PLACEHOLDER}
    return found


def _rewrite(path: Path, content: bytes) -> None:
    mode = stat.S_IMODE(path.stat().st_mode)
    path.unlink()  # a hard link into the package cache must not be written through
    path.write_bytes(content)
    path.chmod(mode)


def _describe(tree: Path) -> dict[str, Any]:
    from envbuild import proc
    from envbuild.pack.interpreter import _PROBE

    exe = tree / "bin" / "python"
    if not exe.exists():
        raise BuildError("the conda environment has no bin/python (no python package)")
    done = proc.run(
        [exe, "-I", "-S", "-B", "-c", _PROBE],  # -B: no .pyc before pack compiles them all
        what="describing the conda environment's interpreter",
        error=BuildError,
    )
    data = json.loads(done.stdout.strip().splitlines()[-1])
    if data["implementation"] != "cpython":
        raise BuildError(f"cannot pack {data['implementation']} {data['version']}: only CPython")
    executable = f"bin/python{data['minor']}"
    if not (tree / executable).exists():
        executable = "bin/python"
    return {
        "version": data["version"],
        "implementation": data["implementation"],
        "cache_tag": data["cache_tag"] or "",
        "soabi": data["soabi"],
        "executable": executable,
        "built_from": "conda package python",  # the lock's record, filled in by stage()
        "libc": " ".join(part for part in data["libc"] if part),
    }

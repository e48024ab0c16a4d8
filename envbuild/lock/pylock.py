"""The lock value: a PEP 751 ``pylock.toml`` written by envbuild, parsed into a frozen :class:`Lock`.

A lock's identity is the sha256 of its bytes (:attr:`Lock.digest`); what an environment built from
it contains depends only on its packages and targets (:attr:`Lock.content_digest`), which is what
environment caches key on, so that two models whose requirements resolve to the same packages
share one environment. Reading a lock never resolves anything; writing one is
:meth:`Lock.write` (atomic, keeping an existing file's mode).
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from envbuild.errors import LockMismatchError, UsageError
from envbuild.files import atomic_write
from envbuild.target import python_minor

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, from PyPI
    import tomli as tomllib

PYLOCK_NAME = "pylock.toml"
LOCK_VERSION = "1.0"
CREATED_BY = "envbuild"


@dataclass(frozen=True)
class LockedPackage:
    """One ``[[packages]]`` entry, as the environment builders need it."""

    name: str
    version: str
    marker: str | None = None
    wheels: tuple[str, ...] = ()  # file names
    sdist: str | None = None  # file name
    index: str | None = None  # the index the files come from (PEP 751 ``index``), if any
    local: bool = False  # a file of this machine (file:// URL or path): not installable elsewhere
    direct: bool = False  # a direct URL / VCS / directory / archive requirement (no index)

    @property
    def pin(self) -> str:
        """``name==version`` (``; marker`` when the package is for some targets only)."""
        return f"{self.name}=={self.version}" + (f"; {self.marker}" if self.marker else "")


@dataclass(frozen=True)
class Lock:
    """A PEP 751 lock written by envbuild. Immutable; ``digest`` (of ``text``) is its identity.

    Builders install it with ``uv pip sync --require-hashes PATH`` (or through the index, see
    :meth:`requirements_txt`) where PATH is a copy of :attr:`text` named ``pylock.toml``.
    """

    text: str  # the canonical file content
    digest: str  # "sha256:<hex of text's UTF-8 bytes>"
    python: str  # target Python version ("3.11.7" or "3.10")
    platforms: tuple[str, ...]  # canonical target names ("linux/amd64", ...)
    packages: tuple[LockedPackage, ...]
    input_digest: str  # EnvSpec.digest() of the model when locked
    as_of: str | None  # RFC 3339 UTC ("2024-05-01T00:00:00Z") or None
    requires_python: str
    environments: tuple[str, ...]
    content_digest: str = ""  # sha256 of what an installer reads: packages, targets
    accelerator: str | None = None
    accelerator_reason: str | None = None
    indexes: Mapping[str, Any] = field(default_factory=dict, compare=False)
    path: Path | None = field(default=None, compare=False)
    warnings: tuple[str, ...] = field(default=(), compare=False)
    changed: bool | None = field(default=None, compare=False)  # lock_model(): did the file change?

    @property
    def python_minor(self) -> str:
        return python_minor(self.python)

    @property
    def document(self) -> dict[str, Any]:
        """The parsed TOML (a fresh copy each time: the Lock itself stays immutable)."""
        return tomllib.loads(self.text)

    @property
    def tool(self) -> dict[str, Any]:
        """envbuild's own ``[tool.envbuild]`` facts."""
        tool = self.document.get("tool", {}).get("envbuild", {})
        return tool if isinstance(tool, dict) else {}

    @property
    def local_packages(self) -> tuple[LockedPackage, ...]:
        """Packages installed from files of this machine (find-links folders, ``file://``)."""
        return tuple(p for p in self.packages if p.local)

    @property
    def from_indexes_only(self) -> bool:
        """Every package comes from an index (none from a direct URL, a path or a VCS)."""
        return all(not p.direct and not p.local for p in self.packages)

    def requirements(self) -> list[str]:
        """``name==version[; marker]`` for every package (for display, not for installing)."""
        return [p.pin for p in self.packages]

    def requirements_txt(self) -> str:
        """The lock as a pip requirements file with hashes (install through the index).

        ``pip install --require-hashes --no-deps -r`` (or uv's) of it installs the same versions;
        each line lists the hashes of every file of that version, of which the installer checks
        the one it picks. Installing by name, version and hash through the index lets uv reuse
        its registry cache (a per-file URL is downloaded and unpacked again every time).
        """
        lines = []
        for entry in self.document.get("packages", []):
            files = [*entry.get("wheels", []), *([entry["sdist"]] if entry.get("sdist") else [])]
            hashes = sorted(
                {
                    f"--hash={alg}:{value}"
                    for f in files
                    for alg, value in f.get("hashes", {}).items()
                    if alg == "sha256"
                }
            )
            line = f"{entry['name']}=={entry['version']}"
            if entry.get("marker"):
                line += f" ; {entry['marker']}"
            lines.append(" \\\n    ".join([line, *hashes]))
        return "".join(f"{line}\n" for line in lines)

    def write(self, path: str | os.PathLike[str]) -> Lock:
        """Write the lock to ``path`` atomically; returns the lock with ``path`` set."""
        target = Path(path)
        check_file_name(target)
        atomic_write(target, self.text.encode("utf-8"))
        return replace(self, path=target)

    def write_changed(self, path: str | os.PathLike[str]) -> Lock:
        """Write the lock to ``path`` unless the file already holds these bytes; returns the lock
        with ``path`` and ``changed`` set (an existing file is replaced atomically)."""
        target = Path(path)
        try:
            previous: bytes | None = target.read_bytes()
        except OSError:
            previous = None
        changed = previous != self.text.encode("utf-8")
        written = self.write(target) if changed else self
        return replace(written, path=target, changed=changed)

    def to_dict(self) -> dict[str, Any]:
        """What ``lock --json`` prints."""
        return {
            "path": str(self.path) if self.path else None,
            "digest": self.digest,
            "python": self.python,
            "requires_python": self.requires_python,
            "platforms": list(self.platforms),
            "environments": list(self.environments),
            "accelerator": self.accelerator,
            "accelerator_reason": self.accelerator_reason,
            "as_of": self.as_of,
            "input_digest": self.input_digest,
            "indexes": dict(self.indexes),
            "package_count": len(self.packages),
            "packages": self.requirements(),
            "changed": self.changed,
            "warnings": list(self.warnings),
        }


def check_file_name(path: Path) -> None:
    """PEP 751 names: ``pylock.toml`` or ``pylock.NAME.toml`` (uv refuses other names)."""
    name = path.name
    if name == PYLOCK_NAME:
        return
    middle = name[len("pylock.") : -len(".toml")] if name.startswith("pylock.") else ""
    if not (name.endswith(".toml") and middle and "." not in middle):
        raise UsageError(
            f"{name}: a lock file must be named pylock.toml or pylock.NAME.toml (PEP 751)",
            field="-o",
        )


def digest_text(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def _is_local(entry: Mapping[str, Any]) -> bool:
    url = entry.get("url")
    return "path" in entry or (isinstance(url, str) and urlsplit(url).scheme.lower() == "file")


def content_digest(doc: Mapping[str, Any]) -> str:
    """What an installer reads from the lock, hashed: the targets and every package's name,
    version, marker and file hashes (not envbuild's notes, not upload times)."""
    digest = hashlib.sha256()
    digest.update(f"{doc.get('requires-python', '')}\n".encode())
    for environment in doc.get("environments", []):
        digest.update(f"env {environment}\n".encode())
    for entry in doc.get("packages", []):
        digest.update(
            f"{entry.get('name')}=={entry.get('version')};{entry.get('marker')}\n".encode()
        )
        files = [*entry.get("wheels", []), entry.get("sdist") or {}, entry.get("archive") or {}]
        for item in files:
            for alg, value in sorted((item.get("hashes") or {}).items()):
                digest.update(f"  {alg}:{value}\n".encode())
        for key in ("vcs", "directory"):
            if entry.get(key):
                digest.update(f"  {key} {sorted(entry[key].items())}\n".encode())
    return "sha256:" + digest.hexdigest()


def lock_from_text(text: str, *, path: Path | None = None, warnings: Sequence[str] = ()) -> Lock:
    """Parse a ``pylock.toml`` written by envbuild into a :class:`Lock`."""
    shown = path or Path(PYLOCK_NAME)
    hint = "run `envbuild lock MODEL` to write it again"
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise LockMismatchError(f"not a valid TOML file: {exc}", path=shown, hint=hint) from None
    if str(doc.get("lock-version", "")).split(".")[0] != LOCK_VERSION.split(".")[0]:
        raise LockMismatchError(
            f"unsupported lock-version {doc.get('lock-version')!r} (expected {LOCK_VERSION})",
            path=shown,
            field="lock-version",
            hint=hint,
        )
    tool = doc.get("tool", {}).get("envbuild")
    if not isinstance(tool, dict):
        raise LockMismatchError(
            "not written by envbuild (no [tool.envbuild] table)",
            path=shown,
            field="tool.envbuild",
            hint=hint,
        )
    packages = []
    for entry in doc.get("packages", []):
        wheels = entry.get("wheels", [])
        sdist = entry.get("sdist")
        files = [*wheels, *([sdist] if isinstance(sdist, dict) else [])]
        archive = entry.get("archive")
        packages.append(
            LockedPackage(
                name=str(entry.get("name")),
                version=str(entry.get("version", "")),
                marker=entry.get("marker"),
                wheels=tuple(file_name(w) for w in wheels),
                sdist=file_name(sdist) if isinstance(sdist, dict) else None,
                index=entry.get("index"),
                local=any(_is_local(f) for f in [*files, *([archive] if archive else [])])
                or bool(entry.get("directory")),
                direct=bool(entry.get("vcs") or entry.get("directory") or archive),
            )
        )
    keys = ("index-url", "extra-index-urls", "find-links", "accelerator-index")
    indexes = {k: tool[k] for k in keys if k in tool}
    return Lock(
        text=text,
        digest=digest_text(text),
        python=str(tool.get("python", "")),
        platforms=tuple(tool.get("platforms", ())),
        packages=tuple(packages),
        input_digest=str(tool.get("input-digest", "")),
        as_of=tool.get("as-of"),
        requires_python=str(doc.get("requires-python", "")),
        environments=tuple(doc.get("environments", ())),
        content_digest=content_digest(doc),
        accelerator=tool.get("accelerator"),
        accelerator_reason=tool.get("accelerator-reason"),
        indexes=indexes,
        path=path,
        warnings=tuple(warnings),
    )


def read_lock(path: str | os.PathLike[str]) -> Lock:
    """Read a lock file written by envbuild (LockMismatchError when absent or not envbuild's)."""
    target = Path(path)
    try:
        text = target.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise LockMismatchError(
            "no lock file", path=target, hint="run `envbuild lock MODEL` to create it"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise LockMismatchError(f"cannot read the lock: {exc}", path=target) from None
    return lock_from_text(text, path=target)


def file_name(entry: Mapping[str, Any]) -> str:
    if entry.get("name"):
        return str(entry["name"])
    location = str(entry.get("url") or entry.get("path") or "")
    name = location.rstrip("/").rsplit("/", 1)[-1]
    return unquote(name) if entry.get("url") else name  # a URL's "%2B" is the file's "+"


def local_files_warnings(packages: Sequence[LockedPackage], advice: str | None = None) -> list[str]:
    """The warning every command gives when a lock installs from this machine's files."""
    local = sorted({p.name for p in packages if p.local})
    if not local:
        return []
    shown = ", ".join(local[:5]) + (f" and {len(local) - 5} more" if len(local) > 5 else "")
    return [
        f"the lock refers to local files for {shown}: it will not install on another machine "
        "(`envbuild image` copies them into its build)" + (f" ({advice})" if advice else "")
    ]

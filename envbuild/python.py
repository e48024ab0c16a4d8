"""Finding an interpreter for the model's Python version, without ever downloading one unasked.

Discovery (like virtualenv's): candidates come from ``PATH``, pyenv's versions folder (used
directly — pyenv shims only work for the active version), uv-managed interpreters and
``/usr/bin``/``/usr/local/bin``. Each candidate's real version is asked of the interpreter itself
once and remembered in the cache (keyed by path, size and mtime), so discovery stays cheap on every
``predict``. Policy: the exact version if installed; else the newest of the same ``X.Y`` with a
warning (an error with ``strict``); else an error listing what was found.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from envbuild.errors import InterpreterNotFound

if TYPE_CHECKING:
    from envbuild.envspec import EnvSpec

_PROBE = (
    "import sys, platform, sysconfig;"
    "print(platform.python_version());"
    "print(sys.implementation.name);"
    "print(sys.implementation.cache_tag or '');"
    "print(sysconfig.get_platform());"
    "print(sys.prefix)"
)


@dataclass(frozen=True)
class Interpreter:
    """A usable interpreter: where it is, what it is, and why it was chosen."""

    path: str  # the executable as found (not resolved: venv pythons are symlinks)
    version: str  # X.Y.Z
    implementation: str  # cpython, pypy
    cache_tag: str  # cpython-311
    platform: str  # linux-x86_64
    source: str  # PATH, pyenv, uv, system, given
    reason: str = ""

    @property
    def minor(self) -> str:
        return ".".join(self.version.split(".")[:2])

    @property
    def identity(self) -> str:
        """What an environment built on this interpreter depends on (part of the cache key)."""
        return f"{self.implementation}-{self.version}-{self.platform}-{os.path.realpath(self.path)}"

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def _version_key(version: str) -> tuple[int, ...]:
    out = []
    for part in version.split("."):
        digits = "".join(ch for ch in part if ch.isdigit())
        out.append(int(digits) if digits else 0)
    return tuple(out)


def _candidates() -> Iterator[tuple[str, str]]:
    """(path, source) pairs, most specific sources first; duplicates removed later."""
    pyenv_root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    for path in sorted(glob.glob(os.path.join(pyenv_root, "versions", "*", "bin", "python3"))):
        yield path, "pyenv"
    uv_dir = os.environ.get("UV_PYTHON_INSTALL_DIR") or os.path.join(
        os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share"), "uv", "python"
    )
    for path in sorted(glob.glob(os.path.join(uv_dir, "*", "bin", "python3"))):
        yield path, "uv"
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        if not folder or "shims" in Path(folder).parts:
            continue
        for path in sorted(glob.glob(os.path.join(folder, "python3*"))):
            name = os.path.basename(path)
            if name == "python3" or (name[7:].replace(".", "").isdigit() and "." in name):
                yield path, "PATH"
    for folder in ("/usr/local/bin", "/usr/bin"):
        for path in sorted(glob.glob(os.path.join(folder, "python3.*"))):
            if os.path.basename(path)[7:].replace(".", "").isdigit():
                yield path, "system"


class _ProbeCache:
    """Remembers what each interpreter said about itself, keyed by (real path, size, mtime)."""

    def __init__(self) -> None:
        from envbuild.cache import cache_root

        self.path = cache_root() / "interpreters.json"
        try:
            self.data: dict[str, dict[str, str]] = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self.data = {}
        self.dirty = False

    @staticmethod
    def key(path: str) -> str | None:
        try:
            real = os.path.realpath(path)
            stat = os.stat(real)
        except OSError:
            return None
        return f"{real}:{stat.st_size}:{int(stat.st_mtime)}"

    def probe(self, path: str) -> dict[str, str] | None:
        key = self.key(path)
        if key is None or not os.access(path, os.X_OK):
            return None
        if key not in self.data:
            self.probe_all([path])
        return self.data.get(key) or None

    def probe_all(self, paths: Iterable[str]) -> None:
        """Ask every interpreter not yet remembered, all at once (an empty cache, a CI runner's
        first build, probes ten interpreters: one at a time, that was a quarter of a second)."""
        from envbuild import proc

        todo: dict[str, str] = {}
        for path in paths:
            key = self.key(path)
            if key is not None and key not in self.data and os.access(path, os.X_OK):
                todo.setdefault(key, path)
        if not todo:
            return
        commands = [[path, "-I", "-c", _PROBE] for path in todo.values()]
        for key, done in zip(todo, proc.run_together(commands, timeout=15), strict=True):
            info: dict[str, str] = {}
            if done is not None and done.returncode == 0:
                lines = done.stdout.strip().splitlines()
                if len(lines) >= 5:
                    info = dict(
                        zip(
                            ("version", "implementation", "cache_tag", "platform", "prefix"),
                            lines[:5],
                            strict=True,
                        )
                    )
            self.data[key] = info
        self.dirty = True

    def save(self) -> None:
        if not self.dirty:
            return
        from envbuild.files import atomic_write

        with contextlib.suppress(OSError):
            atomic_write(self.path, json.dumps(self.data, indent=1, sort_keys=True))


def discover(extra: Iterable[tuple[str, str]] = ()) -> list[Interpreter]:
    """Every working interpreter found, one per real executable, newest first."""
    cache = _ProbeCache()
    seen: set[str] = set()
    candidates: list[tuple[str, str]] = []
    for path, source in [*extra, *_candidates()]:
        real = os.path.realpath(path)
        if real not in seen:
            seen.add(real)
            candidates.append((path, source))
    cache.probe_all(path for path, _ in candidates)
    found: list[Interpreter] = []
    for path, source in candidates:
        info = cache.probe(path)
        if not info:
            continue
        found.append(
            Interpreter(
                path=path,
                version=info["version"],
                implementation=info["implementation"],
                cache_tag=info["cache_tag"],
                platform=info["platform"],
                source=source,
            )
        )
    cache.save()
    found.sort(key=lambda i: _version_key(i.version), reverse=True)
    return found


def describe(path: str, source: str = "given") -> Interpreter:
    """The interpreter at ``path`` (``--python PATH``), or an error when it does not run."""
    resolved = shutil.which(path) or path
    cache = _ProbeCache()
    info = cache.probe(resolved)
    cache.save()
    if not info:
        raise InterpreterNotFound(f"{path} is not a working Python interpreter")
    return Interpreter(
        resolved,
        info["version"],
        info["implementation"],
        info["cache_tag"],
        info["platform"],
        source,
    )


def find_interpreter(
    version: str | None,
    *,
    strict: bool = False,
    install: bool = False,
    warnings: list[str] | None = None,
) -> Interpreter:
    """Choose an interpreter for ``version`` (``X.Y`` or ``X.Y.Z``; None = the newest found).

    Appends a warning to ``warnings`` when only the same ``X.Y`` was found. ``install`` lets uv
    download the exact version when nothing matches (where the network allows).
    """
    found = [i for i in discover() if i.implementation == "cpython"]
    if version is None:
        if not found:
            raise InterpreterNotFound("no Python interpreter found")
        return _with_reason(found[0], "no version requested: newest found")
    parts = version.split(".")
    minor = ".".join(parts[:2])
    exact = [i for i in found if i.version == version] if len(parts) >= 3 else []
    if exact:
        return _with_reason(exact[0], f"exact match for {version}")
    same_minor = [i for i in found if i.minor == minor]
    if same_minor and (len(parts) < 3):
        return _with_reason(same_minor[0], f"newest {minor}.x for {version}")
    if same_minor and not strict and not install:
        chosen = same_minor[0]
        if warnings is not None:
            warnings.append(
                f"Python {version} is not installed; using {chosen.version} ({chosen.path}), "
                f"the same {minor} series (--strict-python makes this an error)"
            )
        return _with_reason(chosen, f"same series {minor} as {version}")
    if install:
        return _install(version)
    listing = ", ".join(sorted({i.version for i in found}, key=_version_key)) or "none"
    wanted = version if strict else f"{version} (or any {minor}.x)"
    raise InterpreterNotFound(
        f"no Python {wanted} found; installed: {listing}",
        hint=(
            f"install it (pyenv install {version}, uv python install {version}, or your package "
            "manager), pass --python PATH, or add --install-python to let uv download it"
        ),
    )


def _with_reason(interpreter: Interpreter, reason: str) -> Interpreter:
    return Interpreter(**{**interpreter.to_dict(), "reason": reason})


def _install(version: str) -> Interpreter:
    from envbuild import proc

    done = proc.run(
        [proc.uv_bin(), "python", "install", version],
        what=f"downloading Python {version}",
        error=InterpreterNotFound,
        env=proc.base_env(allow_downloads=True),
        hint="uv could not download this Python; install it yourself and pass --python PATH",
    )
    find = proc.run(
        [proc.uv_bin(), "python", "find", version],
        what=f"finding Python {version}",
        error=InterpreterNotFound,
        env=proc.base_env(allow_downloads=False),
    )
    del done
    return _with_reason(describe(find.stdout.strip(), source="uv"), f"downloaded {version} with uv")


def looks_like_version(text: str) -> bool:
    """``--python 3.10`` asks for a version; anything else is an interpreter path."""
    parts = text.split(".")
    return 2 <= len(parts) <= 3 and all(p.isdigit() for p in parts)


def choose_interpreter(
    env: EnvSpec,
    python: str | None = None,
    *,
    strict: bool = False,
    install: bool = False,
    warnings: list[str] | None = None,
) -> Interpreter:
    """The interpreter for this model: ``python`` (a version to find or a path), else the
    model's Python found by discovery (see :func:`find_interpreter`)."""
    from envbuild.errors import UsageError

    if python and looks_like_version(python):
        return find_interpreter(python, strict=strict, install=install, warnings=warnings)
    if python:
        chosen = describe(python)
        if env.python is not None and not env.python.admits(chosen.version):
            message = (
                f"--python {python} is Python {chosen.version} but the model asks for "
                f"{env.python.text} ({env.python.origin})"
            )
            if strict:
                raise UsageError(message)
            if warnings is not None:
                warnings.append(message)
        return chosen
    version = env.python.version if env.python else None
    return find_interpreter(version, strict=strict, install=install, warnings=warnings)

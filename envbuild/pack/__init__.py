"""``envbuild pack``: the model's environment as one relocatable, reproducible ``.tar.gz``.

For machines without envbuild and without the model's Python (Spark executors, a batch host):
the archive holds the interpreter itself, the locked packages and envbuild's runtime, and runs
from wherever it is unpacked with nothing but ``tar``::

    mkdir env && tar -xzf env.tar.gz -C env
    env/bin/python env/envbuild/runtime/runner.py predict --model MODEL --input rows.csv

Layout (one Python prefix, no virtualenv: see ``venv.py``)::

    envbuild-pack.json          the manifest, first member (kind, platform, libc, Python, lock
                                digest, runner, envbuild version)
    bin/pythonX.Y, bin/python   the relocated interpreter ($ORIGIN run paths)
    lib/pythonX.Y/...           its standard library; site-packages = the lock's packages
    envbuild/runtime/           the runner (runner.py predict|serve|stream|info)
    envbuild/pylock.toml        the lock it was built from

The conda kind (``conda.py``) packs its prefix as it is (``conda-meta/`` too), plus
``envbuild/pixi.lock``, ``envbuild/prefixes.json`` and ``envbuild/unpack.py``, the step that
writes the unpacked folder over its packages' prefix placeholders.

Bytecode is shipped, compiled with ``--invalidation-mode unchecked-hash``: an unpacked archive
is never edited, executors often unpack into folders their Python cannot write (or
``PYTHONDONTWRITEBYTECODE`` is set), and an MLflow environment loads in half the time with its
``.pyc`` (3 s instead of 7 s); hash-based ``.pyc`` do not depend on file times, so the archive
stays byte-for-byte reproducible (``PYTHONHASHSEED=0`` fixes the order of set constants, and one
compiling process in sorted file order fixes which strings marshal writes as references).

The archive is built once per (lock, interpreter, envbuild version) into the cache
(``cache.publish("packs", ...)``); ``-o`` gets a copy. Its default name records the lock digest,
the Python, the platform and envbuild's version.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from envbuild.__about__ import __version__
from envbuild.errors import BuildError, UsageError
from envbuild.pack.archive import FORMAT, MANIFEST, read_manifest, verify_archive, write_archive

if TYPE_CHECKING:
    from envbuild.envspec import EnvSpec
    from envbuild.model import ModelSpec
    from envbuild.prepare import Prepared

__all__ = [
    "FORMAT",
    "MANIFEST",
    "PackOptions",
    "Packed",
    "archive_name",
    "pack",
    "read_manifest",
    "verify_archive",
]

LAYOUT = "pack-3"  # bump when what goes into an archive changes
RUNNER = "envbuild/runtime/runner.py"
LOCK = "envbuild/pylock.toml"


@dataclass(frozen=True)
class PackOptions:
    """What ``envbuild pack`` builds: the kind, the platform (this machine's) and the Python."""

    kind: str = "venv"
    platform: str | None = None
    python: str | None = None
    strict_python: bool = False
    install_python: bool = False
    offline: bool = False


@dataclass(frozen=True)
class Packed:
    """A finished archive: where it is, what its manifest says, and whether it was built now."""

    path: Path
    manifest: dict[str, Any]
    size: int
    built: bool
    seconds: float
    cached: Path  # the archive in envbuild's cache (``path`` is a copy when -o was given)
    warnings: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, object]:
        return {
            "archive": str(self.path),
            "size": self.size,
            "built": self.built,
            "seconds": round(self.seconds, 3),
            "cached": str(self.cached),
            "manifest": self.manifest,
            "warnings": list(self.warnings),
        }


def archive_name(manifest: dict[str, Any]) -> str:
    """``envbuild-env-<lock 12>-py3.10.13-linux-amd64-envbuild0.1.0.tar.gz`` (the conda kind:
    ``envbuild-conda-<conda lock 12>-<pip lock 12>-py...``)."""
    lock = str(manifest["lock"]["digest"]).removeprefix("sha256:")[:12]
    python = manifest["python"]["version"]
    platform = str(manifest["platform"]).replace("/", "-")
    what = "env"
    if manifest.get("conda_lock"):  # both halves: envbuild-conda-<conda 12>-<pip 12>-...
        what = "conda-" + str(manifest["conda_lock"]["digest"]).removeprefix("sha256:")[:12]
    return (
        f"envbuild-{what}-{lock}-py{python}-{platform}-envbuild{manifest['envbuild_version']}"
        ".tar.gz"
    )


def pack(
    model: ModelSpec,
    env: EnvSpec,
    options: PackOptions | None = None,
    *,
    output: Path | None = None,
    on_progress: Callable[[str], None] | None = None,
) -> Packed:
    """Build (or reuse) the model's environment, then its archive; copy it to ``output`` (a
    file, or a folder to put the default name in) when given."""
    from envbuild.cache import publish
    from envbuild.envs import BuildOptions
    from envbuild.envs.registry import get_packer
    from envbuild.prepare import prepare
    from envbuild.target import host_platform, parse_platform

    options = options or PackOptions()
    started = time.monotonic()
    stage = get_packer(options.kind)
    host = host_platform()
    if options.platform is not None:
        wanted = parse_platform(options.platform)
        if host is None or wanted != host:
            raise UsageError(
                f"cannot pack for {wanted.name} on {host.name if host else 'this machine'}: the "
                "archive carries this machine's interpreter and wheels",
                field="--platform",
                hint=f"run envbuild pack on a {wanted.name} machine",
            )
    if host is None or not host.name.startswith("linux/"):
        raise UsageError("envbuild pack makes Linux archives and runs on Linux only")
    prepared = prepare(
        model,
        env,
        BuildOptions(
            kind=options.kind,
            python=options.python,
            strict_python=options.strict_python,
            install_python=options.install_python,
            offline=options.offline,
        ),
        on_progress=on_progress,
    )
    if prepared.lock is None:
        raise BuildError(f"the {options.kind} kind has no lock to pack")
    key = hashlib.sha256(
        f"{LAYOUT}\n{prepared.environment.key}\n{__version__}\n{host.name}".encode()
    ).hexdigest()[:32]

    def build(tmp: Path) -> dict[str, Any]:
        if on_progress:
            on_progress("packing the environment")
        tree = tmp / "tree"
        tree.mkdir()
        python = stage(prepared, tree)
        extra = python.pop("manifest", {})  # a kind's own manifest entries (conda: its lock)
        _add_runtime(tree, prepared)
        _compile(tree, python)
        manifest = _manifest(prepared, python, host.name, options.kind) | extra
        name = archive_name(manifest)
        if on_progress:
            on_progress("writing the archive")
        write_archive(tree, manifest, tmp / name)
        shutil.rmtree(tree)
        return {
            "archive": name,
            "lock_digest": manifest["lock"]["digest"],
            "python_version": python["version"],
        }

    entry, built = publish("packs", key, build)
    from envbuild.cache.usage import record_user

    record_user(entry, str(model.path))  # `envbuild cache list` says which models use it
    names = sorted(entry.glob("*.tar.gz"))
    if len(names) != 1:
        raise BuildError(f"{entry}: the cached pack holds {len(names)} archives, expected one")
    cached = names[0]
    manifest = read_manifest(cached)
    path = cached if output is None else _copy_out(cached, output)
    return Packed(
        path=path,
        manifest=manifest,
        size=path.stat().st_size,
        built=built,
        seconds=time.monotonic() - started,
        cached=cached,
        warnings=prepared.warnings,
    )


def _add_runtime(tree: Path, prepared: Prepared) -> None:
    from envbuild.runtime_files import runtime_files

    folder = tree / Path(RUNNER).parent
    folder.mkdir(parents=True)
    for name, source in runtime_files():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, folder / name)
    assert prepared.lock is not None
    (tree / LOCK).write_text(prepared.lock.lock.text, encoding="utf-8")


def _clean_env() -> dict[str, str]:
    """Variables for running the packed interpreter at pack time: nothing of this machine's
    Python settings, and a fixed hash seed (set constants are marshalled in hash order)."""
    from envbuild import proc

    env = {
        k: v
        for k, v in proc.base_env().items()
        if not k.startswith("PYTHON") and k not in ("VIRTUAL_ENV", "CONDA_PREFIX")
    }
    env["PYTHONHASHSEED"] = "0"
    return env


def _compile(tree: Path, python: dict[str, Any]) -> None:
    """Check that the relocated interpreter runs from the tree, then compile its bytecode."""
    import json

    from envbuild import proc

    exe = tree / python["executable"]
    probe = proc.run(
        [exe, "-s", "-c", "import json, sys; print(json.dumps([sys.prefix, sys.executable]))"],
        what="starting the packed interpreter",
        error=BuildError,
        env=_clean_env() | {"PYTHONDONTWRITEBYTECODE": "1"},  # compileall writes them all
    )
    prefix, _ = json.loads(probe.stdout.strip().splitlines()[-1])
    if os.path.realpath(prefix) != os.path.realpath(tree):
        raise BuildError(
            f"the packed interpreter takes {prefix} as its prefix, not the folder it runs from"
        )
    libdir = Path(python["executable"]).parent.parent / "lib" / f"python{_minor(python)}"
    done = proc.run(
        [
            exe,
            "-s",
            "-m",
            "compileall",
            "-q",
            "-f",
            "-j",
            "1",  # one process, files in sorted order: workers' interning states would differ
            "--invalidation-mode",
            "unchecked-hash",
            "-d",
            libdir.as_posix(),
            libdir.as_posix(),  # relative, from the tree: the same arguments wherever it is
        ],
        what="compiling the environment's bytecode",
        error=BuildError,
        cwd=tree,
        env=_clean_env(),
        check=False,
    )
    # compileall exits 1 when some file does not compile (Python 2 leftovers, templates in
    # packages); those stay source only, as they would in any installed environment
    if done.returncode not in (0, 1):
        raise BuildError(
            f"compiling the environment's bytecode failed (exit {done.returncode})",
            log_path=done.log_path,
        )
    proc.run(
        [exe, "-s", "-c", _CANONICAL, libdir.as_posix()],
        what="making the environment's bytecode reproducible",
        error=BuildError,
        cwd=tree,
        env=_clean_env(),
    )


# marshal marks an object it writes as referenced (FLAG_REF) when its reference count is above
# one, and the compiler leaves an interned name more or fewer references depending on where the
# process's memory was mapped (address randomisation): one .pyc in a few hundred came out
# different between two compilations of the same tree. Loading each .pyc and writing it again,
# one after the other in a process that does nothing else, gives the same bytes every time.
_CANONICAL = """
import marshal, os, sys
for folder, dirs, files in os.walk(sys.argv[1]):
    dirs.sort()
    for name in sorted(files):
        if name.endswith(".pyc"):
            path = os.path.join(folder, name)
            with open(path, "rb") as handle:
                data = handle.read()
            new = data[:16] + marshal.dumps(marshal.loads(data[16:]))
            if new != data:
                with open(path, "wb") as handle:
                    handle.write(new)
"""


def _minor(python: dict[str, Any]) -> str:
    return ".".join(str(python["version"]).split(".")[:2])


def _manifest(
    prepared: Prepared, python: dict[str, Any], platform: str, kind: str
) -> dict[str, Any]:
    from envbuild.runtime_files import runner_version

    assert prepared.lock is not None
    lock = prepared.lock.lock
    libc = str(python.pop("libc", "") or "")
    return {
        "format": FORMAT,
        "kind": kind,
        "platform": platform,
        "libc": libc,
        "python": python,
        "lock": {
            "digest": lock.digest,
            "content_digest": lock.content_digest,
            "python": lock.python,
            "packages": len(lock.packages),
            "path": LOCK,
        },
        "runner": RUNNER,
        "runner_version": runner_version(),
        "bytecode": "unchecked-hash",
        "envbuild_version": __version__,
    }


def _copy_out(cached: Path, output: Path) -> Path:
    """Copy the cached archive to ``output`` (a folder gets the archive's own name), through a
    temporary file and a rename, so a failed copy never leaves half an archive."""
    target = output / cached.name if output.is_dir() else output
    if not target.parent.is_dir():
        raise UsageError(f"folder {target.parent} does not exist", path=output, field="-o")
    tmp = target.parent / f".{target.name}.{os.getpid()}.tmp"
    try:
        shutil.copyfile(cached, tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target

"""Installing a pip lock (``pylock.toml``) into an interpreter's environment with uv, hashes required.

Used by the venv kind (into a fresh virtualenv) and the conda kind (the pip half, into the
prefix's Python on top of the conda packages). How: when every package of the lock comes from an
index (the usual case), uv installs them *by name, version and hash through that index*
(``--no-deps --require-hashes``), which is how uv's registry cache keys wheels, so a second
environment holding the same wheels downloads and unpacks nothing. A lock with direct URLs, local
files or VCS packages is installed from its per-file URLs (the pylock itself). Either way exactly
the lock's packages are installed, with hashes enforced; ``sync`` also removes what the lock does
not list (a venv), without it what is there stays (a conda prefix's own Python packages).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from envbuild import proc
from envbuild.errors import BuildError
from envbuild.lock.pylock import Lock
from envbuild.target import host_platform


def install_env(lock: Lock, torch_index_url: str | None = None) -> dict[str, str]:
    """uv's environment: the index settings (credentials included) the lock was resolved with,
    through variables, never on a command line or in a file.

    A lock whose torch family comes from a PyTorch index (or its mirror) gets that index as an
    extra one: installing by name needs it, and ``--require-hashes`` still admits only the
    locked files, whatever other index serves the same names.
    """
    from dataclasses import replace

    from envbuild.accelerator import has_index
    from envbuild.indexes import IndexSetting, configure

    config = configure(torch_index_url=torch_index_url)
    recorded = lock.indexes.get("accelerator-index")
    if lock.accelerator and has_index(lock.accelerator) and isinstance(recorded, str):
        setting = config.torch_index(lock.accelerator)
        if setting.redacted != recorded and "***" not in recorded:
            setting = IndexSetting("extra-index-url", recorded, "the lock")
        config = replace(config, extra_index_urls=(*config.extra_index_urls, setting))
    return config.child_env(proc.base_env())


def install_lock(
    python: str | Path,
    lock: Lock,
    folder: Path,
    *,
    sync: bool,
    compile_bytecode: bool = False,
    offline: bool = False,
    on_line: Callable[[str], None] | None = None,
    what: str = "installing the locked packages",
    torch_index_url: str | None = None,
) -> None:
    """Install exactly ``lock``'s packages for ``python``; ``folder`` holds ``lock`` as
    ``pylock.envbuild.toml`` (it is written there) and a transient requirements file."""
    if not lock.packages:
        return
    uv = proc.uv_bin()
    lock_path = folder / "pylock.envbuild.toml"
    lock_path.write_text(lock.text, encoding="utf-8")
    reqs = folder / "envbuild-requirements.txt"
    if lock.from_indexes_only:
        reqs.write_text(lock.requirements_txt(), encoding="utf-8")
        args = [uv, "pip", "install", "--python", str(python), "--no-deps", "--require-hashes"]
        args += ["--index-strategy", "unsafe-best-match", "-r", str(reqs)]
        args += _platform_args(lock)
    elif sync:
        args = [uv, "pip", "sync", "--python", str(python), "--require-hashes"]
        args += ["--preview-features", "pylock", str(lock_path)]
    else:
        args = [uv, "pip", "install", "--python", str(python), "--require-hashes", "--no-deps"]
        args += ["--preview-features", "pylock", "-r", str(lock_path)]
    if compile_bytecode:
        args.append("--compile-bytecode")
    if offline:
        args.append("--offline")
    env = install_env(lock, torch_index_url)
    try:
        cached = lock.from_indexes_only and not offline
        if cached and _installed_from_cache(args, folder, env, on_line):
            return
        proc.run(
            args,
            what=what,
            error=BuildError,
            cwd=folder,  # no project's pyproject.toml or uv.toml applies; the user's uv.toml does
            env=env,
            on_line=on_line,
            hint="the package named above failed to install; the log has uv's full output",
        )
    finally:
        reqs.unlink(missing_ok=True)


def _installed_from_cache(
    args: list[str],
    folder: Path,
    env: dict[str, str],
    on_line: Callable[[str], None] | None,
) -> bool:
    """Install by name from uv's cache alone, when it holds every locked file (any machine that
    built an environment with these packages before): the same files, hashes enforced, without
    asking the index about each of them (behind a proxy that sends no cache headers, uv
    revalidates every page: 0.3 s of a 0.5 s install of 87 packages). False when that fails
    (something is not cached, a cached index page is stale): the caller then installs through
    the network, whose error, if any, is the one reported."""
    done = proc.run(
        [*args, "--offline"],
        what="installing the locked packages from uv's cache",
        error=BuildError,
        cwd=folder,
        env=env,
        check=False,
    )
    if done.returncode != 0:
        return False
    if on_line is not None:
        for line in done.stderr.splitlines():
            on_line(line)
    return True


def _platform_args(lock: Lock) -> list[str]:
    """``--python-platform`` of the lock's target for this machine: installing by name, uv picks
    the best wheel *this* machine accepts from every configured index, which may be a newer tag
    than the lock was resolved for (``manylinux_2_34`` where the lock has ``2_28``) and so not a
    locked file (its hash fails). The lock's own platform makes uv choose among the files the
    resolution chose from."""
    host = host_platform()
    if host is None or host.name not in lock.platforms:
        return []
    return ["--python-platform", host.uv_platform]

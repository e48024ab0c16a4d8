"""The few glue pieces between envbuild's values and py-rattler's objects (imported lazily).

py-rattler's solve, install and index are coroutines; envbuild's stages are plain functions, so
:func:`run` drives one to completion (in a worker thread when the caller already runs an event
loop, which ``asyncio.run`` refuses).
"""

from __future__ import annotations

import os
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from rattler import GenericVirtualPackage

    from envbuild.conda.platforms import VirtualPackage

T = TypeVar("T")
CACHE_ENV = "RATTLER_CACHE_DIR"


def cache_dir() -> Path:
    """rattler's (and pixi's) cache folder: ``$RATTLER_CACHE_DIR``, else ``~/.cache/rattler/cache``.

    Passed to py-rattler explicitly (its repodata gateway does not read the variable itself), so
    both the package and the repodata caches follow it.
    """
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("rattler", appauthor=False)) / "cache"


def package_cache_dir() -> Path:
    """Where extracted packages are kept (shared by every prefix: they are hard-linked)."""
    return cache_dir() / "pkgs"


def repodata_cache_dir() -> Path:
    return cache_dir() / "repodata"


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion and return its result (exceptions propagate)."""
    import asyncio
    import concurrent.futures

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


def virtual_packages(packages: Sequence[VirtualPackage]) -> list[GenericVirtualPackage]:
    from rattler import BuildString, GenericVirtualPackage, PackageName, Version

    return [
        GenericVirtualPackage(PackageName(p.name), Version(p.version), BuildString(p.build))
        for p in packages
    ]


def first_line(exc: BaseException) -> str:
    """rattler's messages are a chain of ``Caused by:`` lines: the first and the last say it."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    causes = [line.removeprefix("Caused by:").strip() for line in lines if "Caused by:" in line]
    head = lines[0]
    if causes and causes[-1] not in head:
        return f"{head} ({causes[-1]})"
    return head

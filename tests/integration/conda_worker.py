"""A separate process that builds a conda environment, for the crash and concurrency tests.

    python -m tests.integration.conda_worker LOCK CACHE_ROOT PACKAGE_CACHE [--block-at-link]
    python -m tests.integration.conda_worker --model MODEL [--block-at-link]

The first form builds a conda lock with ``build_env``; the second a model's whole environment
(both halves) the way ``envbuild env --kind conda`` does (``envbuild.prepare``), in the caches
the environment names (``ENVBUILD_CACHE_DIR``, ``RATTLER_CACHE_DIR``).

Prints one JSON line ``{"built": ..., "path": ...}`` when done. With ``--block-at-link`` it prints
``linking`` when the installer links its first package and then blocks (reading stdin) inside
the installer's callback, so the test can kill it at a known point mid-build without sleeping.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from envbuild.conda.install import Progress, build_env
from envbuild.conda.lockfile import read_lock


def _block() -> None:
    print("linking", flush=True)
    sys.stdin.read()  # until killed


def build_model(model: str, block: bool) -> dict[str, object]:
    from envbuild.envs import BuildOptions
    from envbuild.envspec import read_env
    from envbuild.model import load_model
    from envbuild.prepare import prepare

    def progress(message: str) -> None:
        if block and message.startswith("link "):
            _block()

    spec = load_model(model)
    prepared = prepare(spec, read_env(spec), BuildOptions(kind="conda"), on_progress=progress)
    return {"built": prepared.environment.built, "path": str(prepared.environment.path)}


def main(argv: list[str]) -> int:
    block = "--block-at-link" in argv
    args = [a for a in argv if a != "--block-at-link"]
    if args[:1] == ["--model"]:
        print(json.dumps(build_model(args[1], block)), flush=True)
        return 0
    lock_path, root, package_cache = (Path(a) for a in args[:3])

    def progress(step: Progress) -> None:
        if block and step.stage == "link":
            _block()

    env = build_env(read_lock(lock_path), root=root, package_cache=package_cache, progress=progress)
    print(json.dumps({"built": env.built, "path": str(env.path)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

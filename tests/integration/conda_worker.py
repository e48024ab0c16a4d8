"""A separate process that builds a conda environment, for the crash and concurrency tests.

    python -m tests.integration.conda_worker LOCK CACHE_ROOT PACKAGE_CACHE [--block-at-link]

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


def main(argv: list[str]) -> int:
    lock_path, root, package_cache = (Path(a) for a in argv[:3])
    block = "--block-at-link" in argv[3:]

    def progress(step: Progress) -> None:
        if block and step.stage == "link":
            print("linking", flush=True)
            sys.stdin.read()  # until killed

    env = build_env(read_lock(lock_path), root=root, package_cache=package_cache, progress=progress)
    print(json.dumps({"built": env.built, "path": str(env.path)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

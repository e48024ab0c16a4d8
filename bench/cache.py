"""Benchmark: how much uv's cache and envbuild's cache grow over N cold rebuilds of one lock.

    .venv/bin/python bench/cache.py [--n 10] [--model DIR] [--uv-cache-dir DIR] [--predict]

Issue #15's target: 10 cold rebuilds of the same lock grow uv's cache by less than 50 MB in total
(installing a pylock through its per-file URLs made uv download and unpack every wheel again on
every install, its ``archive-v0`` reaching 42 GB; envbuild installs by name, version and hash
through the index, which is how uv's cache keys wheels).

The lock: the model's own ``pylock.toml`` (default model: ``examples/sklearn-iris``, which carries
one; the bench stops if envbuild does not use it). Each rebuild is ``envbuild env MODEL --json``
(``--predict``: ``envbuild predict MODEL``, so the first run's ``.pyc`` are written too) with a
fresh, empty ``ENVBUILD_CACHE_DIR`` and ``ENVBUILD_HOME``, every rebuild sharing one uv cache.

Which uv cache is measured, exactly: by default a private, new ``UV_CACHE_DIR`` in a temporary
folder (under ``$TMPDIR``), seeded by one untimed first build that downloads the lock's files;
the machine's own uv cache is neither read nor written nor measured. ``--uv-cache-dir DIR`` uses
and measures DIR as it is instead (``$(uv cache dir)`` for the machine's own: then the first build
may download nothing, and walking a large cache takes a while); it is not removed.

After the seeding build and after every rebuild the bench walks both caches and prints:

* uv's cache: bytes (apparent size, each inode once: hard links are not counted twice), files,
  entries of ``archive-v0`` (one per unpacked wheel), and which of its top-level buckets grew;
* envbuild's cache of that rebuild (fresh each time, so its size is its growth): bytes, and the
  bytes in inodes *not* shared with uv's cache (uv hard-links the packages' files from its cache
  into the environment, so those are the bytes the environment really adds on disk).

The totals are the sums over the N rebuilds (the seeding build excluded). Each envbuild cache is
removed after it is measured. pip's configuration is ignored (``PIP_CONFIG_FILE=/dev/null``, no
``PIP_FIND_LINKS``) so that installs go to PyPI; ``UV_PYTHON_DOWNLOADS=never``. Seconds per build
are printed for information; nothing asserts anything.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import stat
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

PIP_INDEX_VARS = (
    "PIP_FIND_LINKS",
    "PIP_INDEX_URL",
    "PIP_EXTRA_INDEX_URL",
    "PIP_CONSTRAINT",
    "PIP_TRUSTED_HOST",
    "PIP_NO_INDEX",
)
TARGET_BYTES = 50 * 1000 * 1000  # "less than 50 MB in total"
MB = 1e6


@dataclass
class Tree:
    """What a folder holds: each inode counted once."""

    bytes: int = 0
    files: int = 0
    archives: int = 0  # entries of archive-v0 (uv's cache only)
    buckets: dict[str, int] = field(default_factory=dict)  # top-level folder -> bytes
    inodes: set[tuple[int, int]] = field(default_factory=set)


def walk(root: Path, skip: set[tuple[int, int]] | None = None) -> Tree:
    """Sizes under ``root``; with ``skip``, inodes in it are left out (shared with another tree)."""
    tree = Tree()
    if not root.exists():
        return tree
    archive = root / "archive-v0"
    if archive.is_dir():
        tree.archives = sum(1 for _ in os.scandir(archive))
    for top, _dirs, files in os.walk(root):
        bucket = Path(top).relative_to(root).parts[:1]
        name = bucket[0] if bucket else "."
        for entry in files:
            try:
                info = os.lstat(os.path.join(top, entry))
            except FileNotFoundError:
                continue
            if not stat.S_ISREG(info.st_mode):
                continue
            key = (info.st_dev, info.st_ino)
            if key in tree.inodes or (skip is not None and key in skip):
                continue
            tree.inodes.add(key)
            tree.files += 1
            tree.bytes += info.st_size
            tree.buckets[name] = tree.buckets.get(name, 0) + info.st_size
    return tree


def mb(value: int) -> str:
    return f"{value / MB:9.2f} MB ({value:,} bytes)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10, help="cold rebuilds (default 10)")
    parser.add_argument(
        "--model",
        type=Path,
        default=HERE.parent / "examples" / "sklearn-iris",
        help="a model carrying its pylock.toml (default: examples/sklearn-iris)",
    )
    parser.add_argument(
        "--uv-cache-dir",
        type=Path,
        help="use and measure this uv cache as it is (default: a private, new one, seeded by "
        "one untimed build)",
    )
    parser.add_argument(
        "--predict",
        action="store_true",
        help="rebuild with `envbuild predict` (the first run writes .pyc) instead of `envbuild env`",
    )
    args = parser.parse_args()
    if args.n < 1:
        parser.error("--n must be at least 1")
    model = args.model.resolve()

    env = {k: v for k, v in os.environ.items() if k not in PIP_INDEX_VARS}
    env = {k: v for k, v in env.items() if not k.startswith(("UV_INDEX", "UV_EXTRA_INDEX"))}
    env.pop("UV_FIND_LINKS", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # with --predict, the first run writes .pyc
    env["PIP_CONFIG_FILE"] = os.devnull
    env["UV_PYTHON_DOWNLOADS"] = "never"
    envbuild_cli = [sys.executable, "-m", "envbuild"]
    command = ["predict", str(model)] if args.predict else ["env", str(model), "--json"]

    load_before = os.getloadavg()
    started_all = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="envbuild-bench-cache-") as tmp:
        work = Path(tmp)
        if args.uv_cache_dir:
            uv_cache = args.uv_cache_dir.resolve()
            which = f"{uv_cache} (given: used and measured as it is)"
        else:
            uv_cache = work / "uv-cache"
            which = f"{uv_cache} (private, new; seeded by one untimed build)"
        env["UV_CACHE_DIR"] = str(uv_cache)

        def build(number: int) -> tuple[float, Path, dict[str, object]]:
            cache = work / f"envbuild-cache-{number}"
            run_env = {
                **env,
                "ENVBUILD_CACHE_DIR": str(cache),
                "ENVBUILD_HOME": str(work / f"envbuild-home-{number}"),
            }
            started = time.perf_counter()
            done = subprocess.run(
                [*envbuild_cli, *command], env=run_env, capture_output=True, text=True, timeout=900
            )
            seconds = time.perf_counter() - started
            if done.returncode != 0:
                lines = (done.stderr or done.stdout).strip().splitlines()
                raise SystemExit(
                    f"build {number} failed: {lines[-1] if lines else done.returncode}"
                )
            report = json.loads(done.stdout) if not args.predict else {}
            return seconds, cache, report

        print(f"model: {model}")
        print(f"uv cache: {which}")
        print(f"each build: envbuild {' '.join(command[:1])} MODEL on a fresh envbuild cache")
        before_seed = walk(uv_cache)
        seed_seconds, seed_cache, report = build(0)
        if report and report.get("lock_source") != "model":
            print(
                f"the model's pylock.toml was not used (lock source: {report.get('lock_source')})"
            )
            return 2
        shutil.rmtree(seed_cache, ignore_errors=True)
        shutil.rmtree(work / "envbuild-home-0", ignore_errors=True)
        previous = walk(uv_cache)
        print(
            f"seeding build (untimed for the totals): {seed_seconds:.2f} s; uv cache "
            f"{before_seed.bytes / MB:.1f} -> {previous.bytes / MB:.1f} MB, "
            f"{previous.archives} archives, {previous.files} files"
        )
        first = previous

        header = (
            f"\n{'build':>5} {'seconds':>8} {'uv cache +bytes':>16} {'+files':>7} "
            f"{'+archives':>9} {'envbuild cache*':>15} {'of it not in uv':>16}"
        )
        print(header)
        rows = []
        for number in range(1, args.n + 1):
            seconds, cache, _ = build(number)
            now = walk(uv_cache)
            ours = walk(cache)
            own = walk(cache, skip=now.inodes)
            grew = {
                name: size - previous.buckets.get(name, 0)
                for name, size in now.buckets.items()
                if size != previous.buckets.get(name, 0)
            }
            rows.append((seconds, now.bytes - previous.bytes, ours.bytes, own.bytes))
            print(
                f"{number:>5} {seconds:7.2f}s {now.bytes - previous.bytes:>16,} "
                f"{now.files - previous.files:>+7} {now.archives - previous.archives:>+9} "
                f"{ours.bytes / MB:>12.1f} MB {own.bytes / MB:>13.2f} MB"
                + (f"   grew: {', '.join(f'{k} {v:+,}' for k, v in grew.items())}" if grew else "")
            )
            shutil.rmtree(cache, ignore_errors=True)
            shutil.rmtree(work / f"envbuild-home-{number}", ignore_errors=True)
            previous = now
        last = previous
        load_after = os.getloadavg()
        total = time.perf_counter() - started_all

    uv_growth = last.bytes - first.bytes
    print(
        f"\n{args.n} cold rebuilds of one lock; load average {load_before[0]:.1f} before, "
        f"{load_after[0]:.1f} after; {total:.0f} s in all"
    )
    times = [r[0] for r in rows]
    print(f"  build seconds: median {statistics.median(times):.2f}, min {min(times):.2f}")
    print(f"  uv's cache, total growth:            {mb(uv_growth)}")
    print(
        f"    files {last.files - first.files:+}, archive-v0 entries "
        f"{last.archives - first.archives:+} (now {last.archives})"
    )
    met = "met" if uv_growth < TARGET_BYTES else "NOT met"
    print(f"    target < 50 MB in total: {met}")
    print(f"  envbuild's caches, total (*apparent: {mb(sum(r[2] for r in rows)).strip()}")
    print("    hard links into uv's cache counted in full)")
    print(f"    of which not hard links into uv's: {mb(sum(r[3] for r in rows))}")
    own_median = statistics.median(r[3] for r in rows) / MB
    print(f"    per build (median, not in uv's):   {own_median:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Resolve the model's requirements to a PEP 751 pylock.toml (every package pinned, with hashes)
for the model's Python on the target platforms (Linux x86_64 by default), or check that the lock
still matches the model (--check, for CI)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from envbuild.cli.common import add_accelerator_options, add_json, add_model

if TYPE_CHECKING:
    from pathlib import Path

    from envbuild.cli.output import Output
    from envbuild.lock import Lock
    from envbuild.sources import Source

HELP = "pin every package, with hashes, into a PEP 751 pylock.toml"


def configure(parser: argparse.ArgumentParser) -> None:
    add_model(parser)
    parser.add_argument(
        "-o",
        "--output",
        metavar="PATH",
        help="lock file to write or check (default: MODEL/pylock.toml; for a MODEL URI, the "
        "downloaded copy stays read-only and the lock goes to envbuild's cache)",
    )
    parser.add_argument(
        "--python",
        metavar="X.Y[.Z]",
        help="target Python version (default: the model's); need not be installed",
    )
    parser.add_argument(
        "--platform",
        dest="platforms",
        action="append",
        metavar="PLATFORM",
        help="target platform, repeatable: linux/amd64 (default), linux/arm64, macos "
        "(arm64), macos/x86_64, windows; replaces the default, +PLATFORM adds to it",
    )
    parser.add_argument(
        "--as-of",
        metavar="DATE|model",
        help="use only releases published before DATE (YYYY-MM-DD, UTC) or, with 'model', "
        "before the model was logged (MLmodel utc_time_created)",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="do not resolve: exit 3 if the lock is missing or no longer matches the model",
    )
    parser.add_argument(
        "--offline", action="store_true", help="resolve from uv's cache only, without network"
    )
    parser.add_argument("--index-url", metavar="URL", help="package index to use instead of PyPI")
    parser.add_argument(
        "--extra-index-url",
        dest="extra_index_urls",
        action="append",
        default=[],
        metavar="URL",
        help="additional package index, repeatable",
    )
    parser.add_argument(
        "--find-links",
        dest="find_links",
        action="append",
        default=[],
        metavar="URL|DIR",
        help="additional place to look for wheels, repeatable",
    )
    parser.add_argument(
        "--trust-model-indexes",
        action="store_true",
        help="also use the index options written in the model's requirement files",
    )
    add_accelerator_options(parser)
    add_json(parser)


def render(lock: Lock, *, checked: bool, source: Source | None = None) -> str:
    from envbuild.cli.output import shown_path

    path = shown_path(lock.path) if lock.path else "-"
    verb = "up to date" if checked else ("wrote" if lock.changed else "unchanged")
    where = ", ".join(lock.platforms)
    as_of = f" as of {lock.as_of}" if lock.as_of else ""
    lines = [
        f"{path}: {verb}: {len(lock.packages)} packages for Python {lock.python} on {where}{as_of}",
        f"digest {lock.digest}",
    ]
    if source is not None and source.read_only and not checked and _in_cache(lock, source):
        lines.append(
            f"{source.provenance.uri} is a downloaded copy, kept read-only: the lock is in "
            "envbuild's cache, beside it (-o PATH writes it elsewhere)"
        )
    if lock.accelerator is None and lock.accelerator_reason:
        lines.append(f"accelerator: the default builds ({lock.accelerator_reason})")
    if lock.accelerator:
        index = lock.indexes.get("accelerator-index")
        origin = f", the torch family from {index}" if index else ""
        why = f" ({lock.accelerator_reason})" if lock.accelerator_reason else ""
        lines.append(f"accelerator {lock.accelerator}{why}{origin}")
    return "\n".join(lines)


def lock_file(args: argparse.Namespace, source: Source) -> Path | None:
    """The lock to write or check; None: the model's own ``pylock.toml`` (lock_model's default).

    A downloaded model (a URI) is never written into: ``lock`` writes into its cache entry, and
    ``--check`` checks the lock the model was logged with, else the one ``lock`` wrote.
    """
    from envbuild.lock import PYLOCK_NAME
    from envbuild.sources import model_cache

    if args.output is not None or not source.read_only or source.cache_entry is None:
        return args.output
    if args.check and (source.path / PYLOCK_NAME).is_file():
        return None
    return model_cache.lock_file(source.cache_entry)


def _in_cache(lock: Lock, source: Source) -> bool:
    return (
        source.cache_entry is not None
        and lock.path is not None
        and (lock.path.parent == source.cache_entry)
    )


def run(args: argparse.Namespace, out: Output) -> int:
    from envbuild.cli.common import load_source
    from envbuild.lock import check_lock, lock_model

    loaded = load_source(args, out)
    spec, env, source = loaded.spec, loaded.env, loaded.source
    for warning in (*spec.warnings, *env.warnings):
        out.warn(warning)
    output = lock_file(args, source)
    if args.check:
        result = check_lock(spec, output, python=args.python, platforms=args.platforms, env=env)
    else:
        result = lock_model(
            spec,
            output=output,
            python=args.python,
            platforms=args.platforms,
            as_of=args.as_of,
            offline=args.offline,
            index_url=args.index_url,
            extra_index_urls=args.extra_index_urls,
            find_links=args.find_links,
            trust_model_indexes=args.trust_model_indexes,
            accelerator=args.accelerator,
            torch_index_url=args.torch_index_url,
            env=env,
            on_progress=out.progress,
        )
    for warning in result.warnings:
        out.warn(warning)
    data = result.to_dict()
    data["checked"] = bool(args.check)
    data["source"] = source.provenance.to_dict()
    out.result(data, lambda: render(result, checked=args.check, source=source))
    return 0

"""Resolve the model's requirements to a PEP 751 pylock.toml (every package pinned, with hashes)
for the model's Python on the target platforms (Linux x86_64 by default), or check that the lock
still matches the model (--check, for CI). With --kind conda (the default for a model that needs
conda packages): conda.yaml's conda packages into pixi.lock and the pip requirements, for the
Python that solve chose, into pylock.conda.toml."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from envbuild.cli.common import add_accelerator_options, add_json, add_kind, add_model
from envbuild.envs.base import LOCK

if TYPE_CHECKING:
    from pathlib import Path

    from envbuild.cli.output import Output
    from envbuild.sources import Source

HELP = "pin every package, with hashes, into a PEP 751 pylock.toml"


def configure(parser: argparse.ArgumentParser) -> None:
    add_model(parser)
    parser.add_argument(
        "-o",
        "--output",
        metavar="PATH",
        help="lock file to write or check (default: MODEL/pylock.toml); with --kind conda, the "
        "folder of both files (default: MODEL). For a MODEL URI, the downloaded copy stays "
        "read-only and the locks go to envbuild's cache",
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
        "(arm64), macos/x86_64, windows; replaces the default, +PLATFORM adds to it "
        "(--kind conda: one, also as a conda subdir: linux-64, osx-arm64, win-64)",
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
    conda = parser.add_argument_group("conda (--kind conda)")
    add_kind(parser, LOCK, group=conda)
    conda.add_argument(
        "--channel",
        "-c",
        dest="channels",
        action="append",
        default=[],
        metavar="NAME|URL",
        help="conda channel searched before the model's own, repeatable (a mirror: "
        "ENVBUILD_CONDA_CHANNEL_ALIAS)",
    )
    conda.add_argument(
        "--override-channels",
        action="store_true",
        help="use only the --channel ones, not the model's channels",
    )
    conda.add_argument(
        "--cuda",
        metavar="VERSION",
        help="the target machine has this CUDA (the __cuda virtual package), e.g. 12.0",
    )
    add_json(parser)


def lock_folder(args: argparse.Namespace, source: Source, files: tuple[Path, ...]) -> Path | None:
    """Where the kind's lock files go when ``-o`` does not say; None: the model folder.

    A downloaded model (a URI) is never written into: ``lock`` writes into its cache entry, and
    ``--check`` checks the locks the model was logged with, else the ones ``lock`` wrote.
    """
    if args.output is not None or not source.read_only or source.cache_entry is None:
        return None
    if args.check and files and all(f.is_file() for f in files):
        return None
    return source.cache_entry


def run(args: argparse.Namespace, out: Output) -> int:
    from envbuild.cli.common import load_source, say_kind
    from envbuild.cli.output import shown_path
    from envbuild.envs.registry import choose_kind, locking_backend
    from envbuild.lock.request import LockRequest

    loaded = load_source(args, out)
    spec, env, source = loaded.spec, loaded.env, loaded.source
    for warning in (*spec.warnings, *env.warnings):
        out.warn(warning)
    choice = choose_kind(env, args.kind, LOCK)
    say_kind(out, choice)
    locker = locking_backend(choice.name)
    folder = lock_folder(args, source, locker.lock_files(spec))
    request = LockRequest(
        output=args.output,
        folder=str(folder) if folder is not None else None,
        python=args.python,
        platforms=tuple(args.platforms or ()),
        as_of=args.as_of,
        offline=args.offline,
        index_url=args.index_url,
        extra_index_urls=tuple(args.extra_index_urls),
        find_links=tuple(args.find_links),
        trust_model_indexes=args.trust_model_indexes,
        accelerator=args.accelerator,
        torch_index_url=args.torch_index_url,
        channels=tuple(args.channels),
        override_channels=args.override_channels,
        cuda=args.cuda,
    )
    result = locker.lock(spec, env, request, check=args.check, on_progress=out.progress)
    for warning in result.warnings:
        out.warn(warning)
    data = result.to_dict()
    data["checked"] = bool(args.check)
    data["kind"] = choice.name
    data["kind_reason"] = choice.reason
    data["source"] = source.provenance.to_dict()

    def text() -> str:
        lines = result.summary(checked=args.check, shown=shown_path)
        if folder is not None and not args.check:
            lines.append(
                f"{source.provenance.uri} is a downloaded copy, kept read-only: the lock is in "
                "envbuild's cache, beside it (-o PATH writes it elsewhere)"
            )
        return "\n".join(lines)

    out.result(data, text)
    return 0

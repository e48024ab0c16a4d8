"""Arguments several commands share, defined once."""

from __future__ import annotations

import argparse


def add_model(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model", metavar="MODEL", help="model folder (holding MLmodel) or MLmodel file"
    )


def add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def add_build_options(
    parser: argparse.ArgumentParser, *, kinds: tuple[str, ...] = ("venv", "local")
) -> None:
    """Options of every command that materializes the model's environment."""
    group = parser.add_argument_group("environment")
    group.add_argument(
        "--kind",
        choices=kinds,
        default="venv",
        help="venv: a cached virtualenv built from the lock (default); local: the interpreter "
        "running envbuild, as is; docker (predict, serve): the image `envbuild image` builds, "
        "reused while the lock and the model are unchanged",
    )
    group.add_argument(
        "--python",
        metavar="VERSION|PATH",
        help="use this Python (a version to find, or an interpreter's path) instead of the model's",
    )
    group.add_argument(
        "--strict-python",
        action="store_true",
        help="fail unless the model's exact Python version is installed",
    )
    group.add_argument(
        "--install-python",
        action="store_true",
        help="let uv download the model's Python when it is not installed",
    )
    group.add_argument(
        "--installer",
        choices=("uv", "pip"),
        default="uv",
        help="install with uv (default) or pip (fallback)",
    )
    group.add_argument(
        "--no-compile",
        action="store_true",
        help="do not compile bytecode at build time (faster build, slower first run)",
    )
    group.add_argument(
        "--offline", action="store_true", help="resolve and install from the local caches only"
    )


def build_options(args: argparse.Namespace):
    from envbuild.pipeline import BuildOptions

    return BuildOptions(
        kind=args.kind,
        python=args.python,
        strict_python=args.strict_python,
        install_python=args.install_python,
        installer=args.installer,
        compile_bytecode=not args.no_compile,
        offline=args.offline,
    )


def prepare(args: argparse.Namespace, out) -> object:
    """Build (or reuse) the model's environment, showing progress on a terminal."""
    from envbuild.pipeline import prepare as _prepare

    prepared = _prepare(args.model, build_options(args), on_progress=out.progress)
    out.clear_progress()
    for warning in prepared.warnings:
        out.warn(warning)
    return prepared

"""Arguments several commands share, defined once, and the composition they share: the model
argument turned into specs, and the environment built for it."""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from envbuild.cli.output import Output
    from envbuild.envs import BuildOptions
    from envbuild.envs.registry import KindChoice
    from envbuild.envspec import EnvSpec
    from envbuild.model import ModelSpec
    from envbuild.prepare import Prepared


def port(text: str) -> int:
    """``--port``: 0 (any free port) to 65535."""
    value = _integer(text, "a port")
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a port (0 to 65535)")
    return value


def positive(text: str) -> int:
    """A count that must be at least 1 (``--workers``, ``--chunk-rows``)."""
    value = _integer(text, "a whole number")
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number (1 or more)")
    return value


def tolerance(text: str) -> float:
    """A relative tolerance: a finite number, 0 or more."""
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text} is not a tolerance (a finite number >= 0)")
    return value


def _integer(text: str, what: str) -> int:
    try:
        return int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None


def add_model(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model", metavar="MODEL", help="model folder (holding MLmodel) or MLmodel file"
    )


def add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def add_kind(parser: argparse.ArgumentParser, capability: str, *, group=None) -> None:
    """``--kind`` with the kinds of the registry that have ``capability``; unset, the registry's
    automatic choice (``registry.choose_kind``)."""
    from envbuild.envs.registry import DEFAULT_KIND, describe, kinds

    names = kinds(capability)
    described = "; ".join(f"{name}: {describe(name).summary}" for name in names)
    (group or parser).add_argument(
        "--kind",
        choices=names,
        default=None,
        help=f"kind of environment (default: {DEFAULT_KIND}, or conda for a model that needs "
        f"conda packages; {described})",
    )


def say_kind(out: Output, choice: KindChoice | None) -> None:
    """One line on standard error when the automatic choice picked a kind for a reason."""
    if choice is not None and choice.reason:
        out.note(f"using --kind {choice.name}: {choice.reason} (--kind to choose another)")


def add_build_options(parser: argparse.ArgumentParser, capability: str) -> None:
    """Options of every command that materializes the model's environment."""
    group = parser.add_argument_group("environment")
    add_kind(parser, capability, group=group)
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
    compile_group = group.add_mutually_exclusive_group()
    compile_group.add_argument(
        "--compile-bytecode",
        action="store_true",
        help="compile every module at build time (default: the first run writes .pyc for what "
        "it imports)",
    )
    compile_group.add_argument(
        "--no-compile", action="store_true", help="do not compile bytecode at build time (default)"
    )
    group.add_argument(
        "--offline", action="store_true", help="resolve and install from the local caches only"
    )
    group.add_argument(
        "--package-scripts",
        action="store_true",
        help="conda: run the packages' link and activation scripts (package code; off by default)",
    )


def build_options(args: argparse.Namespace) -> BuildOptions:
    from envbuild.envs import BuildOptions

    return BuildOptions(
        kind=args.kind,
        python=args.python,
        strict_python=args.strict_python,
        install_python=args.install_python,
        installer=args.installer,
        compile_bytecode=bool(args.compile_bytecode),
        offline=args.offline,
        package_scripts=bool(getattr(args, "package_scripts", False)),
    )


def load_specs(args: argparse.Namespace) -> tuple[ModelSpec, EnvSpec]:
    """The MODEL argument read into its two specs (stages 1 and 2)."""
    from envbuild.envspec import read_env
    from envbuild.model import load_model

    spec = load_model(args.model)
    return spec, read_env(spec)


def prepare(args: argparse.Namespace, out: Output, capability: str) -> Prepared:
    """Build (or reuse) the model's environment, showing progress on a terminal."""
    from envbuild.envs.registry import choose_kind
    from envbuild.prepare import prepare as _prepare

    spec, env = load_specs(args)
    options = build_options(args)
    choice = choose_kind(env, options.kind, capability, options)
    say_kind(out, choice)
    options = replace(options, kind=choice.name)
    prepared = replace(_prepare(spec, env, options, on_progress=out.progress), kind=choice)
    out.clear_progress()
    for warning in prepared.warnings:
        out.warn(warning)
    return prepared

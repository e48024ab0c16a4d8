"""Arguments several commands share, defined once, and the composition they share: the model
argument (a folder or an MLflow URI) turned into a source and its specs, and the environment built
for it."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from envbuild.cli.output import Output
    from envbuild.envs import BuildOptions
    from envbuild.envs.registry import KindChoice
    from envbuild.envspec import EnvSpec
    from envbuild.model import ModelSpec
    from envbuild.prepare import Prepared
    from envbuild.sources import Source

MODEL_HELP = (
    "model folder (holding MLmodel), MLmodel file, or MLflow URI: runs:/RUN_ID/PATH, "
    "models:/NAME/VERSION, models:/NAME@ALIAS, models:/NAME/latest, mlflow-artifacts:/..., "
    "s3://... (needs envbuild[mlflow])"
)


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
    """MODEL and the options that say where a model URI is looked up."""
    parser.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    add_source_options(parser)


def add_models(parser: argparse.ArgumentParser) -> None:
    """One or more MODELs (``reproduce``), each a folder or a URI."""
    parser.add_argument("models", nargs="+", metavar="MODEL", help=MODEL_HELP)
    add_source_options(parser)


def add_source_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model source (for a MODEL that is an MLflow URI)")
    group.add_argument(
        "--tracking-uri",
        metavar="URI",
        help="MLflow tracking server of runs:/ and models:/ URIs (default: $MLFLOW_TRACKING_URI; "
        "credentials from MLflow's own variables, e.g. $MLFLOW_TRACKING_TOKEN)",
    )
    group.add_argument(
        "--registry-uri",
        metavar="URI",
        help="MLflow model registry of models:/ URIs (default: $MLFLOW_REGISTRY_URI, else the "
        "tracking server)",
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


def add_environment(parser: argparse.ArgumentParser, *, group=None) -> None:
    """``--environment NAME[:VERSION]`` (a named shared environment) and ``--allow-mismatch``."""
    (group or parser).add_argument(
        "--environment",
        metavar="NAME[:VERSION]",
        help="run in this shared environment (see `envbuild environments`) instead of the "
        "model's own; refused (exit 8) unless it satisfies the model",
    )
    (group or parser).add_argument(
        "--allow-mismatch",
        action="store_true",
        help="with --environment: run even when it does not satisfy the model (a warning)",
    )


def add_build_options(parser: argparse.ArgumentParser, capability: str) -> None:
    """Options of every command that materializes the model's environment."""
    group = parser.add_argument_group("environment")
    add_kind(parser, capability, group=group)
    add_environment(parser, group=group)
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
    add_accelerator_options(group)
    group.add_argument(
        "--gpus",
        metavar="all|N",
        type=_gpus,
        help="--kind docker: give the container all or N GPUs (the Docker API's device request, "
        "as docker run --gpus); a venv uses the host's GPUs as they are",
    )

    group.add_argument(
        "--package-scripts",
        action="store_true",
        help="conda: run the packages' link and activation scripts (package code; off by default)",
    )


def _gpus(text: str) -> str:
    value = text.strip().lower()
    if value == "all" or (value.isdigit() and int(value) > 0):
        return value
    raise argparse.ArgumentTypeError(f"{text!r} is not a GPU count: write all or a number")


def add_accelerator_options(parser) -> None:
    """``--accelerator`` and ``--torch-index-url`` (lock, env/predict/serve/run, image, capture)."""
    from envbuild.accelerator import ACCELERATOR_HELP, TORCH_INDEX_VARIABLE

    parser.add_argument(
        "--accelerator",
        metavar="NAME",
        type=_accelerator,
        help=f"builds to use: {ACCELERATOR_HELP}",
    )
    parser.add_argument(
        "--torch-index-url",
        metavar="URL",
        help="a mirror of PyTorch's indexes for the torch family ({accelerator} in it stands "
        f"for cpu, cu121, ...; default ${TORCH_INDEX_VARIABLE}, else download.pytorch.org)",
    )


def _accelerator(text: str) -> str | None:
    from envbuild.accelerator import parse_accelerator
    from envbuild.errors import UsageError

    try:
        return parse_accelerator(text)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


def build_options(args: argparse.Namespace) -> BuildOptions:
    from envbuild.envs import BuildOptions
    from envbuild.envs.registry import SHARED_KIND

    environment = getattr(args, "environment", None)
    return BuildOptions(
        kind=SHARED_KIND if environment else args.kind,
        environment=environment,
        allow_mismatch=bool(getattr(args, "allow_mismatch", False)),
        python=args.python,
        strict_python=args.strict_python,
        install_python=args.install_python,
        installer=args.installer,
        compile_bytecode=bool(args.compile_bytecode),
        offline=args.offline,
        accelerator=args.accelerator,
        torch_index_url=args.torch_index_url,
        gpus=args.gpus,
        package_scripts=bool(getattr(args, "package_scripts", False)),
    )


@dataclass(frozen=True)
class Loaded:
    """MODEL opened: where its folder is and came from (the source), and its two specs."""

    source: Source
    spec: ModelSpec
    env: EnvSpec


def open_source(
    args: argparse.Namespace, out: Output | None = None, model: str | None = None
) -> Source:
    """MODEL (``args.model``, or ``model``) -> a :class:`~envbuild.sources.Source`: a folder is
    used in place; a URI is resolved (an alias to its version, now) and downloaded into envbuild's
    model cache once. The one place a command turns its MODEL argument into a folder."""
    from envbuild.sources import open_model

    source = open_model(
        args.model if model is None else model,
        tracking_uri=getattr(args, "tracking_uri", None),
        registry_uri=getattr(args, "registry_uri", None),
        on_progress=out.progress if out is not None else None,
    )
    if out is not None:
        out.clear_progress()
        if not source.provenance.is_local:
            out.info(describe_source(source))
    return source


def describe_source(source: Source) -> str:
    """One line saying what a URI resolved to: ``models:/iris@champion -> models:/iris/2``."""
    from envbuild.cli.output import shown_path

    p = source.provenance
    parts = [p.uri]
    if p.resolved_uri and p.resolved_uri != p.uri:
        parts.append(f"-> {p.resolved_uri}")
    if p.run_id and p.kind != "run":
        parts.append(f"(run {p.run_id})")
    where = p.registry_uri or p.tracking_uri
    if where:
        parts.append(f"on {where}")
    state = "downloaded to" if source.downloaded else "cached in"
    parts.append(f"{state} {shown_path(source.path)}")
    return " ".join(parts)


def load_source(
    args: argparse.Namespace, out: Output | None = None, model: str | None = None
) -> Loaded:
    """MODEL opened (:func:`open_source`) and read into its two specs (stages 1 and 2)."""
    from envbuild.envspec import read_env
    from envbuild.model import load_model

    source = open_source(args, out, model)
    spec = load_model(source.path)
    return Loaded(source, spec, read_env(spec))


def load_specs(args: argparse.Namespace, out: Output | None = None) -> tuple[ModelSpec, EnvSpec]:
    """The MODEL argument (a folder or a URI) read into its two specs (stages 1 and 2)."""
    loaded = load_source(args, out)
    return loaded.spec, loaded.env


def prepare(args: argparse.Namespace, out: Output, capability: str) -> Prepared:
    """Build (or reuse) the model's environment, showing progress on a terminal; the result
    carries the model's provenance and how its kind was chosen (for ``--json``)."""
    from envbuild.envs.registry import choose_kind
    from envbuild.prepare import prepare as _prepare

    loaded = load_source(args, out)
    options = build_options(args)
    choice = choose_kind(loaded.env, options.kind, capability, options)
    say_kind(out, choice)
    options = replace(options, kind=choice.name)
    prepared = _prepare(loaded.spec, loaded.env, options, on_progress=out.progress)
    out.clear_progress()
    for warning in prepared.warnings:
        out.warn(warning)
    return replace(prepared, source=loaded.source.provenance, kind=choice)

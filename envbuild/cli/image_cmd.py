"""Build a small, layered, non-root Docker image that serves the model (the same server as
`envbuild serve`), through the Docker Engine API; or, with --context, write the build context for
another builder and stop."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from envbuild.cli.common import add_json, add_kind, add_model
from envbuild.envs.base import IMAGE

if TYPE_CHECKING:
    from envbuild.cli.output import Output
    from envbuild.image import ImageResult

HELP = "build a Docker image that serves the model"


def configure(parser: argparse.ArgumentParser) -> None:
    add_model(parser)
    parser.add_argument(
        "-t",
        "--tag",
        metavar="NAME[:TAG]",
        help="image name (default: envbuild/<model>:<lock digest>-<model digest>)",
    )
    parser.add_argument(
        "--base-image",
        metavar="IMAGE",
        help="base of both stages (default: python:X.Y-slim for the model's Python X.Y, "
        "another image must have the same Python X.Y; --kind conda: debian:bookworm-slim, "
        "any Linux base of the glibc the conda lock assumes, no Python needed)",
    )
    parser.add_argument(
        "--platform",
        metavar="linux/ARCH",
        help="target platform (default: linux on this machine's architecture); the lock is "
        "resolved for it",
    )
    parser.add_argument(
        "--python", metavar="X.Y[.Z]", help="build for this Python instead of the model's"
    )
    parser.add_argument(
        "--network",
        metavar="MODE",
        default="host",
        help="network of the build's RUN steps (default: host; 'default' for the engine's)",
    )
    parser.add_argument(
        "--ca-cert",
        type=Path,
        metavar="FILE",
        help="CA bundle the build stage trusts (a TLS-intercepting proxy's); default: "
        "$SSL_CERT_FILE, else $PIP_CERT. Never in the final image",
    )
    parser.add_argument(
        "--context",
        type=Path,
        metavar="DIR",
        help="write the complete build context (Dockerfile, lock, runner, model) into DIR "
        "(new or empty) and stop, for another builder",
    )
    parser.add_argument(
        "--label",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="add a label to the image (repeatable)",
    )
    parser.add_argument(
        "--offline", action="store_true", help="resolve the lock from uv's cache only"
    )
    parser.add_argument(
        "--no-cache", action="store_true", help="build without the engine's layer cache"
    )
    add_kind(parser, IMAGE)
    add_json(parser)


def run(args: argparse.Namespace, out: Output) -> int:
    from envbuild.cli.common import load_specs
    from envbuild.image import (
        ImageOptions,
        ImageResult,
        build_image,
        parse_labels,
        plan_image,
        write_context,
    )

    options = ImageOptions(
        tag=args.tag,
        base_image=args.base_image,
        platform=args.platform,
        python=args.python,
        network=args.network,
        ca_cert=args.ca_cert,
        labels=parse_labels(args.label),
        offline=args.offline,
        kind=args.kind,
    )
    spec, env = load_specs(args)
    from envbuild.cli.common import say_kind
    from envbuild.envs.registry import choose_kind

    choice = choose_kind(env, args.kind, IMAGE)
    say_kind(out, choice)
    plan = plan_image(spec, env, replace(options, kind=choice.name), on_progress=out.progress)
    out.clear_progress()
    for warning in plan.warnings:
        out.warn(warning)
    if args.context is not None:
        folder = write_context(plan, args.context, on_progress=out.progress)
        result = ImageResult(
            plan=plan, image_id=None, size=None, built=False, seconds=0.0, context=folder
        )
    else:
        result = build_image(plan, nocache=args.no_cache, on_progress=out.progress)
    out.result(result.to_dict(), lambda: _text(result))
    return 0


def _base_python(result: ImageResult) -> str:
    """The base image's own Python when it was asked, else what the lock needs."""
    if result.base_python:
        return f"Python {result.base_python}"
    return f"Python {result.plan.python_minor} expected"


def _size(size: int | None) -> str:
    return f"{size / 1e6:.0f} MB" if size else "-"


def _text(result: ImageResult) -> str:
    plan = result.plan
    lock = (
        f"the model's {plan.lock.path.name if plan.lock.path else 'lock'}"
        if plan.lock_source == "model"
        else f"resolved for {plan.platform.name}, cached"
    )
    ca = f"{plan.ca_cert} (from {plan.ca_source}, build stage only)" if plan.ca_cert else "-"
    rows = []
    if result.context is not None:
        args = "".join(f" --build-arg {name}" for name in sorted(plan.build_args))
        rows.append(f"context   {result.context}")
        rows.append(
            f"build     docker build --network {plan.network}{args} -t IMAGE {result.context}"
        )
    else:
        cache = f"{result.cached_steps}/{result.steps} steps from the layer cache"
        rows.append(
            f"image     {plan.tag}  ({_size(result.size)}, built in {result.seconds:.1f} s, {cache})"
        )
        rows.append(f"id        {result.image_id}")
    python = _base_python(result) if plan.base is None else f"Python from the {plan.base.name} lock"
    rows += [
        f"base      {plan.base_image}  ({python}, {plan.platform.name})",
        f"lock      {plan.lock.digest}  ({lock})",
        f"ca        {ca}",
    ]
    if plan.base is not None:
        rows.insert(-1, f"{plan.base.name:<9} {plan.base.digest}  ({plan.base.lock_file[0]})")
    if result.context is None:
        rows.append(f"run       docker run --rm -p 8080:8080 {plan.tag}")
        if result.log_path:
            rows.append(f"log       {result.log_path}")
    return "\n".join(rows)

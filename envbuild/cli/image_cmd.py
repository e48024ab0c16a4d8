"""Build a small, layered, non-root Docker image that serves the model (the same server as
`envbuild serve`), through the Docker Engine API; or, with --context, write the build context for
another builder and stop."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from envbuild.cli.common import (
    add_accelerator_options,
    add_environment,
    add_json,
    add_kind,
    add_model,
)
from envbuild.envs.base import IMAGE

if TYPE_CHECKING:
    from envbuild.cli.output import Output
    from envbuild.envspec import EnvSpec
    from envbuild.image import ImageResult
    from envbuild.lock.select import LockChoice
    from envbuild.model import ModelSpec
    from envbuild.shared.use import Selected
    from envbuild.sources import Provenance

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
    add_environment(parser)
    add_accelerator_options(parser)
    add_json(parser)


def run(args: argparse.Namespace, out: Output) -> int:
    from envbuild.cli.common import load_source
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
        accelerator=args.accelerator,
        torch_index_url=args.torch_index_url,
        kind=args.kind,
    )
    loaded = load_source(args, out)
    spec, env = loaded.spec, loaded.env
    source = loaded.source.provenance
    lock, shared = None, None
    if args.environment:
        from envbuild.image.shared import environment_labels

        shared = _shared(args, out, env)
        if shared.record.image_id is not None:
            return _on_shared_image(args, out, spec, shared)
        lock = _shared_lock(shared)
        options = replace(options, labels={**environment_labels(shared.record), **options.labels})
    else:
        from envbuild.cli.common import say_kind
        from envbuild.envs.registry import choose_kind

        choice = choose_kind(env, args.kind, IMAGE)
        say_kind(out, choice)
        options = replace(options, kind=choice.name)
    plan = plan_image(spec, env, options, lock=lock, source=source, on_progress=out.progress)
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
    data = {**result.to_dict(), "source": source.to_dict()}
    if shared is not None:
        data["shared_environment"] = shared.to_dict()
    out.result(data, lambda: _text(result, source))
    return 0


def _shared(args: argparse.Namespace, out: Output, env: EnvSpec) -> Selected:
    """``--environment``: the shared environment, refused (exit 8) unless it satisfies the
    model or ``--allow-mismatch``."""
    from envbuild.envs.registry import SHARED_KIND
    from envbuild.errors import UsageError
    from envbuild.shared.names import parse_ref
    from envbuild.shared.use import select

    selected = select(
        env, parse_ref(args.environment), SHARED_KIND, allow_mismatch=args.allow_mismatch
    )
    for warning in selected.warnings:
        out.warn(warning)
    if selected.record.image_id is None and selected.record.lock is None:
        raise UsageError(
            f"{selected.record.ref} is a registered prefix: it has no lock and no image to build "
            "an image from",
            field="--environment",
            hint="create the environment from models, a requirements file or a lock (its lock "
            "is then what the image installs), or register an image",
        )
    return selected


def _shared_lock(shared: Selected) -> LockChoice:
    """The lock a shared environment was built from, as the image's lock."""
    from envbuild.lock.pylock import read_lock
    from envbuild.lock.select import LockChoice

    assert shared.record.lock_path is not None
    return LockChoice(read_lock(shared.record.lock_path), "environment")


def _on_shared_image(
    args: argparse.Namespace, out: Output, spec: ModelSpec, shared: Selected
) -> int:
    """An image environment: FROM its image, plus the runner and the model."""
    from envbuild.errors import UsageError
    from envbuild.image import parse_labels
    from envbuild.image.shared import (
        SharedImageResult,
        build_on_environment,
        plan_on_environment,
        write_shared_context,
    )

    for flag, value in (
        ("--base-image", args.base_image),
        ("--python", args.python),
        ("--platform", args.platform),
        ("--ca-cert", args.ca_cert),
    ):
        if value:
            raise UsageError(
                f"{flag} does not apply: {shared.record.ref} is an image, used as it is",
                field=flag,
            )
    plan = plan_on_environment(spec, shared.record, tag=args.tag, labels=parse_labels(args.label))
    if args.context is not None:
        folder = write_shared_context(plan, args.context)
        result = SharedImageResult(plan, None, None, False, 0.0, context=folder)
    else:
        result = build_on_environment(plan, nocache=args.no_cache, on_progress=out.progress)

    def text() -> str:
        if result.context is not None:
            return f"context   {result.context}\nbuild     docker build -t IMAGE {result.context}"
        return "\n".join(
            [
                f"image     {plan.tag}  ({_size(result.size)}, built in {result.seconds:.1f} s)",
                f"id        {result.image_id}",
                f"base      {shared.record.ref}: {shared.record.image}  ({plan.base_image})",
                f"run       docker run --rm -p 8080:8080 {plan.tag}",
            ]
        )

    out.result({**result.to_dict(), "shared_environment": shared.to_dict()}, text)
    return 0


def _base_python(result: ImageResult) -> str:
    """The base image's own Python when it was asked, else what the lock needs."""
    if result.base_python:
        return f"Python {result.base_python}"
    return f"Python {result.plan.python_minor} expected"


def _size(size: int | None) -> str:
    return f"{size / 1e6:.0f} MB" if size else "-"


def _text(result: ImageResult, source: Provenance | None = None) -> str:
    plan = result.plan
    lock = {
        "model": f"the model's {plan.lock.path.name if plan.lock.path else 'lock'}",
        "environment": "the shared environment's lock",
    }.get(plan.lock_source, f"resolved for {plan.platform.name}, cached")
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
    if source is not None and not source.is_local:
        resolved = f" -> {source.resolved_uri}" if source.resolved_uri != source.uri else ""
        rows.append(f"model     {source.uri}{resolved}")
    python = _base_python(result) if plan.base is None else f"Python from the {plan.base.name} lock"
    rows += [
        f"base      {plan.base_image}  ({python}, {plan.platform.name})",
        f"lock      {plan.lock.digest}  ({lock})",
        f"ca        {ca}",
    ]
    if plan.gpu is not None and plan.gpu.device != "cpu":
        cuda = f" {plan.gpu.cuda}" if plan.gpu.cuda else ""
        rows.append(f"device    {plan.gpu.device}{cuda}  ({plan.gpu.reason}; run with --gpus)")
    if plan.local_files:
        rows.append(f"local     {len(plan.local_files)} file(s) installed in the build stage")
    if plan.base is not None:
        rows.insert(-1, f"{plan.base.name:<9} {plan.base.digest}  ({plan.base.lock_file[0]})")
    if result.context is None:
        rows.append(f"run       docker run --rm -p 8080:8080 {plan.tag}")
        if result.log_path:
            rows.append(f"log       {result.log_path}")
    return "\n".join(rows)

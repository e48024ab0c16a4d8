"""Serve the model over HTTP from its own environment (/ping, /health, /version, /invocations,
/openapi.json) — the same server a Docker image runs."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from envbuild.cli.common import add_build_options, add_model, port, positive, prepare
from envbuild.envs.base import SERVE

if TYPE_CHECKING:
    from envbuild.cli.output import Output

HELP = "serve the model over HTTP"


def configure(parser: argparse.ArgumentParser) -> None:
    add_model(parser)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=port, default=8080, help="port (default 8080; 0 = any free)")
    parser.add_argument(
        "--workers", type=positive, help="worker processes (default $ENVBUILD_WORKERS or 1)"
    )
    add_build_options(parser, SERVE)


def run(args: argparse.Namespace, out: Output) -> int:
    prepared = prepare(args, out, SERVE)
    return prepared.environment.serve(
        prepared.model, args.host, args.port, args.workers, streams=out.streams()
    )

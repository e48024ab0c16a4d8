"""Build (or reuse) the model's environment from its lock and say where it is."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from envbuild.cli.common import add_build_options, add_json, add_model, prepare
from envbuild.envs.base import ENV

if TYPE_CHECKING:
    from envbuild.cli.output import Output

HELP = "build or reuse the model's environment"


def configure(parser: argparse.ArgumentParser) -> None:
    add_model(parser)
    add_build_options(parser, ENV)
    parser.add_argument(
        "--print-path",
        action="store_true",
        help="print only the environment's folder (for scripts)",
    )
    add_json(parser)


def run(args: argparse.Namespace, out: Output) -> int:
    prepared = prepare(args, out, ENV)
    env = prepared.environment
    if args.print_path:
        out.result(prepared.to_dict(), str(env.path))
        return 0

    def text() -> str:
        interp = prepared.interpreter
        state = f"built in {env.seconds:.1f} s" if env.built else "reused from the cache"
        lines = [
            f"environment  {env.path}  ({env.kind}, {state})",
            f"python       {interp.version}  {env.python}  ({interp.reason or interp.source})",
        ]
        if env.details.get("conda_lock"):
            lines.append(
                f"conda lock   {env.details['conda_lock']}  ({env.details['conda_lock_source']})"
            )
        lines.append(f"lock         {prepared.lock_path or '-'}  ({prepared.lock_source})")
        return "\n".join(lines)

    out.result(prepared.to_dict(), text)
    return 0

"""Run any command inside the model's environment: `envbuild run MODEL -- python -c ...`."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from envbuild.cli.common import add_build_options, add_model, prepare
from envbuild.envs.base import EXEC

if TYPE_CHECKING:
    from envbuild.cli.output import Output

HELP = "run a command inside the model's environment"


def configure(parser: argparse.ArgumentParser) -> None:
    add_model(parser)
    add_build_options(parser, EXEC)
    parser.add_argument(
        "command",
        nargs="*",
        metavar="-- COMMAND ...",
        help="the command and its arguments, after -- (options before -- are envbuild's)",
    )


def run(args: argparse.Namespace, out: Output) -> int:
    command = list(args.command)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        from envbuild.errors import UsageError

        raise UsageError("no command given: envbuild run MODEL -- COMMAND [ARGS...]")
    prepared = prepare(args, out, EXEC)
    return prepared.environment.exec(command)

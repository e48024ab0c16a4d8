"""Run any command inside the model's environment: `envbuild run MODEL -- python -c ...`."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from envbuild.cli.common import add_build_options, add_model, prepare

if TYPE_CHECKING:
    from envbuild.cli.output import Output

HELP = "run a command inside the model's environment"


def configure(parser: argparse.ArgumentParser) -> None:
    add_model(parser)
    add_build_options(parser)
    parser.add_argument(
        "command",
        nargs=argparse.REMAINDER,
        metavar="-- COMMAND ...",
        help="the command and its arguments, after --",
    )


def run(args: argparse.Namespace, out: Output) -> int:
    from envbuild import proc
    from envbuild.execute import command_argv

    command = list(args.command)
    if command[:1] == ["--"]:
        command = command[1:]
    prepared = prepare(args, out)
    environment = prepared.environment
    proc.replace_process(command_argv(environment, command), env=environment.run_env())
    return 0  # pragma: no cover - replace_process does not return

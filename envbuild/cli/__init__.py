"""The ``envbuild`` command: argument parsing, dispatch and the one place errors become exit codes.

Each sub-command lives in its own module under ``envbuild.cli`` (pipx-style) exposing ``HELP``,
``configure(parser)`` and ``run(args, out) -> int``. Modules import the heavy parts of envbuild
inside ``run`` so that ``envbuild --version`` and ``--help`` start in milliseconds.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import NoReturn

from envbuild.__about__ import __version__

COMMANDS = (
    "inspect",
    "lock",
    "env",
    "predict",
    "serve",
    "run",
    "capture",
    "image",
    "reproduce",
    "environments",
    "check",
    "ci-template",
    "cache",
    "pack",
    "spark-job",
)


def _module(name: str):
    return importlib.import_module(f"envbuild.cli.{name.replace('-', '_')}_cmd")


class Parser(argparse.ArgumentParser):
    """argparse, but a bad command line is a UsageError (exit 2): one line, or one JSON object
    under ``--json``, like every other error."""

    def error(self, message: str) -> NoReturn:
        from envbuild.errors import UsageError

        raise UsageError(message, hint=f"see `{self.prog} --help`")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="envbuild",
        description="Rebuild an MLflow model's environment exactly and run the model in it.",
    )
    parser.add_argument("--version", action="version", version=f"envbuild {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="show tracebacks and subprocess commands"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module = _module(name)
        cmd = sub.add_parser(name, help=module.HELP, description=module.__doc__)
        cmd.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
        )
        module.configure(cmd)
        cmd.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    from envbuild.cli.output import Output

    words = list(sys.argv[1:] if argv is None else argv)
    cut = words.index("--") if "--" in words else len(words)  # `run MODEL -- CMD --json`
    out = Output(json_mode="--json" in words[:cut], debug="--debug" in words[:cut])
    parser = build_parser()

    def command() -> int:
        # `envbuild run MODEL [OPTIONS] -- COMMAND ...`: what follows `--` is the command's,
        # options before it are envbuild's
        args = parser.parse_args(words[:cut])
        if cut < len(words) and hasattr(args, "command"):
            args.command = words[cut + 1 :]
        elif cut < len(words):
            parser.error(f"unexpected arguments after --: {' '.join(words[cut + 1 :])}")
        if not getattr(args, "command", None):
            parser.print_help(sys.stderr)
            return 2
        out.debug = bool(args.debug)
        result: int = args._run(args, out)
        return result

    return out.guard(command)


def exit_process(code: int) -> None:
    """End the process with ``code``.

    Once py-rattler has run, the interpreter's own shutdown is skipped (``os._exit`` after
    flushing the standard streams): py-rattler 0.28 runs its fetches on a tokio runtime, and a
    fetch still in flight when the interpreter finalizes (after a failed solve, the other
    subdir's download) crashes the process (SIGSEGV/SIGABRT in a runtime thread, no Python
    frame; about one exit in four under load, reproduced with py-rattler alone), which would
    turn a one-line exit 3 into a crash. The race is pyo3-async-runtimes' (its issue #40);
    nothing envbuild needs happens at shutdown (files are closed, temporary folders removed,
    locks released by their context managers).
    """
    if "rattler" in sys.modules:
        import contextlib
        import os

        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        os._exit(code)
    sys.exit(code)


def entry() -> None:  # pragma: no cover - thin wrapper for the console script
    exit_process(main())

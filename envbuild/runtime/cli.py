"""The runner's command line: ``predict``, ``serve``, ``stream``, ``info``; every error is one line
on stderr.

Exit codes: 0 success, 1 a bug in the runtime, 2 bad input or usage (a bad option value, a port in
use), 5 the model failed to load or to predict, 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from typing import NoReturn, Sequence

from .errors import (
    EXIT_BAD_INPUT,
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    RunnerError,
    describe_exception,
    one_line,
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        sys.stderr.write("error: %s\n" % message)
        sys.exit(EXIT_BAD_INPUT)


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("%r is not a whole number" % text) from None
    if value < 1:
        raise argparse.ArgumentTypeError("%s must be at least 1" % text)
    return value


def port_number(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("%r is not a port number" % text) from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError("%s is not a port number (0-65535; 0 picks one)" % text)
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="runner.py", description="Run an MLflow model in this environment.")
    commands = parser.add_subparsers(dest="command", metavar="{predict,serve,stream,info}")
    commands.required = True

    predict = commands.add_parser("predict", help="score a JSON or CSV input")
    predict.add_argument("--model", required=True, help="the model folder (holds MLmodel)")
    predict.add_argument("--input", default="-", help="input file, or - for stdin (default)")
    predict.add_argument(
        "--output",
        default="-",
        help="output file (replaced atomically), device or FIFO; - for stdout (default)",
    )
    predict.add_argument(
        "--content-type",
        choices=("json", "csv"),
        default=None,
        help="input format (default: csv for *.csv input files, else json)",
    )
    predict.add_argument(
        "--chunk-rows",
        type=positive_int,
        default=None,
        help="score CSV input N rows at a time, in constant memory",
    )

    serve = commands.add_parser("serve", help="serve the model over HTTP")
    serve.add_argument("--model", required=True)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=port_number, default=8080, help="0 picks a free port")
    serve.add_argument(
        "--workers",
        type=positive_int,
        default=None,
        help="worker processes (default: $ENVBUILD_WORKERS, else 1)",
    )

    stream = commands.add_parser(
        "stream", help="load the model once, then score framed batches from stdin (stream.py)"
    )
    stream.add_argument("--model", required=True)

    info = commands.add_parser("info", help="describe this environment as JSON")
    info.add_argument("--model", default=None)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from .output import claim_stdout

    args = build_parser().parse_args(argv)
    debug = os.environ.get("ENVBUILD_DEBUG") == "1"
    try:
        stdout_fd = claim_stdout()
        from . import commands

        if args.command == "predict":
            return commands.cmd_predict(args, stdout_fd)
        if args.command == "info":
            return commands.cmd_info(args, stdout_fd)
        if args.command == "stream":
            from .stream import cmd_stream

            return cmd_stream(args.model, stdout_fd)
        return commands.cmd_serve(args)
    except RunnerError as exc:
        if debug:
            traceback.print_exc()
        sys.stderr.write("error: %s\n" % one_line(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_FAILURE
    except Exception as exc:
        if debug:
            traceback.print_exc()
        sys.stderr.write("error: unexpected failure in runner: %s\n" % describe_exception(exc))
        return EXIT_FAILURE
    finally:
        sys.stderr.flush()

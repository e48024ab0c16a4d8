"""Score an input file with the model, in its own environment; predictions go to stdout or -o."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from envbuild.cli.common import add_build_options, add_model, prepare
from envbuild.envs.base import PREDICT

if TYPE_CHECKING:
    from envbuild.cli.output import Output

HELP = "predict on an input file (default: the model's input example)"


def configure(parser: argparse.ArgumentParser) -> None:
    add_model(parser)
    parser.add_argument(
        "-i",
        "--input",
        type=Path,
        metavar="FILE",
        help="JSON (MLflow's serving format) or CSV; - for stdin. Default: the "
        "model's serving input example, else its input example",
    )
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        metavar="FILE",
        help='write {"predictions": ...} here instead of stdout',
    )
    parser.add_argument(
        "--content-type", choices=("json", "csv"), help="input format (default: from the file name)"
    )
    parser.add_argument(
        "--chunk-rows",
        type=int,
        metavar="N",
        help="score CSV input N rows at a time (constant memory)",
    )
    add_build_options(parser, PREDICT)


def run(args: argparse.Namespace, out: Output) -> int:
    from envbuild.inputs import model_input

    prepared = prepare(args, out, PREDICT)
    with model_input(prepared.model, args.input, args.content_type) as data:
        return prepared.environment.predict(
            prepared.model,
            data,
            output_path=args.output,
            chunk_rows=args.chunk_rows,
            streams=out.streams(),
        )

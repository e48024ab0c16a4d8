"""Score an input file with the model, in its own environment; predictions go to stdout or -o."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from envbuild.cli.common import add_build_options, add_json, add_model, positive, prepare
from envbuild.envs.base import PREDICT

if TYPE_CHECKING:
    from envbuild.cli.output import Output
    from envbuild.inputs import ModelInput
    from envbuild.prepare import Prepared

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
        type=positive,
        metavar="N",
        help="score CSV input N rows at a time (constant memory)",
    )
    add_build_options(parser, PREDICT)
    add_json(parser)


def run(args: argparse.Namespace, out: Output) -> int:
    from envbuild.inputs import model_input

    prepared = prepare(args, out, PREDICT)
    with model_input(prepared.model, args.input, args.content_type) as data:
        if out.json_mode:
            return _predict_json(args, out, prepared, data)
        return prepared.environment.predict(
            prepared.model,
            data,
            output_path=args.output,
            chunk_rows=args.chunk_rows,
            streams=out.streams(),
        )


def _predict_json(
    args: argparse.Namespace, out: Output, prepared: Prepared, data: ModelInput
) -> int:
    """``--json``: one object with the predictions (or where they were written) and what ran;
    the model's own errors come back as the error object."""
    import json
    import time

    from envbuild.files import temporary_directory, write_output

    started = time.monotonic()
    with temporary_directory("predict") as folder:
        produced = folder / "predictions.json"
        prepared.environment.predict_to_file(prepared.model, data, produced)
        raw = produced.read_bytes()
    seconds = time.monotonic() - started
    result: dict[str, object] = {
        **prepared.to_dict(),
        "input": str(data.path),
        "seconds": round(seconds, 3),
    }
    if args.output is not None:
        write_output(args.output, raw)
        result["output"] = str(args.output)
    else:
        result["predictions"] = json.loads(raw).get("predictions")
    out.result(result)
    return 0

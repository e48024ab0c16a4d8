"""Score a table on a Spark cluster without writing a driver: pack the model's environment and
its folder, and print (or, with --run, run) the spark-submit command that ships both with
--archives and runs envbuild's small driver script (runtime/spark_job.py). Spark does the
distribution; the executors need PySpark, pandas and pyarrow, never envbuild."""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from envbuild.cli.common import add_json, add_model

if TYPE_CHECKING:
    from envbuild.cli.output import Output

HELP = "print or run the spark-submit command scoring a table with the packed environment"
MASTERS = ("local", "yarn", "k8s://", "spark://")
_MAX_PLAN = 16_000  # a command line stays far below Linux's per-argument limit


def master(text: str) -> str:
    if not text.startswith(MASTERS):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a Spark master (local[N], yarn, k8s://HOST:PORT, spark://HOST:PORT)"
        )
    return text


def configure(parser: argparse.ArgumentParser) -> None:
    add_model(parser)
    # required, but checked in run(): argparse's own check would stop the MODEL-only parse that
    # every command taking MODEL must accept (its source options)
    parser.add_argument("--input", metavar="PATH", help="the table to score (required)")
    parser.add_argument(
        "--output", metavar="PATH", help="where the scored table is written (required)"
    )
    parser.add_argument(
        "--format", choices=("parquet", "csv"), default="parquet", help="input and output format"
    )
    parser.add_argument(
        "--master", type=master, default="local[*]", help="local[N], yarn, k8s://..., spark://..."
    )
    parser.add_argument(
        "--archive", type=Path, metavar="FILE.tar.gz", help="an `envbuild pack` archive to ship"
    )
    parser.add_argument(
        "--prediction-col", default="prediction", help="name of the prediction column"
    )
    parser.add_argument(
        "--mode", default="errorifexists", help="save mode: errorifexists (default), overwrite"
    )
    parser.add_argument(
        "--conf", action="append", default=[], metavar="KEY=VALUE", help="passed to spark-submit"
    )
    parser.add_argument(
        "--spark-submit",
        metavar="PATH",
        help="the spark-submit to use (default: on PATH, else PySpark's own)",
    )
    parser.add_argument("--run", action="store_true", help="run the command instead of printing")
    add_json(parser)


def _spark_submit(given: str | None) -> str:
    if given:
        return given
    found = shutil.which("spark-submit")
    if found:
        return found
    try:
        import pyspark
    except ImportError:
        return "spark-submit"
    bundled = Path(pyspark.__file__).parent / "bin" / "spark-submit"
    return str(bundled) if bundled.exists() else "spark-submit"


def command(args: argparse.Namespace, out: Output) -> tuple[list[str], dict[str, object]]:
    from envbuild.cli.common import load_specs
    from envbuild.errors import UsageError
    from envbuild.runtime_files import RUNTIME_DIR
    from envbuild.spark import prepare_job

    for option in ("input", "output"):
        if not getattr(args, option):
            raise UsageError(f"--{option} PATH is required", hint="see `envbuild spark-job --help`")
    spec, _ = load_specs(args, out)
    job = prepare_job(spec, args.archive, prediction_col=args.prediction_col)
    plan = dict(job.plan)
    if len(json.dumps(plan)) > _MAX_PLAN:
        plan.pop("mlmodel_json", None)  # the environment reads MLmodel itself (PyYAML, MLflow)
    argv = [_spark_submit(args.spark_submit), "--master", args.master]
    argv += ["--name", f"envbuild-{job.model.path.name}"]
    for item in args.conf:
        if "=" not in item:
            raise UsageError(f"{item!r} is not KEY=VALUE", field="--conf")
        argv += ["--conf", item]
    argv += [
        "--archives",
        f"{job.archive.resolve()}#{job.env_alias},{job.model_archive.resolve()}#{job.model_alias}",
        "--py-files",
        str(RUNTIME_DIR / "spark_worker.py"),
        str(RUNTIME_DIR / "spark_job.py"),
        "--input",
        args.input,
        "--output",
        args.output,
        "--format",
        args.format,
        "--mode",
        args.mode,
        "--plan",
        json.dumps(plan, separators=(",", ":")),
    ]
    return argv, {
        "command": argv,
        "archive": str(job.archive),
        "model_archive": str(job.model_archive),
        "manifest": job.manifest,
        "outputs": job.outputs,
    }


def run(args: argparse.Namespace, out: Output) -> int:
    from envbuild import proc

    argv, result = command(args, out)
    out.clear_progress()
    if args.run:
        code = proc.call(argv)
        if out.json_mode:
            out.result({**result, "exit_code": code})
        return code
    out.result(result, lambda: " \\\n    ".join(shlex.quote(a) for a in argv))
    return 0

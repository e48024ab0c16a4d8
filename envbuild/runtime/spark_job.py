"""The driver script of ``envbuild spark-job``: read ``--input``, score it in the packed
environment, write ``--output``.

Runs under ``spark-submit`` on a machine that may have no envbuild (cluster deploy mode), so,
like ``spark_worker.py`` (shipped beside it with ``--py-files``), it imports only the standard
library, PySpark and that module. The plan (archive aliases, input and output columns) comes as
JSON on the command line, decided by envbuild when it printed the command. Errors are one line
on stderr with envbuild's exit codes: 2 bad input (a missing column, an unreadable archive), 5
the model failed, 8 an archive for another machine.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from typing import Any, Sequence

EXIT_CODES = {"ARCHIVE": 2, "INPUT": 2, "MISMATCH": 8, "START": 5, "MODEL": 5, "DIED": 5}


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="envbuild-spark-job")
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--format", choices=("parquet", "csv"), default="parquet")
    parser.add_argument("--mode", default="errorifexists", help="Spark's save mode")
    parser.add_argument("--plan", required=True, help="JSON, written by envbuild spark-job")
    return parser.parse_args(argv)


def read(spark: Any, args: argparse.Namespace, plan: dict[str, Any]) -> Any:
    if args.format == "parquet":
        return spark.read.parquet(args.input)
    from pyspark.sql import functions as F

    df = spark.read.option("header", True).csv(args.input)
    types = plan.get("input_types") or {}
    return df.select(
        *[
            F.col("`%s`" % c).cast(types[c]).alias(c) if c in types else F.col("`%s`" % c)
            for c in df.columns
        ]
    )


def run(args: argparse.Namespace) -> int:
    from pyspark.sql import SparkSession
    from pyspark.sql.types import DataType, StructField, StructType

    import spark_worker

    plan = json.loads(args.plan)
    spark = SparkSession.builder.getOrCreate()
    df = read(spark, args, plan)
    missing = [name for name in plan.get("required") or [] if name not in df.columns]
    if missing:
        raise spark_worker.ScoringError(
            "INPUT",
            "%s: column %r is missing (the model needs %s)"
            % (args.input, missing[0], ", ".join(plan["required"])),
        )
    plan["inputs"] = [name for name in plan.get("inputs") or [] if name in df.columns]
    check = functools.partial(spark_worker.check_frames, plan=plan)
    spark.range(1, numPartitions=1).mapInPandas(check, "info string").collect()
    fields = [StructField(o["name"], DataType.fromDDL(o["type"]), True) for o in plan["outputs"]]
    schema = StructType(list(df.schema.fields) + fields)
    scored = df.mapInPandas(functools.partial(spark_worker.score_frames, plan=plan), schema)
    writer = scored.write.mode(args.mode)
    if args.format == "csv":
        writer.option("header", True).csv(args.output)
    else:
        writer.parquet(args.output)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    try:
        return run(args)
    except Exception as exc:
        import spark_worker

        found = spark_worker.explain(str(exc))
        if found is None:
            raise
        code, message = found
        sys.stderr.write("error: %s\n" % message)
        return EXIT_CODES.get(code, 5)


if __name__ == "__main__":
    sys.exit(main())

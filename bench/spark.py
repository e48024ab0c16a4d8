"""Benchmark: `envbuild.spark.score` vs `mlflow.pyfunc.spark_udf` on a local Spark session.

    .venv/bin/python bench/spark.py [--rows 200000] [--partitions 4] [--repeat 3]
                                    [--env-manager uv|virtualenv|local] [--quick]

One scikit-learn model (LogisticRegression on iris-like data, saved by MLflow here with its input
example), one DataFrame of ``--rows`` rows in ``--partitions`` partitions, a ``local[2]`` session
whose executors run this interpreter. Times:

* **cold start to the first batch scored**: from nothing cached to one scored row collected.
  envbuild: a fresh ``ENVBUILD_CACHE_DIR`` (lock, environment, ``envbuild pack``, shipping both
  archives, the executor check, the first batch); then again with the archive already packed
  (what every later job on the same lock costs). MLflow: ``spark_udf(..., env_manager=M)`` (which
  builds the model's environment with ``M``) and the first batch;
* **rows per second**, warm: every row scored and dropped (``write.format("noop")``), median of
  ``--repeat`` runs, the model already loaded in each Python worker on both sides.

uv's package cache stays warm for both (no bench measures downloads). ``--env-manager`` defaults
to ``uv`` when the installed MLflow has it, else ``virtualenv``; if MLflow's environment cannot
be built here, the script says so and measures ``env_manager="local"`` (the driver's own
environment: MLflow's fastest case, no isolation at all). Nothing asserts a time.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path


def make_model(folder: Path) -> Path:
    import mlflow.sklearn
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True, as_frame=True)
    model = LogisticRegression(max_iter=500).fit(X, y)
    path = folder / "model"
    mlflow.sklearn.save_model(model, str(path), input_example=X.head(5))
    return path


def frame(spark, rows: int, partitions: int):
    import numpy as np
    import pandas as pd
    from sklearn.datasets import load_iris

    columns = list(load_iris(as_frame=True).data.columns)
    rng = np.random.default_rng(0)
    pdf = pd.DataFrame(rng.uniform(0.1, 7.5, size=(rows, 4)), columns=columns)
    return spark.createDataFrame(pdf).repartition(partitions).cache()


def rows_per_second(df, count: int, repeat: int) -> tuple[float, list[float]]:
    seconds = []
    for _ in range(repeat):
        started = time.monotonic()
        df.write.format("noop").mode("overwrite").save()
        seconds.append(time.monotonic() - started)
    return count / statistics.median(seconds), seconds


def mlflow_env_manager(requested: str | None) -> str:
    if requested:
        return requested
    from mlflow.utils import env_manager

    return "uv" if hasattr(env_manager, "UV") else "virtualenv"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--env-manager", choices=("uv", "virtualenv", "local"))
    parser.add_argument("--quick", action="store_true", help="50k rows, one repeat")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.repeat = 50_000, 1

    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ.setdefault("UV_PYTHON_DOWNLOADS", "never")
    # MLflow's uv/virtualenv managers look for the model's Python on PATH (pyenv's folder here)
    # (and uv itself, installed in this venv)
    os.environ["PATH"] = (
        f"{Path(sys.executable).parent}:{Path(sys.base_prefix) / 'bin'}:{os.environ['PATH']}"
    )
    work = Path(tempfile.mkdtemp(prefix="envbuild-bench-spark-"))
    os.environ["ENVBUILD_CACHE_DIR"] = str(work / "envbuild-cache")
    os.environ["MLFLOW_ENV_ROOT"] = str(work / "mlflow-envs")
    try:
        from pyspark.sql import SparkSession

        import envbuild.spark

        model = make_model(work)
        spark = (
            SparkSession.builder.master("local[2]")
            .config("spark.ui.enabled", "false")
            .config("spark.sql.execution.arrow.maxRecordsPerBatch", "10000")
            .getOrCreate()
        )
        spark.sparkContext.setLogLevel("ERROR")
        df = frame(spark, args.rows, args.partitions)
        df.count()
        columns = df.columns
        results: dict[str, float] = {}

        started = time.monotonic()
        scored = envbuild.spark.score(df, model)
        scored.limit(1).collect()
        results["envbuild cold (pack + ship + first batch)"] = time.monotonic() - started
        archive = envbuild.spark.prepare_job(model).archive
        kept = work / archive.name
        shutil.copyfile(archive, kept)
        shutil.rmtree(work / "envbuild-cache")

        spark.stop()
        spark = (
            SparkSession.builder.master("local[2]")
            .config("spark.ui.enabled", "false")
            .config("spark.sql.execution.arrow.maxRecordsPerBatch", "10000")
            .getOrCreate()
        )
        spark.sparkContext.setLogLevel("ERROR")
        df = frame(spark, args.rows, args.partitions)
        df.count()
        started = time.monotonic()
        scored = envbuild.spark.score(df, model, archive=kept)
        scored.limit(1).collect()
        results["envbuild packed archive (ship + first batch)"] = time.monotonic() - started
        envbuild_rate, envbuild_runs = rows_per_second(scored, args.rows, args.repeat)

        import mlflow.pyfunc
        from pyspark.sql import functions as F

        manager = mlflow_env_manager(args.env_manager)
        note = ""
        started = time.monotonic()
        try:
            udf = mlflow.pyfunc.spark_udf(
                spark, str(model), result_type="long", env_manager=manager
            )
            theirs = df.withColumn("prediction", udf(*[F.col(f"`{c}`") for c in columns]))
            theirs.limit(1).collect()
        except Exception as exc:
            note = f"env_manager={manager} failed here ({type(exc).__name__}: {str(exc).splitlines()[0][:160]}); measured env_manager=local"
            manager = "local"
            started = time.monotonic()
            udf = mlflow.pyfunc.spark_udf(
                spark, str(model), result_type="long", env_manager="local"
            )
            theirs = df.withColumn("prediction", udf(*[F.col(f"`{c}`") for c in columns]))
            theirs.limit(1).collect()
        results[f"mlflow spark_udf env_manager={manager} (build + first batch)"] = (
            time.monotonic() - started
        )
        mlflow_rate, mlflow_runs = rows_per_second(theirs, args.rows, args.repeat)

        print(f"rows {args.rows}, partitions {args.partitions}, local[2], repeat {args.repeat}")
        if note:
            print(f"note: {note}")
        print("\ncold start to the first batch scored (s)")
        for name, seconds in results.items():
            print(f"  {name:<58} {seconds:8.1f}")
        print("\nwarm throughput (rows/s, median)")
        print(
            f"  {'envbuild.spark.score':<58} {envbuild_rate:10.0f}  runs {[round(s, 2) for s in envbuild_runs]}"
        )
        print(
            f"  {'mlflow spark_udf env_manager=' + manager:<58} {mlflow_rate:10.0f}  runs {[round(s, 2) for s in mlflow_runs]}"
        )
        print("\nratios")
        print(f"  throughput envbuild / mlflow                 {envbuild_rate / mlflow_rate:6.2f}x")
        names = list(results)
        print(
            f"  cold start mlflow / envbuild (cold)          {results[names[2]] / results[names[0]]:6.2f}x"
        )
        print(
            f"  cold start mlflow / envbuild (packed)        {results[names[2]] / results[names[1]]:6.2f}x"
        )
        spark.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

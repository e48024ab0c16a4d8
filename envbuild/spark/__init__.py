"""Batch scoring on Spark in the model's packed environment (the extra ``envbuild[spark]``).

::

    import envbuild.spark
    scored = envbuild.spark.score(df, "model/")            # df + a "prediction" column
    predict = envbuild.spark.predict_udf(spark, "model/")  # for withColumn and SQL
    df.withColumn("p", predict("a", "b"))
    spark.udf.register("predict", predict)                 # SELECT predict(a, b) FROM t

How: the driver packs the model's environment once (``envbuild pack``, cached; or give
``archive=``), ships it and the model folder with Spark's own mechanism
(``SparkContext.addArchive(FILE#ALIAS)``, what ``--archives`` does), and maps each partition's
Arrow batches (``mapInPandas`` / a pandas UDF) through the packed interpreter running the runner's
``stream`` command, started once per Python worker and reused for every batch and task after it.
The executors' own Python needs PySpark, pandas and pyarrow only: the worker code
(``runtime/spark_worker.py``) is shipped by value, envbuild is never imported there.

Before returning, ``score`` and ``predict_udf`` check the archive on the driver (readable,
complete, the model's Python) and on an executor (unpacked, the executor's platform and C
library, the model loads): a mismatch is one line (exit 8 in ``spark-job``), not a failed stage.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from envbuild.errors import (
    ArchiveError,
    ArchiveMismatch,
    EnvbuildError,
    InputDataError,
    MissingExtra,
    ModelRunError,
    UsageError,
)

if TYPE_CHECKING:
    from envbuild.model import ModelSpec

__all__ = ["SparkJob", "explain", "predict_udf", "prepare_job", "probe", "score", "worker"]

DEFAULT_TIMEOUT = 300.0
WORKER_MODULE = "_envbuild_spark_worker"
_ERRORS: dict[str, type[EnvbuildError]] = {
    "ARCHIVE": ArchiveError,
    "MISMATCH": ArchiveMismatch,
    "INPUT": InputDataError,
    "START": ModelRunError,
    "MODEL": ModelRunError,
    "DIED": ModelRunError,
}
_SHIPPED: set[tuple[str, str]] = set()
_VERIFIED: dict[tuple[str, int, int], dict[str, Any]] = {}


def worker() -> ModuleType:
    """``runtime/spark_worker.py``, loaded by path under a private name and registered with
    PySpark's cloudpickle to be pickled by value (executors have no envbuild to import)."""
    module = sys.modules.get(WORKER_MODULE)
    if module is None:
        from envbuild.runtime_files import RUNTIME_DIR

        spec = importlib.util.spec_from_file_location(
            WORKER_MODULE, RUNTIME_DIR / "spark_worker.py"
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[WORKER_MODULE] = module
        spec.loader.exec_module(module)
        _pyspark().cloudpickle.register_pickle_by_value(module)
    return module


def _pyspark() -> Any:
    try:
        import pyspark
        import pyspark.cloudpickle
    except ImportError:
        raise MissingExtra(
            "envbuild.spark needs PySpark", hint="pip install 'envbuild[spark]'"
        ) from None
    return pyspark


@dataclass(frozen=True)
class SparkJob:
    """What the executors need, decided on the driver: the archives' aliases and the plan."""

    model: ModelSpec
    archive: Path
    manifest: dict[str, Any]
    model_archive: Path
    plan: dict[str, Any]

    @property
    def outputs(self) -> list[dict[str, str]]:
        return list(self.plan["outputs"])

    @property
    def env_alias(self) -> str:
        return str(self.plan["env"])

    @property
    def model_alias(self) -> str:
        return str(self.plan["model"])


def explain(exc: BaseException) -> EnvbuildError | None:
    """The envbuild error inside a Spark failure (PythonException, Py4JJavaError), as the one-line
    error it is, or None when the failure is not envbuild's."""
    found = worker().explain(str(exc))
    if found is None:
        return None
    code, message = found
    return _ERRORS.get(code, ModelRunError)(message)


def _verified(archive: Path) -> dict[str, Any]:
    """The archive's manifest after reading it through once (per file version and process)."""
    from envbuild.pack import verify_archive

    try:
        st = archive.stat()
    except OSError:
        raise ArchiveError("no such file", path=archive) from None
    key = (str(archive.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _VERIFIED:
        _VERIFIED[key] = verify_archive(archive)
    return _VERIFIED[key]


def prepare_job(
    model: str | Path | ModelSpec,
    archive: str | Path | None = None,
    *,
    result_type: Any = None,
    env_manager_timeout: float = DEFAULT_TIMEOUT,
    prediction_col: str = "prediction",
) -> SparkJob:
    """Load the model, pack (or check) its environment and archive the model folder: everything
    a job needs before Spark is involved (``envbuild spark-job`` uses it too)."""
    from envbuild.envspec import read_env
    from envbuild.model import ModelSpec, load_model
    from envbuild.pack import pack
    from envbuild.pack.model import model_archive
    from envbuild.runtime_files import mlmodel_variables
    from envbuild.spark.types import input_columns, input_types, result_outputs, signature_outputs

    spec = model if isinstance(model, ModelSpec) else load_model(model)
    env = read_env(spec)
    if archive is None:  # envbuild's own cached archive, published whole: no read-through
        from envbuild.pack import read_manifest

        path = pack(spec, env).cached
        manifest = read_manifest(path)
    else:
        path = Path(archive)
        manifest = _verified(path)
    _check_model_python(spec, env, manifest, path)
    model_tar, digest = model_archive(spec.path)
    signature = spec.signature
    required, optional = input_columns(signature.inputs if signature else None)
    if result_type is not None:
        outputs = result_outputs(result_type, prediction_col)
    else:
        outputs = signature_outputs(signature.outputs if signature else None, prediction_col)
    identity = hashlib.sha256(
        json.dumps(manifest, sort_keys=True).encode() + str(path.stat().st_size).encode()
    ).hexdigest()[:16]
    plan = {
        "env": f"envbuild-env-{identity}",
        "model": "envbuild-model-" + digest.removeprefix("sha256:")[:16],
        "expected": {"lock": manifest["lock"]["digest"], "platform": manifest["platform"]},
        "inputs": required + optional,
        "required": required,
        "input_types": input_types(signature.inputs if signature else None),
        "outputs": outputs,
        "struct": len(outputs) > 1,
        "timeout": float(env_manager_timeout),
        "mlmodel_json": mlmodel_variables(spec).get("ENVBUILD_MLMODEL_JSON"),
    }
    return SparkJob(spec, path, manifest, model_tar, plan)


def _check_model_python(spec: ModelSpec, env: Any, manifest: dict[str, Any], path: Path) -> None:
    packed = str(manifest.get("python", {}).get("version", ""))
    wanted = env.python.version if env.python is not None else None
    if wanted and ".".join(packed.split(".")[:2]) != ".".join(str(wanted).split(".")[:2]):
        raise ArchiveMismatch(
            f"the archive holds Python {packed}; the model {spec.path.name} needs Python {wanted}",
            path=path,
            hint=f"pack this model's environment: envbuild pack {spec.path}",
        )


def _ship(spark: Any, job: SparkJob) -> None:
    """Add both archives to the session once (``SparkContext.addArchive``)."""
    try:
        context = spark.sparkContext
    except Exception:  # Spark Connect sessions have no SparkContext
        raise UsageError(
            "envbuild.spark needs a classic Spark session (SparkContext.addArchive); this one "
            "has no SparkContext (Spark Connect?)",
            hint="use envbuild spark-job, or a session from SparkSession.builder without remote()",
        ) from None
    for path, alias in ((job.archive, job.env_alias), (job.model_archive, job.model_alias)):
        key = (str(context.applicationId), alias)
        if key not in _SHIPPED:
            context.addArchive(f"{Path(path).resolve()}#{alias}")
            _SHIPPED.add(key)


def _translated(exc: Exception) -> Exception:
    return explain(exc) or exc


def _check_executors(spark: Any, job: SparkJob) -> dict[str, Any]:
    """One task on an executor: the archive unpacked, suited to it, the model loaded (and left
    loaded: that worker's later batches reuse the runner)."""
    body = functools.partial(worker().check_frames, plan=job.plan)
    try:
        rows = spark.range(1, numPartitions=1).mapInPandas(body, "info string").collect()
    except Exception as exc:
        raise _translated(exc) from None
    info: dict[str, Any] = json.loads(rows[0]["info"])
    return info


def _output_schema(outputs: list[dict[str, str]]) -> list[Any]:
    from pyspark.sql.types import DataType, StructField

    return [StructField(o["name"], DataType.fromDDL(o["type"]), True) for o in outputs]


def _start(
    df: Any,
    model: str | Path | ModelSpec,
    archive: str | Path | None,
    result_type: Any,
    env_manager_timeout: float,
    prediction_col: str,
    check: bool,
) -> SparkJob:
    worker()
    job = prepare_job(
        model,
        archive,
        result_type=result_type,
        env_manager_timeout=env_manager_timeout,
        prediction_col=prediction_col,
    )
    missing = [name for name in job.plan["required"] if name not in df.columns]
    if missing:
        raise InputDataError(
            f"column {missing[0]!r} is missing from the DataFrame (the model's signature "
            f"needs {', '.join(repr(n) for n in job.plan['required'])})",
            field="df",
        )
    job.plan["inputs"] = [name for name in job.plan["inputs"] if name in df.columns]
    clashes = [o["name"] for o in job.outputs if o["name"] in df.columns]
    if clashes:
        raise UsageError(
            f"the DataFrame already has a column {clashes[0]!r}",
            field="prediction_col",
            hint="pass another prediction_col=",
        )
    _ship(df.sparkSession, job)
    if check:
        _check_executors(df.sparkSession, job)
    return job


def score(
    df: Any,
    model: str | Path | ModelSpec,
    *,
    archive: str | Path | None = None,
    result_type: Any = None,
    env_manager_timeout: float = DEFAULT_TIMEOUT,
    prediction_col: str = "prediction",
    check: bool = True,
) -> Any:
    """``df`` with the model's predictions appended: one column ``prediction_col`` (or one per
    output of a model with several), typed from the output signature or ``result_type``."""
    from pyspark.sql.types import StructType

    job = _start(df, model, archive, result_type, env_manager_timeout, prediction_col, check)
    schema = StructType(list(df.schema.fields) + _output_schema(job.outputs))
    body = functools.partial(worker().score_frames, plan=job.plan)
    return df.mapInPandas(body, schema)


def probe(
    df: Any,
    model: str | Path | ModelSpec,
    *,
    archive: str | Path | None = None,
    env_manager_timeout: float = DEFAULT_TIMEOUT,
) -> list[dict[str, Any]]:
    """Score ``df`` and say, per batch, who did: the runner's interpreter (``executable``,
    ``prefix``, ``python_version``, ``pid``), how many batches it has scored and how many
    runners this worker started. For checking a cluster, and for tests."""
    job = _start(df, model, archive, None, env_manager_timeout, "prediction", False)
    body = functools.partial(worker().describe_frames, plan=job.plan)
    try:
        rows = df.mapInPandas(body, "info string").collect()
    except Exception as exc:
        raise _translated(exc) from None
    return [json.loads(row["info"]) for row in rows]


def predict_udf(
    spark: Any,
    model: str | Path | ModelSpec,
    archive: str | Path | None = None,
    *,
    result_type: Any = None,
    env_manager_timeout: float = DEFAULT_TIMEOUT,
    check: bool = True,
) -> Any:
    """A pandas UDF scoring with the model in its packed environment: call it with the input
    columns in the signature's order (or one struct of them); one output gives its type, several
    a struct. Register it for SQL with ``spark.udf.register(name, udf)``."""
    import pandas as pd
    from pyspark.sql.functions import pandas_udf
    from pyspark.sql.types import DataType, StructType

    worker()
    job = prepare_job(
        model, archive, result_type=result_type, env_manager_timeout=env_manager_timeout
    )
    _ship(spark, job)
    if check:
        _check_executors(spark, job)
    outputs = job.outputs
    if len(outputs) > 1:
        return_type: Any = StructType(_output_schema(outputs))
        returned: type = pd.DataFrame
    else:
        return_type = DataType.fromDDL(outputs[0]["type"])
        returned = pd.Series
    body = worker().udf_function(job.plan)
    body.__annotations__ = {"columns": pd.Series, "return": returned}
    return pandas_udf(body, return_type)

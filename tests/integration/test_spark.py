"""`envbuild pack` and `envbuild.spark` on a real local[2] Spark session.

The model is the scikit-learn one saved by MLflow on Python 3.10 while the driver (and the
executors' own Python) is 3.11: scoring can only work if the executors really run the packed
3.10 interpreter. Archives and unpacked folders are removed at the end of the module.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.conftest import run_cli

pytestmark = [pytest.mark.integration, pytest.mark.network, pytest.mark.slow, pytest.mark.spark]

COLUMNS = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]
ROWS = 3000


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory, isolated_envbuild_cache: Path):
    """A folder for the module's archives; it and the cache's packs are removed afterwards."""
    folder = tmp_path_factory.mktemp("spark-work")
    yield folder
    shutil.rmtree(folder, ignore_errors=True)
    shutil.rmtree(isolated_envbuild_cache / "packs", ignore_errors=True)


@pytest.fixture(scope="module")
def packed(sklearn_310_model: tuple[Path, list], work: Path) -> dict:
    """`envbuild pack` of the 3.10 model, as its --json result."""
    model, _ = sklearn_310_model
    proc = run_cli("pack", str(model), "-o", str(work), "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


TINY_LOADER = """
class Model:
    def predict(self, data):
        rows = data if isinstance(data, list) else [data]
        return [len(row) for row in rows]


def _load_pyfunc(path):
    return Model()
"""


@pytest.fixture(scope="module")
def tiny_model(work: Path) -> Path:
    """A pyfunc model whose loader is in its own code folder: it needs nothing installed, so its
    archive is the interpreter and the runner alone (small enough to build twice)."""
    from tests.conftest import write_model
    from tests.interpreters import python

    version = subprocess.run(
        [str(python("3.11")), "-c", "import platform; print(platform.python_version())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return write_model(
        work / "tiny",
        {
            "MLmodel": f"""
                flavors:
                  python_function:
                    loader_module: tiny_loader
                    code: code
                    python_version: {version}
                    env:
                      virtualenv: python_env.yaml
                """,
            "python_env.yaml": f"python: {version}\nbuild_dependencies: []\ndependencies: []\n",
            "code/tiny_loader.py": TINY_LOADER,
        },
    )


@pytest.fixture(scope="module")
def tiny_packed(tiny_model: Path, work: Path) -> dict:
    proc = run_cli("pack", str(tiny_model), "-o", str(work / "tiny.tar.gz"), "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def spark():
    """A local[2] session whose executors' Python is this one (3.11, no envbuild needed there);
    small Arrow batches so that every partition is several batches."""
    pytest.importorskip("pyspark")
    if shutil.which("java") is None:
        pytest.fail("Java is needed for the Spark tests (.ci/run installs default-jre-headless)")
    os.environ["PYSPARK_PYTHON"] = sys.executable
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[2]")
        .appName("envbuild-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", "250")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="module")
def rows():
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(7)
    return pd.DataFrame(rng.uniform(0.1, 7.5, size=(ROWS, 4)).round(3), columns=COLUMNS)


@pytest.fixture(scope="module")
def expected(sklearn_310_model: tuple[Path, list], rows, work: Path) -> list:
    """What `envbuild predict` says for the same rows."""
    model, _ = sklearn_310_model
    csv = work / "rows.csv"
    rows.to_csv(csv, index=False)
    proc = run_cli("predict", str(model), "-i", str(csv))
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)["predictions"]


def members(path: Path) -> list[tuple[str, int, int, int, str, bytes]]:
    with tarfile.open(path, "r:gz") as tar:
        return [
            (
                m.name,
                m.mode,
                m.mtime,
                m.uid,
                m.linkname,
                tar.extractfile(m).read() if m.isfile() else b"",
            )
            for m in tar
        ]


# ------------------------------------------------------------------------------------------
# the archive


def test_pack_names_and_describes_the_archive(packed: dict) -> None:
    manifest = packed["manifest"]
    archive = Path(packed["archive"])
    digest = manifest["lock"]["digest"].removeprefix("sha256:")[:12]
    assert archive.name == (
        f"envbuild-env-{digest}-py{manifest['python']['version']}-linux-amd64-"
        f"envbuild{manifest['envbuild_version']}.tar.gz"
    )
    assert manifest["python"]["version"].startswith("3.10.")
    assert manifest["platform"] == "linux/amd64" and manifest["libc"].startswith("glibc ")
    assert manifest["bytecode"] == "unchecked-hash"
    with gzip.open(archive) as raw:
        assert raw.read(1)  # readable gzip
    head = archive.read_bytes()[:10]
    assert head[4:8] == b"\0\0\0\0", "the gzip header carries no timestamp"
    with tarfile.open(archive, "r:gz") as tar:
        everything = tar.getmembers()
    names = [m.name for m in everything]
    assert names[0] == "envbuild-pack.json"
    for member in everything:
        assert member.mtime == 315532800 and member.uid == 0 and member.uname == ""
        assert member.mode in (0o644, 0o755, 0o777)
        assert not member.issym() or not member.linkname.startswith("/")
    assert names[1:] == sorted(names[1:])
    assert "bin/python3.10" in names and "envbuild/runtime/runner.py" in names
    assert "lib/python3.10/site-packages/sklearn/__init__.py" in names
    assert not any("/_virtualenv" in n or n.endswith("pyvenv.cfg") for n in names)
    again = run_cli("pack", str(Path(packed["manifest"]["python"]["built_from"])), "--json")
    assert again.returncode == 2  # not a model folder: one line, exit 2
    assert "error" in json.loads(again.stdout)


def test_packing_the_same_lock_twice_gives_the_same_archive(
    tiny_model: Path, tiny_packed: dict, tmp_path: Path
) -> None:
    """A second, independent build (another cache) of the same lock: the same bytes."""
    env = dict(os.environ, ENVBUILD_CACHE_DIR=str(tmp_path / "cache"))
    second = tmp_path / "again.tar.gz"
    proc = run_cli("pack", str(tiny_model), "-o", str(second), "--json", env=env)
    try:
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["built"] is True
        first = Path(tiny_packed["archive"])
        assert members(first) == members(second)
        assert (
            hashlib.sha256(first.read_bytes()).hexdigest()
            == hashlib.sha256(second.read_bytes()).hexdigest()
        )
        reused = run_cli("pack", str(tiny_model), "-o", str(second), "--json", env=env)
        assert json.loads(reused.stdout)["built"] is False
    finally:
        shutil.rmtree(tmp_path, ignore_errors=True)


def test_the_archive_runs_unpacked_elsewhere_on_its_own_interpreter(
    packed: dict, sklearn_310_model: tuple[Path, list], rows, expected: list, work: Path
) -> None:
    """Unpacked with tar alone into another folder, the packed Python predicts what `envbuild
    predict` does, and loads nothing from the interpreter it was copied from."""
    model, _ = sklearn_310_model
    target = work / "elsewhere" / "env"
    target.mkdir(parents=True)
    subprocess.run(["tar", "-xzf", packed["archive"], "-C", str(target)], check=True)
    python = target / "bin" / "python"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(work), "PYTHONDONTWRITEBYTECODE": "1"}
    csv = work / "rows.csv"
    done = subprocess.run(
        [
            str(python),
            str(target / "envbuild/runtime/runner.py"),
            "predict",
            "--model",
            str(model),
            "--input",
            str(csv),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["predictions"] == expected
    original = packed["manifest"]["python"]["built_from"]
    probe = (
        "import json, sys, sysconfig, ssl, sqlite3, ctypes, sklearn.linear_model, pandas;"
        "maps = sorted({l.split()[-1] for l in open('/proc/self/maps') if '/' in l.split()[-1]});"
        "print(json.dumps([sys.prefix, sysconfig.get_config_var('LIBDIR'), maps]))"
    )
    done = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    prefix, libdir, maps = json.loads(done.stdout)
    assert prefix == str(target) and libdir == str(target / "lib")
    outside = [
        m
        for m in maps
        if not m.startswith((str(target), "/usr/lib/", "/lib/", "/lib64/", "/usr/lib64/"))
    ]
    assert not outside, outside
    assert not [m for m in maps if m.startswith(original)]


def test_a_corrupted_archive_is_one_clear_error(packed: dict, work: Path) -> None:
    from envbuild.errors import ArchiveError
    from envbuild.pack import read_manifest, verify_archive

    data = Path(packed["archive"]).read_bytes()
    broken = work / "broken.tar.gz"
    broken.write_bytes(
        data[: len(data) // 2]
        + bytes(b ^ 0xFF for b in data[len(data) // 2 : len(data) // 2 + 4096])
        + data[len(data) // 2 + 4096 :]
    )
    assert read_manifest(broken)["format"] == "envbuild-pack/1"  # the head is intact
    with pytest.raises(ArchiveError, match=r"broken\.tar\.gz: corrupted archive \("):
        verify_archive(broken)
    truncated = work / "truncated.tar.gz"
    truncated.write_bytes(data[: len(data) // 3])
    with pytest.raises(ArchiveError, match="corrupted archive"):
        verify_archive(truncated)
    other = work / "other.tar.gz"
    with tarfile.open(other, "w:gz") as tar:
        tar.addfile(tarfile.TarInfo("README"), io.BytesIO(b""))
    with pytest.raises(ArchiveError, match="not an envbuild archive"):
        read_manifest(other)
    for path in (broken, truncated, other):
        path.unlink()


# ------------------------------------------------------------------------------------------
# scoring on Spark


def test_score_equals_envbuild_predict(spark, sklearn_310_model, packed, rows, expected) -> None:
    import envbuild.spark

    model, _ = sklearn_310_model
    df = spark.createDataFrame(rows.assign(id=range(ROWS))).repartition(6, "id")
    scored = envbuild.spark.score(df, model, archive=packed["archive"])
    assert dict(scored.dtypes)["prediction"] == "bigint"  # the output signature says long
    result = scored.toPandas().sort_values("id").reset_index(drop=True)
    assert result["prediction"].tolist() == expected
    assert result[COLUMNS].round(3).equals(rows[COLUMNS])


def test_executors_run_the_packed_interpreter_once_per_worker(
    spark, sklearn_310_model, packed, rows
) -> None:
    """The probe reports, per batch, the interpreter that scored it: the unpacked 3.10 one, not
    the executors' own 3.11; each Python worker started one runner and reused it across tasks."""
    import envbuild.spark

    model, _ = sklearn_310_model
    df = spark.createDataFrame(rows).repartition(8)
    batches = envbuild.spark.probe(df, model, archive=packed["archive"])
    assert len(batches) >= 8
    for info in batches:
        assert info["python_version"].startswith("3.10.")
        assert info["worker_python"] == sys.executable
        assert re.search(r"/envbuild-env-[0-9a-f]{16}/bin/python3\.10$", info["executable"]), info
        assert info["prefix"] == info["executable"].rsplit("/bin/", 1)[0]
        assert info["runner_starts"] == 1, "the model is loaded once per Python worker"
    workers = {info["worker_pid"] for info in batches}
    runners = {info["pid"] for info in batches}
    assert len(runners) == len(workers) <= 2
    per_partition = max(sum(1 for i in batches if i["partition"] == p) for p in range(8))
    assert max(info["runner_batches"] for info in batches) > per_partition, (
        "a runner served more than one task"
    )


def test_predict_udf_in_sql_and_with_column(
    spark, sklearn_310_model, packed, rows, expected
) -> None:
    from pyspark.sql import functions as F

    import envbuild.spark

    model, _ = sklearn_310_model
    predict = envbuild.spark.predict_udf(spark, model, packed["archive"])
    df = spark.createDataFrame(rows.head(400).assign(id=range(400)))
    with_column = df.withColumn("p", predict(*[F.col(c) for c in COLUMNS])).orderBy("id")
    assert [r["p"] for r in with_column.collect()] == expected[:400]
    spark.udf.register("iris_predict", predict)
    df.createOrReplaceTempView("iris")
    quoted = ", ".join(f"`{c}`" for c in COLUMNS)
    sql = spark.sql(f"SELECT id, iris_predict({quoted}) AS p FROM iris ORDER BY id")
    assert [r["p"] for r in sql.collect()] == expected[:400]


def test_a_missing_column_is_refused_before_scoring(spark, sklearn_310_model, packed, rows) -> None:
    import envbuild.spark
    from envbuild.errors import InputDataError

    model, _ = sklearn_310_model
    df = spark.createDataFrame(rows.drop(columns=["petal width (cm)"]))
    with pytest.raises(InputDataError) as caught:
        envbuild.spark.score(df, model, archive=packed["archive"])
    message = str(caught.value)
    assert "column 'petal width (cm)' is missing from the DataFrame" in message
    assert "\n" not in message


def test_rows_the_model_fails_on_are_named_with_their_partition(
    spark, sklearn_310_model, packed, rows
) -> None:
    from pyspark.sql import functions as F

    import envbuild.spark

    model, _ = sklearn_310_model
    bad = rows.copy()
    bad.loc[1234, "sepal width (cm)"] = float("nan")
    df = spark.createDataFrame(bad.assign(id=range(ROWS))).repartition(3, "id")
    placed = df.withColumn("part", F.spark_partition_id()).toPandas()
    part = int(placed.loc[placed["id"] == 1234, "part"].iloc[0])
    offset = int(placed[placed["part"] == part]["id"].tolist().index(1234))
    scored = envbuild.spark.score(df, model, archive=packed["archive"])
    with pytest.raises(Exception) as caught:
        scored.collect()
    error = envbuild.spark.explain(caught.value)
    assert error is not None, caught.value
    text = str(error)
    assert f"partition {part}, row {offset} (" in text, text
    assert "NaN" in text and "\n" not in text


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"platform": "linux/arm64"}, "this executor is linux/amd64"),
        ({"libc": "glibc 9.99"}, "was built with glibc 9.99; this executor has glibc"),
    ],
)
def test_an_archive_for_another_machine_is_refused_before_scoring(
    spark, tiny_model: Path, tiny_packed: dict, work: Path, change: dict, message: str
) -> None:
    """The manifest says another platform or a newer C library: the executor's check says so,
    as one line (exit 8), before anything is scored."""
    import pandas as pd

    import envbuild.spark
    from envbuild.errors import ArchiveMismatch

    other = work / "other-machine.tar.gz"
    with (
        tarfile.open(tiny_packed["archive"], "r:gz") as tar_in,
        tarfile.open(other, "w:gz") as tar_out,
    ):
        for member in tar_in:
            data = tar_in.extractfile(member).read() if member.isfile() else None
            if member.name == "envbuild-pack.json":
                data = json.dumps({**json.loads(data), **change}).encode()
                member.size = len(data)
            tar_out.addfile(member, io.BytesIO(data) if data is not None else None)
    try:
        df = spark.createDataFrame(pd.DataFrame({"x": [1.0, 2.0]}))
        with pytest.raises(ArchiveMismatch) as caught:
            envbuild.spark.score(df, tiny_model, archive=other)
        assert message in str(caught.value), caught.value
        assert "\n" not in str(caught.value)
        assert caught.value.exit_code == 8
    finally:
        other.unlink()


# ------------------------------------------------------------------------------------------
# spark-submit


def test_spark_job_prints_then_runs_the_spark_submit_command(
    sklearn_310_model, packed, rows, expected, work: Path
) -> None:
    import pandas as pd

    model, _ = sklearn_310_model
    source = work / "job-input.parquet"
    rows.assign(id=range(ROWS)).to_parquet(source)
    target = work / "job-output"
    args = ["spark-job", str(model), "--input", str(source), "--output", str(target)]
    args += ["--master", "local[2]", "--archive", packed["archive"]]
    printed = run_cli(*args)
    assert printed.returncode == 0, printed.stderr
    assert "--archives" in printed.stdout and "spark_worker.py" in printed.stdout
    assert re.search(
        r"#envbuild-env-[0-9a-f]{16},\S+model\.tar\.gz#envbuild-model-", printed.stdout
    )
    env = dict(os.environ, PYSPARK_PYTHON=sys.executable)
    ran = run_cli(*args, "--run", "--conf", "spark.ui.enabled=false", env=env)
    assert ran.returncode == 0, ran.stderr[-3000:]
    result = pd.read_parquet(target).sort_values("id")
    assert result["prediction"].tolist() == expected
    missing = work / "job-missing.parquet"
    rows.drop(columns=["petal width (cm)"]).to_parquet(missing)
    args[3] = str(missing)
    args[5] = str(work / "job-output-2")
    refused = run_cli(*args, "--run", "--conf", "spark.ui.enabled=false", env=env)
    assert refused.returncode == 2, refused.stderr[-3000:]
    # spark-submit merges a Python driver's stderr into its stdout
    line = [x for x in (refused.stdout + refused.stderr).splitlines() if x.startswith("error: ")]
    assert line and "column 'petal width (cm)' is missing" in line[-1], refused.stdout[-3000:]
    shutil.rmtree(target, ignore_errors=True)

"""``envbuild pack --kind conda`` with real py-rattler and the local channel
(tests/integration/conda_channel.py), no network.

What a user relies on: the archive unpacks with ``tar`` alone into any folder, and after its
``envbuild/unpack.py`` (run with the packed Python, with an empty environment) the packed
interpreter predicts what ``envbuild predict --kind conda`` does, with both kinds of conda prefix
placeholders (text, NUL-padded binary) and entry-point shebangs naming the new folder, and
nothing loaded from envbuild's cache; running the script again changes nothing, and after a
move it rewrites for the new place; packing the same locks into another cache (another prefix
path) gives the same bytes; the manifest describes both lock halves; a kind that cannot be
packed is one line listing those that can.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import run_cli, write_model
from tests.integration import conda_channel as channel_fixture
from tests.integration import test_spark as spark_tests
from tests.integration.conda_channel import LocalChannel
from tests.integration.test_conda_kind import CONDA_YAML, EXAMPLE, MLMODEL

pytestmark = [pytest.mark.integration, pytest.mark.slow]

conda_channel = channel_fixture.conda_channel
spark = spark_tests.spark  # the local[2] session

# the test_conda_kind model's loader, without its check of CONDA_PREFIX: an unpacked archive
# runs without any activation
LOADER = """
import envbuild_util
import prefixprobe


class Model:
    def predict(self, model_input, params=None):
        bonus = float(envbuild_util.VERSION)
        return [row["a"] * row["b"] + bonus for row in model_input]


def _load_pyfunc(path):
    probe = prefixprobe.probe()
    assert probe["binary"]["content"] and probe["text"]["content"], probe
    return Model()
"""
CLEAN = {"PATH": "/usr/bin:/bin"}


@pytest.fixture(scope="module", autouse=True)
def isolated_rattler_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("rattler-cache")
    saved = os.environ.get("RATTLER_CACHE_DIR")
    os.environ["RATTLER_CACHE_DIR"] = str(path)
    yield path
    if saved is None:
        os.environ.pop("RATTLER_CACHE_DIR", None)
    else:
        os.environ["RATTLER_CACHE_DIR"] = saved


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory, isolated_envbuild_cache: Path):
    folder = tmp_path_factory.mktemp("conda-pack")
    yield folder
    shutil.rmtree(folder, ignore_errors=True)
    shutil.rmtree(isolated_envbuild_cache / "packs", ignore_errors=True)


@pytest.fixture(scope="module")
def model(conda_channel: LocalChannel, work: Path) -> Path:
    conda_yaml = CONDA_YAML.replace("- pip\n", "- pip\n- envbuild-greet\n")
    folder = write_model(
        work / "model",
        {
            "MLmodel": MLMODEL,
            "conda.yaml": conda_yaml.format(channel=conda_channel.url),
            "code/conda_loader.py": LOADER,
        },
    )
    (work / "input.json").write_text(json.dumps(EXAMPLE))
    return folder


@pytest.fixture(scope="module")
def built(model: Path) -> dict:
    """``envbuild env --kind conda``: the environment the archive is made of."""
    done = run_cli("env", str(model), "--kind", "conda", "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def packed(model: Path, built: dict, work: Path) -> dict:
    done = run_cli("pack", str(model), "--kind", "conda", "-o", str(work), "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def expected(model: Path, work: Path) -> list:
    done = run_cli("predict", str(model), "--kind", "conda", "-i", str(work / "input.json"))
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["predictions"]


def unpack(archive: Path, folder: Path) -> subprocess.CompletedProcess[str]:
    """``tar -xzf`` into ``folder``, then the archive's own relocation script."""
    folder.mkdir(parents=True)
    subprocess.run(["tar", "-xzf", str(archive), "-C", str(folder)], check=True)
    return relocate(folder)


def relocate(folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(folder / "bin/python"), str(folder / "envbuild/unpack.py")],
        capture_output=True,
        text=True,
        env=CLEAN,
        check=False,
    )


def predict(folder: Path, model: Path, rows: Path) -> subprocess.CompletedProcess[str]:
    runner = folder / "envbuild/runtime/runner.py"
    return subprocess.run(
        [
            str(folder / "bin/python"),
            str(runner),
            "predict",
            "--model",
            str(model),
            "--input",
            str(rows),
        ],
        capture_output=True,
        text=True,
        env=CLEAN,
        cwd=folder,
        check=False,
    )


def contents(archive: Path) -> dict[str, tuple[int, int, str, str]]:
    with tarfile.open(archive, "r:gz") as tar:
        out = {}
        for m in tar:
            handle = tar.extractfile(m) if m.isfile() else None
            data = hashlib.sha256(handle.read()).hexdigest() if handle else ""
            out[m.name] = (m.mode, m.mtime, m.linkname, data)
        return out


def test_the_archive_runs_from_any_folder_with_tar_and_its_own_script(
    packed: dict, built: dict, model: Path, expected: list, tmp_path: Path
) -> None:
    """Copied elsewhere and unpacked into two folders of different lengths: both predict what
    `envbuild predict --kind conda` does; the build prefix is nowhere in them."""
    archive = tmp_path / "copy" / "env.tar.gz"
    archive.parent.mkdir()
    shutil.copyfile(packed["archive"], archive)
    rows = tmp_path / "input.json"
    rows.write_text(json.dumps(EXAMPLE))
    prefix = built["environment"]["path"].encode()
    assert expected == [1 * 2.5 + 0.2, 3 * -1 + 0.2]
    for folder in (tmp_path / "a", tmp_path / "a-much-longer-folder" / "for" / "the-env"):
        first = unpack(archive, folder)
        assert first.returncode == 0, first.stderr
        manifest = json.loads((folder / "envbuild-pack.json").read_text())
        count = manifest["relocate"]["text"] + manifest["relocate"]["binary"]
        assert first.stdout == f"envbuild-unpack: {folder}: {count} files rewritten\n"
        again = relocate(folder)  # idempotent
        assert again.returncode == 0 and again.stdout.endswith(": 0 files rewritten\n")
        done = predict(folder, model, rows)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["predictions"] == expected
        for path in folder.rglob("*"):
            if path.is_file() and not path.is_symlink():
                assert prefix not in path.read_bytes(), path
        greet = subprocess.run(
            [str(folder / "bin/envbuild-greet")], capture_output=True, text=True, env=CLEAN
        )  # an entry point: its shebang names the unpacked Python
        assert greet.returncode == 0 and greet.stdout == "hello from envbuild-greet, util 0.2\n"
        assert (folder / "bin/envbuild-greet").read_text().startswith(f"#!{folder}/bin/python")
    moved = tmp_path / "moved"
    os.rename(tmp_path / "a", moved)
    done = relocate(moved)  # from the recorded prefix to the new one
    assert done.returncode == 0 and not done.stdout.endswith(": 0 files rewritten\n")
    probe = (
        "import json, sys, sysconfig, prefixprobe;"
        "maps = sorted({l.split()[-1] for l in open('/proc/self/maps') if '/' in l.split()[-1]});"
        "print(json.dumps([sys.prefix, sysconfig.get_config_var('LIBDIR'), prefixprobe.probe(),"
        " maps]))"
    )
    done = subprocess.run(
        [str(moved / "bin/python"), "-c", probe], capture_output=True, text=True, env=CLEAN
    )
    assert done.returncode == 0, done.stderr
    sys_prefix, libdir, paths, maps = json.loads(done.stdout)
    assert sys_prefix == str(moved) and libdir == str(moved / "lib")
    data = str(moved / "share/envbuild-prefixprobe/data.txt")
    assert paths["text"]["path"] == data and paths["binary"]["path"] == data
    assert paths["binary"]["content"] == channel_fixture.DATA_TEXT
    outside = [m for m in maps if not m.startswith((str(moved), "/usr/lib", "/lib"))]
    assert not outside, outside


def test_without_the_script_the_interpreter_still_runs_from_anywhere(
    packed: dict, tmp_path: Path
) -> None:
    """What still names the placeholder before unpack.py runs: only the files prefixes.json
    lists; the interpreter and its standard library work from the folder regardless."""
    folder = tmp_path / "raw"
    folder.mkdir()
    subprocess.run(["tar", "-xzf", packed["archive"], "-C", str(folder)], check=True)
    done = subprocess.run(
        [str(folder / "bin/python"), "-c", "import sys, json, ctypes; print(sys.prefix)"],
        capture_output=True,
        text=True,
        env=CLEAN,
    )
    assert done.returncode == 0 and done.stdout.strip() == str(folder), done.stderr
    listed = json.loads((folder / "envbuild/prefixes.json").read_text())["files"]
    modes = {f["path"]: f["mode"] for f in listed}
    so = "lib/python3.10/site-packages/prefixprobe/_probe.cpython-310-x86_64-linux-gnu.so"
    assert modes[so] == "binary"
    assert modes["lib/python3.10/site-packages/prefixprobe/__init__.py"] == "text"
    assert modes["bin/envbuild-greet"] == "text"  # an entry point's shebang
    assert modes["lib/python3.10/_sysconfigdata__linux_x86_64-linux-gnu.py"] == "text"
    for entry in listed:  # each holds its placeholder, as the package shipped it
        assert entry["placeholder"].encode() in (folder / entry["path"]).read_bytes()


def test_packing_the_same_locks_into_another_cache_gives_the_same_bytes(
    model: Path, packed: dict, tmp_path: Path
) -> None:
    """Another cache: another conda prefix path (of another length), rebuilt from scratch."""
    env = dict(os.environ, ENVBUILD_CACHE_DIR=str(tmp_path / "another-cache-folder"))
    second = tmp_path / "again.tar.gz"
    done = run_cli("pack", str(model), "--kind", "conda", "-o", str(second), "--json", env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["built"] is True
    first = Path(packed["archive"])
    one, two = contents(first), contents(second)
    assert [k for k in one if one[k] != two.get(k)] == [] and one.keys() == two.keys()
    assert hashlib.sha256(first.read_bytes()).digest() == (
        hashlib.sha256(second.read_bytes()).digest()
    )
    reused = run_cli("pack", str(model), "--kind", "conda", "-o", str(second), "--json", env=env)
    assert json.loads(reused.stdout)["built"] is False


def test_the_manifest_and_name_describe_both_lock_halves(packed: dict, built: dict) -> None:
    manifest = packed["manifest"]
    environment = built["environment"]
    assert manifest["kind"] == "conda" and manifest["platform"] == "linux/amd64"
    assert manifest["python"]["version"] == "3.10.13"
    assert manifest["python"]["executable"] == "bin/python3.10"
    assert manifest["python"]["built_from"] == "conda package python=3.10.13=0_envbuild_cpython"
    assert manifest["lock"]["digest"] == environment["lock_digest"]  # the pip half
    assert manifest["lock"]["path"] == "envbuild/pylock.toml"
    conda = manifest["conda_lock"]
    assert conda["digest"] == environment["conda_lock_digest"]
    assert conda["platform"] == "linux-64" and conda["path"] == "envbuild/pixi.lock"
    assert conda["packages"] == 6
    from envbuild.__about__ import __version__

    assert manifest["envbuild_version"] == __version__
    assert manifest["relocate"] == {
        "script": "envbuild/unpack.py",
        "files": "envbuild/prefixes.json",
        "text": manifest["relocate"]["text"],
        "binary": 1,
        "max_prefix": 255,
    }
    archive = Path(packed["archive"])
    assert archive.name == (
        f"envbuild-conda-{conda['digest'][7:19]}-{manifest['lock']['digest'][7:19]}-py3.10.13-"
        f"linux-amd64-envbuild{__version__}.tar.gz"
    )
    with tarfile.open(archive, "r:gz") as tar:
        members = tar.getmembers()
        names = [m.name for m in members]
        pixi = tar.extractfile("envbuild/pixi.lock")
        assert pixi is not None
        assert hashlib.sha256(pixi.read()).hexdigest() == conda["digest"][7:]
        meta = tar.extractfile("conda-meta/envbuild-prefixprobe-1.0-py310_0.json")
        assert meta is not None
        record = json.loads(meta.read())
    assert names[0] == "envbuild-pack.json" and names[1:] == sorted(names[1:])
    assert all(m.mtime == 315532800 and m.uid == 0 for m in members)
    for name in (".envbuild-complete.json", "CACHEDIR.TAG", "conda-meta/pylock.envbuild.toml"):
        assert name not in names
    assert "lib/python3.10/json/__pycache__/decoder.cpython-310.pyc" in names
    assert "extracted_package_dir" not in record and "link" not in record
    assert not any("sha256_in_prefix" in p for p in record["paths_data"]["paths"])


@pytest.mark.parametrize("kind", ["local", "shared", "docker"])
def test_a_kind_that_cannot_be_packed_is_one_line(model: Path, kind: str) -> None:
    done = run_cli("pack", str(model), "--kind", kind)
    assert done.returncode == 2
    assert done.stderr.splitlines()[0] == (
        f"error: --kind: the {kind} kind cannot be packed (kinds that can: venv, conda)"
    ), done.stderr


@pytest.mark.spark
def test_spark_scores_with_the_conda_archive_on_its_own_interpreter(
    spark, model: Path, packed: dict, expected: list
) -> None:
    """The executors (this 3.11 Python, no envbuild) unpack the conda archive, run its
    relocation script and score with the packed 3.10 interpreter: the predictions are
    ``envbuild predict --kind conda``'s, and the probe names the unpacked interpreter."""
    import pandas as pd

    import envbuild.spark

    split = EXAMPLE["dataframe_split"]
    rows = pd.DataFrame(split["data"] * 50, columns=split["columns"]).astype("float64")
    df = spark.createDataFrame(rows.assign(id=range(len(rows)))).repartition(3)
    scored = envbuild.spark.score(df, model, archive=packed["archive"], result_type="double")
    result = scored.toPandas().sort_values("id")
    assert result["prediction"].tolist() == expected * 50
    batches = envbuild.spark.probe(df, model, archive=packed["archive"])
    assert batches and all(b["python_version"] == "3.10.13" for b in batches)
    from pyspark import SparkFiles

    unpacked = SparkFiles.getRootDirectory()  # local mode: where executors unpack --archives
    for info in batches:
        assert info["executable"].startswith(unpacked + "/"), info
        assert info["executable"].endswith("/bin/python3.10"), info
        assert info["prefix"] == info["executable"].rsplit("/bin/", 1)[0]
        assert info["worker_python"] != info["executable"]

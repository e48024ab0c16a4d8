"""Fast checks of the parts of `envbuild pack` and `envbuild.spark` that need no network and no
Spark: the archive writer and reader, the runner's `stream` protocol on a model that needs only
pandas, and the executor side's checks and decoding (runtime/spark_worker.py)."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import struct
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from envbuild.errors import ArchiveError
from envbuild.pack.archive import FORMAT, MANIFEST, read_manifest, write_archive
from envbuild.runtime_files import RUNNER, RUNTIME_DIR
from tests.conftest import write_model


def _tree(root: Path) -> Path:
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "python3.10").write_bytes(b"#!/bin/sh\n")
    (root / "bin" / "python3.10").chmod(0o751)
    os.symlink("python3.10", root / "bin" / "python")
    (root / "lib" / "z").mkdir(parents=True)
    (root / "lib" / "z" / "a.py").write_text("x = 1\n")
    (root / "lib" / "b.txt").write_text("b")
    (root / "lib" / "b.txt").chmod(0o600)
    return root


def test_archives_of_the_same_tree_are_the_same_bytes(tmp_path: Path) -> None:
    manifest = {"format": FORMAT, "python": {"executable": "bin/python3.10"}}
    first, second = tmp_path / "1.tar.gz", tmp_path / "2.tar.gz"
    write_archive(_tree(tmp_path / "one"), manifest, first)
    tree = _tree(tmp_path / "two")
    os.utime(tree / "lib" / "b.txt", (1, 1))  # times and source folders do not matter
    write_archive(tree, manifest, second)
    assert (
        hashlib.sha256(first.read_bytes()).digest() == hashlib.sha256(second.read_bytes()).digest()
    )
    with tarfile.open(first) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert next(iter(members)) == MANIFEST
    assert members["bin/python3.10"].mode == 0o755 and members["lib/b.txt"].mode == 0o644
    assert members["bin/python"].issym() and members["bin/python"].linkname == "python3.10"
    assert {m.uid for m in members.values()} == {0}
    assert read_manifest(first) == manifest


def test_what_is_not_an_envbuild_archive_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ArchiveError, match="no such file"):
        read_manifest(tmp_path / "missing.tar.gz")
    text = tmp_path / "text.tar.gz"
    text.write_text("hello")
    with pytest.raises(ArchiveError, match=r"corrupted or not a \.tar\.gz archive"):
        read_manifest(text)
    old = tmp_path / "old.tar.gz"
    write_archive(_tree(tmp_path / "t"), {"format": "envbuild-pack/0"}, old)
    with pytest.raises(ArchiveError, match="unsupported archive format 'envbuild-pack/0'"):
        read_manifest(old)


STREAM_LOADER = """
class Model:
    def predict(self, data):
        if (data["x"] < 0).any():
            raise ValueError("negative x")
        return (data["x"] * 2).tolist()


def _load_pyfunc(path):
    return Model()
"""


def _frame(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">cI", kind, len(payload)) + payload


def _frames(data: bytes) -> list[tuple[bytes, dict]]:
    out = []
    while data:
        kind, length = struct.unpack(">cI", data[:5])
        out.append((kind, json.loads(data[5 : 5 + length])))
        data = data[5 + length :]
    return out


def test_the_runner_streams_predictions_for_framed_batches(tmp_path: Path) -> None:
    pytest.importorskip("pandas")
    model = write_model(
        tmp_path / "model",
        {
            "MLmodel": """
                flavors:
                  python_function:
                    loader_module: stream_loader
                    code: code
                """,
            "code/stream_loader.py": STREAM_LOADER,
        },
    )
    batch = json.dumps({"dataframe_split": {"columns": ["x"], "data": [[1.5], [2]]}}).encode()
    failing = json.dumps({"dataframe_split": {"columns": ["x"], "data": [[-1]]}}).encode()
    stdin = _frame(b"J", batch) + _frame(b"J", b"{not json") + _frame(b"J", failing)
    stdin += _frame(b"J", batch) + _frame(b"Q", b"")
    env = dict(os.environ, ENVBUILD_NO_MLFLOW="1")
    done = subprocess.run(
        [sys.executable, str(RUNNER), "stream", "--model", str(model)],
        input=stdin,
        capture_output=True,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    frames = _frames(done.stdout)
    assert [kind for kind, _ in frames] == [b"H", b"R", b"E", b"E", b"R"]
    hello = frames[0][1]
    assert hello["pid"] > 0 and hello["executable"] and hello["backend"] == "PlainBackend"
    assert frames[1][1] == {"predictions": [3.0, 4.0]}
    assert frames[2][1]["exit_code"] == 2
    assert frames[3][1]["exit_code"] == 5 and "negative x" in frames[3][1]["message"]
    assert frames[4][1] == frames[1][1], "the runner goes on after errors"

    broken = subprocess.run(
        [sys.executable, str(RUNNER), "stream", "--model", str(tmp_path / "nowhere")],
        input=b"",
        capture_output=True,
        check=False,
    )
    assert broken.returncode == 5
    assert _frames(broken.stdout)[0][0] == b"E"
    assert broken.stderr.decode().strip().startswith("error: model folder")


@pytest.fixture(scope="module")
def worker():
    spec = importlib.util.spec_from_file_location(
        "_test_spark_worker", RUNTIME_DIR / "spark_worker.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_worker_errors_are_found_in_spark_exception_text(worker) -> None:
    error = worker.ScoringError("MODEL", "partition 3, row 7 ({}):\nValueError: bad")
    text = f"Traceback (most recent call last):\n  ...\n{type(error).__name__}: {error}\n\tat org.apache"
    assert worker.explain(text) == ("MODEL", "partition 3, row 7 ({}): ValueError: bad")
    assert worker.explain("java.lang.OutOfMemoryError") is None


def test_worker_refuses_an_archive_for_another_machine(worker, tmp_path: Path) -> None:
    folder = tmp_path / "env"
    (folder / "bin").mkdir(parents=True)
    (folder / "bin" / "python3.10").write_text("")
    (folder / "bin" / "python3.10").chmod(0o755)
    manifest = {
        "lock": {"digest": "sha256:1"},
        "platform": worker.host_platform(),
        "libc": worker.host_libc(),
        "python": {"version": "3.10.13", "executable": "bin/python3.10"},
    }
    (folder / MANIFEST).write_text(json.dumps(manifest))
    assert worker.check_environment(str(folder), {"lock": "sha256:1"})["platform"]
    for change, message in (
        (
            {"platform": "linux/riscv"},
            "the archive is for linux/riscv (Python 3.10.13); this executor is",
        ),
        ({"libc": "glibc 99.1"}, "was built with glibc 99.1; this executor has"),
    ):
        (folder / MANIFEST).write_text(json.dumps({**manifest, **change}))
        with pytest.raises(worker.ScoringError, match=r"\[envbuild:MISMATCH\] ") as caught:
            worker.check_environment(str(folder), {"lock": "sha256:1"})
        assert message in str(caught.value)
    (folder / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(worker.ScoringError, match="holds lock sha256:1, not the sha256:2"):
        worker.check_environment(str(folder), {"lock": "sha256:2"})


def test_worker_batches_keep_every_float_digit_and_decode_typed_columns(worker) -> None:
    pd = pytest.importorskip("pandas")
    pdf = pd.DataFrame({"a": [0.1 + 0.2, 1e-300], "b": ["x", "y"]})
    body = json.loads(worker.encode(pdf))
    assert body["dataframe_split"]["data"] == [[0.1 + 0.2, "x"], [1e-300, "y"]]
    long = worker.decode({"predictions": [1, 2]}, 2, [{"name": "prediction", "type": "bigint"}])
    assert str(long[0].dtype) == "Int64" and long[0].tolist() == [1, 2]
    records = [{"a": 1.5, "b": "u"}, {"a": 2.5, "b": "v"}]
    two = worker.decode(
        {"predictions": records},
        2,
        [{"name": "a", "type": "double"}, {"name": "b", "type": "string"}],
    )
    assert two[0].tolist() == [1.5, 2.5] and two[1].tolist() == ["u", "v"]
    with pytest.raises(worker.ScoringError, match="returned 1 predictions for 2 rows"):
        worker.decode({"predictions": [1]}, 2, [{"name": "prediction", "type": "double"}])


def test_run_paths_are_read_from_elf_files_as_patchelf_reads_them(tmp_path: Path) -> None:
    import shutil

    from envbuild.pack.interpreter import elf_runpath

    patchelf = shutil.which("patchelf")
    if patchelf is None:
        pytest.skip("patchelf is not installed")
    binaries = [Path(os.path.realpath(sys.executable)), Path("/bin/ls")]
    for binary in binaries:
        shown = subprocess.run(
            [patchelf, "--print-rpath", str(binary)], capture_output=True, text=True
        )
        assert elf_runpath(binary) == shown.stdout.strip()
    (tmp_path / "short").write_bytes(b"\x7fELF\x02\x01")
    assert elf_runpath(tmp_path / "short") == ""
    assert elf_runpath(tmp_path / "absent") == ""


# ---------------------------------------------------------------------------------------------
# envbuild/unpack.py of conda archives (envbuild.pack.unpack)


def test_binary_prefixes_are_rewritten_in_place_and_back() -> None:
    from envbuild.pack.unpack import RelocationError, replace_binary

    placeholder = b"/opt/placeholder_placehold_placehold"
    data = b"\x7fELF" + placeholder + b"/lib:" + placeholder + b"/share\0\0more\0" + placeholder
    data += b"/x\0tail"
    once = replace_binary(data, placeholder, b"/env/a", len(placeholder))
    assert len(once) == len(data) and b"/env/a/lib:/env/a/share\0" in once
    assert b"/env/a/x\0" in once and once.endswith(b"\0tail") and b"more\0" in once
    moved = replace_binary(once, b"/env/a", b"/somewhere/longer", len(placeholder))
    assert len(moved) == len(data) and b"/somewhere/longer/lib:/somewhere/longer/share\0" in moved
    assert replace_binary(moved, b"/somewhere/longer", placeholder, len(placeholder)) == data
    with pytest.raises(RelocationError, match="longer than the 36"):
        replace_binary(data, placeholder, b"/" + b"x" * 40, len(placeholder))


def test_long_shebangs_take_the_shell_form_and_come_back() -> None:
    from envbuild.pack.unpack import long_shebang, short_shebang

    script = b"#!/" + b"d" * 130 + b"/bin/python3.10\nimport sys\n"
    long = long_shebang(script)
    assert long.startswith(b"#!/bin/sh\n'''exec' \"/ddd") and long.endswith(b"#'''\nimport sys\n")
    assert short_shebang(long) == script
    assert long_shebang(b"#!/short/bin/python\n") == b"#!/short/bin/python\n"
    assert long_shebang(b"#!/" + b"d" * 130 + b"/bin/bash\n").startswith(b"#!/ddd")  # not Python


def test_relocation_is_idempotent_follows_a_move_and_refuses_before_writing(
    tmp_path: Path,
) -> None:
    import runpy

    import envbuild.pack.unpack as script

    placeholder = "/opt/anaconda1anaconda2anaconda3"
    binary_placeholder = "/opt/bld/" + "_placehold" * 20

    def make(root: Path) -> None:
        (root / "envbuild").mkdir(parents=True)
        (root / "lib").mkdir()
        (root / "lib/mod.py").write_text(f"PATH = '{placeholder}/share'\n")
        (root / "lib/prog.so").write_bytes(b"\0" + binary_placeholder.encode() + b"/data\0\0")
        files = [
            {"path": "lib/mod.py", "mode": "text", "placeholder": placeholder},
            {"path": "lib/prog.so", "mode": "binary", "placeholder": binary_placeholder},
        ]
        (root / "envbuild/prefixes.json").write_text(json.dumps({"files": files}))
        shutil.copyfile(str(script.__file__), root / "envbuild/unpack.py")

    root = tmp_path / "env"
    make(root)

    def run(where: Path) -> int:
        namespace = runpy.run_path(str(where / "envbuild/unpack.py"))
        return int(namespace["main"]())

    assert run(root) == 0
    assert (root / "lib/mod.py").read_text() == f"PATH = '{root}/share'\n"
    assert f"{root}/data\0".encode() in (root / "lib/prog.so").read_bytes()
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    assert run(root) == 0  # nothing changes the second time
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before
    moved = tmp_path / "moved"
    root.rename(moved)
    assert run(moved) == 0
    assert (moved / "lib/mod.py").read_text() == f"PATH = '{moved}/share'\n"
    size = len(before[root / "lib/prog.so"])
    assert len((moved / "lib/prog.so").read_bytes()) == size
    deep = tmp_path / ("x" * 220)
    make(deep)
    assert run(deep) == 1  # too long for the binary file: refused, nothing written
    assert (deep / "lib/mod.py").read_text() == f"PATH = '{placeholder}/share'\n"

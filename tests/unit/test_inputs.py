"""The input a model is predicted on: default inputs and when batch scoring starts by itself."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from envbuild import inputs
from envbuild.errors import UsageError
from envbuild.model import load_model
from tests.conftest import write_model


def test_large_csv_is_chunked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inputs, "AUTO_CHUNK_BYTES", 10)
    big = tmp_path / "big.csv"
    big.write_text("a,b\n1,2\n3,4\n")
    small = tmp_path / "small.csv"
    small.write_text("a\n")
    assert inputs.is_large_csv(big, None)
    assert not inputs.is_large_csv(small, None)
    assert not inputs.is_large_csv(big, "json")
    assert inputs.is_large_csv(tmp_path / "big.csv", "csv")
    assert not inputs.is_large_csv(Path("-"), "csv")


def model_with_example(tmp_path: Path, info: str, example: str) -> Path:
    return write_model(
        tmp_path / "m",
        {
            "MLmodel": "flavors:\n  python_function:\n    loader_module: m\n" + info,
            "input_example.json": example,
        },
    )


def test_raw_dataframe_example_is_wrapped_like_mlflow(tmp_path: Path) -> None:
    model = model_with_example(
        tmp_path,
        "saved_input_example_info:\n  artifact_path: input_example.json\n  type: dataframe\n"
        "  pandas_orient: split\n",
        '{"columns": ["x"], "data": [[1.0]]}',
    )
    with inputs.default_input(load_model(model)) as data:
        path, content_type = data.path, data.content_type
        assert content_type == "json"
        assert json.loads(path.read_text()) == {
            "dataframe_split": {"columns": ["x"], "data": [[1.0]]}
        }
    assert not path.exists() and not path.parent.exists()  # nothing left in $TMPDIR


def test_ndarray_example_becomes_inputs(tmp_path: Path) -> None:
    model = model_with_example(
        tmp_path,
        "saved_input_example_info:\n  artifact_path: input_example.json\n  type: ndarray\n",
        "[[1, 2], [3, 4]]",
    )
    with inputs.default_input(load_model(model)) as data:
        assert json.loads(data.path.read_text()) == {"inputs": [[1, 2], [3, 4]]}


def test_serving_example_is_preferred(tmp_path: Path) -> None:
    model = model_with_example(
        tmp_path,
        "saved_input_example_info:\n  artifact_path: input_example.json\n  type: dataframe\n"
        "  serving_input_path: serving_input_example.json\n",
        "{}",
    )
    (model / "serving_input_example.json").write_text('{"inputs": [1]}')
    with inputs.default_input(load_model(model)) as data:
        assert data.path == model / "serving_input_example.json"
    assert data.path.exists()  # the model's own file is never removed


def test_no_example_is_a_usage_error(tmp_path: Path) -> None:
    model = write_model(
        tmp_path / "m", {"MLmodel": "flavors:\n  python_function:\n    loader_module: m\n"}
    )
    with pytest.raises(UsageError, match="-i FILE"), inputs.default_input(load_model(model)):
        pass


def test_temporary_folders_of_killed_processes_are_swept(tmp_path: Path) -> None:
    """A folder whose owner died (SIGKILL runs no cleanup) goes with the next one made."""
    import subprocess
    import sys

    from envbuild.files import temporary_directory

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    stale = tmp_path / f"envbuild-{int(dead.stdout)}-input-abc"
    stale.mkdir()
    (stale / "serving_input.json").write_text("{}")
    foreign = tmp_path / "envbuild-notapid-x"
    foreign.mkdir()
    with temporary_directory("input", folder=tmp_path) as mine:
        assert mine.exists() and not stale.exists()
    assert not mine.exists() and foreign.exists()

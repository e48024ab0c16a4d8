"""Host-side runner plumbing: default inputs and when batch scoring starts by itself."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from envbuild import execute
from envbuild.errors import UsageError
from envbuild.model import load_model
from tests.conftest import write_model


def test_large_csv_is_chunked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(execute, "AUTO_CHUNK_BYTES", 10)
    big = tmp_path / "big.csv"
    big.write_text("a,b\n1,2\n3,4\n")
    small = tmp_path / "small.csv"
    small.write_text("a\n")
    assert execute._is_large_csv(big, None)
    assert not execute._is_large_csv(small, None)
    assert not execute._is_large_csv(big, "json")
    assert execute._is_large_csv(tmp_path / "big.csv", "csv")
    assert not execute._is_large_csv(Path("-"), "csv")


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
    path, content_type = execute.default_input(load_model(model))
    assert content_type == "json"
    assert json.loads(path.read_text()) == {"dataframe_split": {"columns": ["x"], "data": [[1.0]]}}


def test_ndarray_example_becomes_inputs(tmp_path: Path) -> None:
    model = model_with_example(
        tmp_path,
        "saved_input_example_info:\n  artifact_path: input_example.json\n  type: ndarray\n",
        "[[1, 2], [3, 4]]",
    )
    path, _ = execute.default_input(load_model(model))
    assert json.loads(path.read_text()) == {"inputs": [[1, 2], [3, 4]]}


def test_serving_example_is_preferred(tmp_path: Path) -> None:
    model = model_with_example(
        tmp_path,
        "saved_input_example_info:\n  artifact_path: input_example.json\n  type: dataframe\n"
        "  serving_input_path: serving_input_example.json\n",
        "{}",
    )
    (model / "serving_input_example.json").write_text('{"inputs": [1]}')
    path, _ = execute.default_input(load_model(model))
    assert path == model / "serving_input_example.json"


def test_no_example_is_a_usage_error(tmp_path: Path) -> None:
    model = write_model(
        tmp_path / "m", {"MLmodel": "flavors:\n  python_function:\n    loader_module: m\n"}
    )
    with pytest.raises(UsageError, match="-i FILE"):
        execute.default_input(load_model(model))

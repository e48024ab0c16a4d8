"""Stage 1: reading MLmodel into a ModelSpec."""

from __future__ import annotations

from pathlib import Path

import pytest

from envbuild.errors import ModelError, UsageError
from envbuild.model import load_model
from tests.conftest import write_model


def test_reads_every_documented_field(sklearn_model: Path) -> None:
    (sklearn_model / "MLmodel").write_text(
        (sklearn_model / "MLmodel").read_text() + "signature:\n"
        '  inputs: \'[{"name": "x", "type": "double"}]\'\n'
        '  outputs: \'[{"type": "tensor", "tensor-spec": {"dtype": "float64", "shape": [-1]}}]\'\n'
        '  params: \'[{"name": "k", "type": "long", "default": 1, "shape": null}]\'\n'
        "saved_input_example_info:\n  artifact_path: input_example.json\n  type: dataframe\n"
        "  pandas_orient: split\n"
        "metadata:\n  owner: me\n"
        "artifact_path: model\n"
    )
    (sklearn_model / "input_example.json").write_text('{"columns": ["x"], "data": [[1.0]]}')
    spec = load_model(sklearn_model)
    assert spec.flavor_names == ["python_function", "sklearn"]
    assert spec.pyfunc.loader_module == "mlflow.sklearn"
    assert spec.pyfunc.data == "model.pkl"
    assert spec.pyfunc.env.conda == "conda.yaml"
    assert spec.pyfunc.env.virtualenv == "python_env.yaml"
    assert spec.pyfunc.python_version == "3.11.7"
    assert spec.model_uuid == "0123456789abcdef"
    assert spec.run_id == "abc"
    assert spec.mlflow_version == "2.20.0"
    assert spec.utc_time_created == "2024-05-01 10:00:00.000000"
    assert spec.artifact_path == "model"
    assert spec.metadata["owner"] == "me"
    assert spec.signature.inputs[0]["name"] == "x"
    assert spec.signature.params[0]["name"] == "k"
    assert spec.signature.kind == "columns"
    assert spec.input_example.path == sklearn_model / "input_example.json"
    assert spec.input_example.format == "split"


def test_spec_is_immutable(sklearn_model: Path) -> None:
    spec = load_model(sklearn_model)
    with pytest.raises(AttributeError):
        spec.run_id = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        spec.flavors["sklearn"]["pickled_model"] = "other"  # type: ignore[index]


def test_python_version_written_as_float_keeps_its_text(tmp_path: Path) -> None:
    model = write_model(
        tmp_path / "m",
        {
            "MLmodel": "flavors:\n  python_function:\n    loader_module: m\n    python_version: 3.10\n"
        },
    )
    assert load_model(model).pyfunc.python_version == "3.10"


def test_old_string_env_form(tmp_path: Path) -> None:
    model = write_model(
        tmp_path / "m",
        {"MLmodel": "flavors:\n  python_function:\n    loader_module: m\n    env: conda.yml\n"},
    )
    env = load_model(model).pyfunc.env
    assert env.conda == "conda.yml" and env.virtualenv is None


def test_accepts_the_path_of_an_mlmodel_file(sklearn_model: Path) -> None:
    variant = sklearn_model / "MLmodel.variant"
    variant.write_text((sklearn_model / "MLmodel").read_text())
    spec = load_model(variant)
    assert spec.path == sklearn_model.resolve()
    assert spec.mlmodel_path == variant.resolve()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("data", "../outside.pkl"),
        ("code", "/etc"),
        ("model_path", "C:\\\\models\\\\x.pkl"),
        ("data", "sub/../../x"),
    ],
)
def test_paths_leaving_the_model_folder_are_errors(tmp_path: Path, field: str, value: str) -> None:
    model = write_model(
        tmp_path / "m",
        {
            "MLmodel": f"flavors:\n  python_function:\n    loader_module: m\n    {field}: '{value}'\n"
        },
    )
    with pytest.raises(ModelError) as info:
        load_model(model)
    assert info.value.field == f"flavors.python_function.{field}"
    assert info.value.line == 4
    assert "leaves the model folder" in info.value.message


def test_symlink_out_of_the_folder_is_an_error(tmp_path: Path) -> None:
    outside = tmp_path / "secret"
    outside.mkdir()
    model = write_model(
        tmp_path / "m",
        {"MLmodel": "flavors:\n  python_function:\n    loader_module: m\n    data: link/x\n"},
    )
    (model / "link").symlink_to(outside)
    with pytest.raises(ModelError, match="leaves the model folder"):
        load_model(model)


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    model = write_model(tmp_path / "m", {"MLmodel": "flavors:\n  a: 1\nx: y: z\n"})
    with pytest.raises(ModelError) as info:
        load_model(model)
    assert info.value.line == 3
    assert "invalid YAML" in info.value.message


def test_yaml_tags_cannot_construct_objects(tmp_path: Path) -> None:
    model = write_model(
        tmp_path / "m", {"MLmodel": "flavors: !!python/object/apply:os.system ['true']\n"}
    )
    with pytest.raises(ModelError, match="invalid YAML"):
        load_model(model)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty file"),
        ("- a\n- b\n", "found a list"),
        ("run_id: x\n", "flavors"),
        ("flavors: 3\n", "flavors"),
    ],
)
def test_not_a_model(tmp_path: Path, text: str, message: str) -> None:
    model = write_model(tmp_path / "m", {"MLmodel": text})
    with pytest.raises(ModelError, match=message):
        load_model(model)


def test_missing_loader_module(tmp_path: Path) -> None:
    model = write_model(tmp_path / "m", {"MLmodel": "flavors:\n  python_function:\n    data: x\n"})
    with pytest.raises(ModelError) as info:
        load_model(model)
    assert info.value.field == "flavors.python_function.loader_module"


def test_loader_module_must_be_a_module_name(tmp_path: Path) -> None:
    model = write_model(
        tmp_path / "m",
        {"MLmodel": "flavors:\n  python_function:\n    loader_module: 'os; rm -rf /'\n"},
    )
    with pytest.raises(ModelError, match="not a Python module name"):
        load_model(model)


def test_bad_signature_json(tmp_path: Path) -> None:
    model = write_model(
        tmp_path / "m",
        {
            "MLmodel": "flavors:\n  python_function:\n    loader_module: m\nsignature:\n  inputs: '[{'\n"
        },
    )
    with pytest.raises(ModelError) as info:
        load_model(model)
    assert info.value.field == "signature.inputs"


def test_missing_folder_and_missing_mlmodel(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no such model folder"):
        load_model(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="no MLmodel file"):
        load_model(tmp_path / "empty")


def test_uris_are_a_usage_error_for_now(tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        load_model("runs:/abc/model")


def test_missing_input_example_is_a_warning(sklearn_model: Path) -> None:
    (sklearn_model / "MLmodel").write_text(
        (sklearn_model / "MLmodel").read_text()
        + "saved_input_example_info:\n  artifact_path: input_example.json\n  type: dataframe\n"
    )
    spec = load_model(sklearn_model)
    assert spec.input_example.path is None
    assert any("input_example.json is missing" in w for w in spec.warnings)

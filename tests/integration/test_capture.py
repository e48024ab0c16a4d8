"""`envbuild capture` on real MLflow models: what they really import, pinned, and an environment
built from the captured lock that predicts what the model predicted when it was captured.

Models (saved by the real mlflow of this environment, with deliberately incomplete
``pip_requirements`` so that capture has something to add):

* scikit-learn LogisticRegression (``sklearn`` is the module of ``scikit-learn``);
* a custom PythonModel whose ``predict`` imports ``dotenv`` (``python-dotenv``) lazily: loading
  never imports it;
* a PythonModel from a code path that imports ``PIL`` (``pillow``), ``yaml`` (``PyYAML``) and
  ``sklearn``, plus, in a function never called, ``tomli_w`` and a module that is not installed;
* a model whose ``load_context`` raises, and one whose ``predict`` raises.

"Nothing that was not imported" is checked against an oracle computed independently: the
distributions (importlib's ``packages_distributions()``) of every module in ``sys.modules`` after
the runner predicted on the model's input example in a fresh interpreter.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

from tests.conftest import REPO
from tests.interpreters import python as find_python

pytestmark = [pytest.mark.integration, pytest.mark.network, pytest.mark.slow]

RUNNER = REPO / "envbuild" / "runtime" / "runner.py"
UV = Path(sys.executable).parent / "uv"

CODE_MODEL = '''
"""A model shipped as code (code_paths): its imports use module names that are not the
distributions' names."""
import PIL.Image
import yaml
from sklearn.preprocessing import StandardScaler

import mlflow.pyfunc


class ImageStats(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        scaled = StandardScaler().fit_transform(model_input[["size"]]).ravel()
        out = []
        for size, z in zip(model_input["size"], scaled):
            image = PIL.Image.new("L", (int(size), int(size)), color=int(size) % 256)
            out.append(yaml.safe_dump({"pixels": image.size[0] * image.size[1], "z": round(float(z), 6)}))
        return out


def rarely_used():
    import tomli_w  # static only: never imported while loading or predicting

    import not_installed_module_for_capture  # no distribution provides it

    return tomli_w, not_installed_module_for_capture
'''


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of envbuild's commands in these tests: pip's machine config ignored."""
    env = dict(os.environ, PIP_CONFIG_FILE=os.devnull)
    env.pop("PYTHONPATH", None)
    env.update(extra)
    return env


def cli(*args: str, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "envbuild", *args],
        capture_output=True,
        text=True,
        env=clean_env(**extra),
        check=False,
    )


def build_sklearn(root: Path) -> Path:
    import mlflow.sklearn
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    x, y = load_iris(return_X_y=True, as_frame=True)
    path = root / "sklearn"
    mlflow.sklearn.save_model(
        LogisticRegression(max_iter=500).fit(x, y),
        str(path),
        input_example=x.head(4),
        pip_requirements=["mlflow", "scikit-learn"],
    )
    return path


def lazy_python_model():
    import mlflow.pyfunc

    class EnvParser(mlflow.pyfunc.PythonModel):
        """Parses KEY=value lines; python-dotenv is imported only when predicting."""

        def predict(self, context, model_input, params=None):
            import io

            import dotenv

            text = "\n".join(
                f"{k}={v}" for k, v in zip(model_input["key"], model_input["value"], strict=True)
            )
            return [f"{k}:{v}" for k, v in dotenv.dotenv_values(stream=io.StringIO(text)).items()]

    return EnvParser()


def lazy_example():
    import pandas as pd

    return pd.DataFrame({"key": ["A", "B"], "value": ["1", "'two words'"]})


def build_lazy(root: Path) -> Path:
    import mlflow.pyfunc

    path = root / "lazy"
    mlflow.pyfunc.save_model(
        str(path),
        python_model=lazy_python_model(),
        input_example=lazy_example(),
        pip_requirements=["mlflow"],
    )
    return path


def code_model_file(root: Path) -> Path:
    source = root / "src" / "capture_code_model.py"
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_text(textwrap.dedent(CODE_MODEL))
    return source


def build_code(root: Path) -> Path:
    import mlflow.pyfunc
    import pandas as pd

    source = code_model_file(root)
    sys.path.insert(0, str(source.parent))
    try:
        from capture_code_model import ImageStats

        path = root / "code"
        mlflow.pyfunc.save_model(
            str(path),
            python_model=ImageStats(),
            code_paths=[str(source)],
            input_example=pd.DataFrame({"size": [2, 3, 5]}),
            pip_requirements=["mlflow"],
        )
    finally:
        sys.path.remove(str(source.parent))
        sys.modules.pop("capture_code_model", None)
    return path


def broken_python_model(where: str):
    import mlflow.pyfunc

    class Broken(mlflow.pyfunc.PythonModel):
        def load_context(self, context):
            if where == "load":
                raise RuntimeError("broken on purpose: the model cannot load")

        def predict(self, context, model_input, params=None):
            raise ValueError("broken on purpose: the model cannot predict")

    return Broken()


def build_broken(root: Path, where: str) -> Path:
    import mlflow.pyfunc
    import pandas as pd

    path = root / f"broken-{where}"
    example = pd.DataFrame({"x": [1.0]}) if where == "predict" else None
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    mlflow.pyfunc.save_model(
        str(path),
        python_model=broken_python_model(where),
        signature=ModelSignature(inputs=Schema([ColSpec("double", "x")])),
        pip_requirements=["mlflow"],
    )
    if example is not None:  # saved by hand: MLflow would run predict while saving it
        (path / "serving_input_example.json").write_text(
            json.dumps({"dataframe_split": {"columns": ["x"], "data": [[1.0]]}})
        )
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("capture-models")
    return {
        "sklearn": build_sklearn(root),
        "lazy": build_lazy(root),
        "code": build_code(root),
        "broken-load": build_broken(root, "load"),
        "broken-predict": build_broken(root, "predict"),
    }


ORACLE = """
import json, runpy, sys
from importlib import metadata
runner, model, request, out = sys.argv[1:]
before = set(sys.modules)
sys.argv = [runner, "predict", "--model", model, "--input", request, "--output", out + ".pred"]
try:
    runpy.run_path(runner, run_name="__main__")
except SystemExit as exc:
    assert not exc.code, exc.code
top = {name.split(".")[0] for name in set(sys.modules) - before}
mapping = metadata.packages_distributions()
with open(out, "w") as handle:
    json.dump(sorted({d for name in top for d in mapping.get(name, ())}), handle)
"""


def imported_distributions(model: Path, tmp: Path) -> set[str]:
    """Independent oracle: every distribution a module of which is in sys.modules after the
    runner loaded the model and predicted on its input example (a fresh interpreter)."""
    from envbuild.inputs import default_input
    from envbuild.model import load_model

    out = tmp / f"oracle-{model.name}.json"
    with default_input(load_model(model)) as request:
        subprocess.run(
            [sys.executable, "-c", ORACLE, str(RUNNER), str(model), str(request.path), str(out)],
            check=True,
            capture_output=True,
            env=clean_env(),
        )
    return {canonicalize_name(n) for n in json.loads(out.read_text())}


def capture_json(model: Path, *args: str) -> dict:
    proc = cli("capture", str(model), "--json", *args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout)


def names(requirements: list[str]) -> set[str]:
    return {canonicalize_name(r.split("==")[0].split(" @ ")[0]) for r in requirements}


NEEDED = {
    "sklearn": {"mlflow", "scikit-learn", "numpy", "scipy", "joblib", "threadpoolctl", "pandas"},
    "lazy": {"mlflow", "python-dotenv", "cloudpickle", "pandas", "numpy"},
    "code": {"mlflow", "pillow", "pyyaml", "scikit-learn", "numpy", "cloudpickle", "pandas"},
}


@pytest.mark.parametrize("name", ["sklearn", "lazy", "code"])
def test_captured_requirements_are_what_the_model_imports(
    models: dict[str, Path], name: str, tmp_path: Path
) -> None:
    from importlib import metadata

    data = capture_json(models[name])
    captured = names(data["requirements"])
    assert NEEDED[name] <= captured, NEEDED[name] - captured
    static_only = {
        canonicalize_name(p["name"]) for p in data["packages"] if p["found_by"] == ["static"]
    }
    oracle = imported_distributions(models[name], tmp_path)
    assert captured - static_only <= oracle, (captured - static_only) - oracle
    for package in data["packages"]:  # each pinned to exactly what is installed here
        assert package["requirement"] == f"{package['name']}=={package['version']}"
        assert package["version"] == metadata.version(package["name"])
    assert "envbuild" not in captured and "pytest-xdist" not in captured
    assert data["python_version"] == ".".join(map(str, sys.version_info[:3]))
    assert {"requirements", "python_version", "unmapped_modules", "changes"} <= set(data)
    assert data["written"] is None
    assert data["changes"]["added"], "MLflow's incomplete requirements.txt gains pins"


def test_lazy_import_in_predict_is_captured(models: dict[str, Path]) -> None:
    data = capture_json(models["lazy"])
    dotenv = next(p for p in data["packages"] if p["name"] == "python-dotenv")
    assert dotenv["phase"] == "predict" and dotenv["modules"] == ["dotenv"]
    assert data["expected_output"] == {"predictions": ["A:1", "B:two words"]}


def test_module_names_map_to_their_distributions(models: dict[str, Path]) -> None:
    data = capture_json(models["code"])
    by_name = {canonicalize_name(p["name"]): p for p in data["packages"]}
    assert by_name["pillow"]["modules"] == ["PIL"]
    assert by_name["pyyaml"]["modules"] == ["yaml"]
    assert by_name["scikit-learn"]["modules"] == ["sklearn"]
    assert by_name["tomli-w"]["found_by"] == ["static"]
    assert data["unmapped_modules"] == ["not_installed_module_for_capture"]
    assert data["unmapped"][0]["where"].startswith("code/capture_code_model.py:")


@pytest.mark.parametrize("name", ["sklearn", "lazy", "code"])
def test_the_captured_lock_rebuilds_an_environment_that_predicts_the_same(
    models: dict[str, Path], name: str, tmp_path: Path
) -> None:
    model = tmp_path / name
    shutil.copytree(models[name], model)
    data = capture_json(model, "--write")
    written = data["written"]
    assert written["files"] == [
        "requirements.txt",
        "python_env.yaml",
        "conda.yaml",
        "pylock.toml",
        "envbuild_expected_output.json",
    ]
    lines = (model / "requirements.txt").read_text().splitlines()
    assert lines == data["requirements"]
    check = cli("lock", str(model), "--check")
    assert check.returncode == 0, check.stderr
    env = cli("env", str(model), "--json", "--no-compile")
    assert env.returncode == 0, env.stderr
    assert json.loads(env.stdout)["lock_source"] == "model"  # built from the captured lock
    predicted = cli("predict", str(model), "--no-compile")
    assert predicted.returncode == 0, predicted.stderr
    expected = json.loads((model / "envbuild_expected_output.json").read_text())
    assert json.loads(predicted.stdout) == expected
    inspect = cli("inspect", str(model), "--json")
    assert json.loads(inspect.stdout)["warnings"] == []  # the three env files agree


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("broken-load", "model failed to load: RuntimeError: broken on purpose: the model cannot"),
        ("broken-predict", "model failed to predict: ValueError: broken on purpose"),
    ],
)
def test_a_broken_model_fails_loudly(models: dict[str, Path], name: str, message: str) -> None:
    before = (models[name] / "requirements.txt").read_text()
    proc = cli("capture", str(models[name]), "--write")
    assert proc.returncode == 5
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert (models[name] / "requirements.txt").read_text() == before
    assert not (models[name] / "pylock.toml").exists()


TINY_LOADER = """
class Model:
    def predict(self, model_input, params=None):
        import yaml

        rows = model_input if isinstance(model_input, list) else model_input.to_dict("records")
        return [yaml.safe_dump(row, sort_keys=True).strip() for row in rows]


def _load_pyfunc(path):
    return Model()
"""


def test_python_38_environment_without_mlflow(tmp_path: Path) -> None:
    """The probe on Python 3.8 (no stdlib_module_names, no packages_distributions): the only
    distribution a plain pyfunc model and the runner import is PyYAML."""
    venv = tmp_path / "venv38"
    env = clean_env(UV_PYTHON_DOWNLOADS="never")
    subprocess.run(
        [str(UV), "venv", "-q", "--python", str(find_python("3.8")), str(venv)], check=True, env=env
    )
    subprocess.run(
        [str(UV), "pip", "install", "-q", "--python", str(venv / "bin" / "python"), "pyyaml"],
        check=True,
        env=env,
    )
    model = tmp_path / "tiny38"
    (model / "code").mkdir(parents=True)
    (model / "code" / "tiny38_loader.py").write_text(TINY_LOADER)
    (model / "MLmodel").write_text(
        "flavors:\n  python_function:\n    loader_module: tiny38_loader\n    code: code\n"
        "    python_version: 3.8.18\nsaved_input_example_info:\n  artifact_path: "
        "input_example.json\n  type: dataframe\n  pandas_orient: split\n"
    )
    (model / "input_example.json").write_text('{"columns": ["a", "b"], "data": [[1, "x"]]}')
    data = capture_json(model, "--python", str(venv / "bin" / "python"), "--write")
    version = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import yaml; print(yaml.__version__)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert data["requirements"] == [f"PyYAML=={version}"]
    assert data["python_version"] == "3.8.18" and data["backend"] == "plain"
    assert data["written"]["lock"]["python"] == "3.8.18"
    predicted = cli("predict", str(model), "--no-compile")
    assert predicted.returncode == 0, predicted.stderr
    assert json.loads(predicted.stdout) == {"predictions": ["a: 1\nb: x"]}
    assert json.loads((model / "envbuild_expected_output.json").read_text()) == json.loads(
        predicted.stdout
    )

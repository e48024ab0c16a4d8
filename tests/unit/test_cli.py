"""The command line as a user meets it: exit codes, one-line errors, JSON, start-up cost."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from envbuild.__about__ import __version__
from tests.conftest import run_cli


def test_version() -> None:
    proc = run_cli("--version")
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"envbuild {__version__}"


def test_version_imports_nothing_heavy() -> None:
    """`envbuild --version` must not import YAML, packaging, docker or the stages."""
    code = (
        "import sys\n"
        "from envbuild.cli import main\n"
        "try:\n    main(['--version'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('yaml', 'packaging', 'docker', 'pip_requirements_parser', "
        "'envbuild.model', 'envbuild.envspec') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_inspect_text(sklearn_model: Path) -> None:
    proc = run_cli("inspect", str(sklearn_model))
    assert proc.returncode == 0, proc.stderr
    assert "mlflow.sklearn" in proc.stdout
    assert "scikit-learn==1.5.0" in proc.stdout and "requirements.txt:2" in proc.stdout
    assert proc.stderr == ""


def test_inspect_json_is_one_object(sklearn_model: Path) -> None:
    proc = run_cli("inspect", str(sklearn_model), "--json")
    data = json.loads(proc.stdout)
    assert data["requirements"] == ["mlflow==2.20.0", "scikit-learn==1.5.0"]
    assert data["python_version"] == "3.11.7"
    assert proc.stderr == ""


def test_bad_model_is_one_line_exit_2(sklearn_model: Path) -> None:
    (sklearn_model / "requirements.txt").write_text("mlflow\nnumpy; rm -rf /\n")
    proc = run_cli("inspect", str(sklearn_model))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines[0].startswith("error: ")
    assert "requirements.txt:2" in lines[0]
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""


def test_bad_model_json_error(sklearn_model: Path) -> None:
    (sklearn_model / "MLmodel").write_text("flavors: [\n")
    proc = run_cli("inspect", str(sklearn_model), "--json")
    assert proc.returncode == 2
    data = json.loads(proc.stdout)
    assert data["error"] == "ModelError" and data["exit_code"] == 2
    assert data["path"].endswith("MLmodel") and data["line"] == 2


def test_missing_model_folder(tmp_path: Path) -> None:
    proc = run_cli("inspect", str(tmp_path / "nope"))
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and "no such model folder" in proc.stderr


def test_debug_shows_the_traceback(sklearn_model: Path) -> None:
    (sklearn_model / "MLmodel").write_text("flavors: [\n")
    proc = run_cli("--debug", "inspect", str(sklearn_model))
    assert proc.returncode == 2
    assert "Traceback" in proc.stderr


def test_usage_errors_exit_2() -> None:
    assert run_cli().returncode == 2
    assert run_cli("inspect").returncode == 2
    assert run_cli("no-such-command").returncode == 2


def test_warnings_go_to_stderr(sklearn_model: Path) -> None:
    (sklearn_model / "conda.yaml").unlink()
    (sklearn_model / "python_env.yaml").unlink()
    proc = run_cli("inspect", str(sklearn_model))
    assert proc.returncode == 0
    assert (
        "warning: MLmodel: flavors.python_function.env.conda: conda.yaml is missing" in proc.stderr
    )
    assert "warning:" not in proc.stdout

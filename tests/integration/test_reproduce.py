"""`envbuild reproduce` on real MLflow models: a clean reproduction passes; each kind of breakage
fails the right step with the right exit code and says what to do."""

from __future__ import annotations

import json
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from envbuild import proc
from tests.conftest import run_cli

pytestmark = [pytest.mark.integration, pytest.mark.network, pytest.mark.slow]


@pytest.fixture(scope="module")
def reproducible_model(sklearn_iris_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sklearn model with what capture leaves behind: a lock and the expected output."""
    model = tmp_path_factory.mktemp("reproduce") / "model"
    shutil.copytree(sklearn_iris_model, model)
    locked = run_cli("lock", str(model))
    assert locked.returncode == 0, locked.stderr
    predicted = run_cli("predict", str(model), "-o", str(model / "envbuild_expected_output.json"))
    assert predicted.returncode == 0, predicted.stderr
    return model


def copy_of(model: Path, tmp_path: Path) -> Path:
    target = tmp_path / "model"
    shutil.copytree(model, target)
    return target


def reproduce_json(model: Path, *extra: str) -> tuple[int, dict]:
    result = run_cli("reproduce", str(model), "--json", *extra)
    return result.returncode, json.loads(result.stdout)


def steps(data: dict) -> dict[str, dict]:
    return {s["name"]: s for s in data["steps"]}


def test_clean_reproduction_passes(reproducible_model: Path, tmp_path: Path) -> None:
    junit = tmp_path / "report.xml"
    code, data = reproduce_json(reproducible_model, "--junit", str(junit))
    assert code == 0, data
    assert data["ok"] is True
    assert [s["name"] for s in data["steps"]] == ["lock", "build", "verify", "predict", "compare"]
    assert all(s["status"] == "passed" for s in data["steps"]), data["steps"]
    assert all(isinstance(s["duration"], float) for s in data["steps"])
    assert steps(data)["lock"]["details"]["source"] == "model"
    assert steps(data)["verify"]["details"]["missing"] == []
    assert steps(data)["verify"]["details"]["extra"] == []
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite.get("tests") == "5" and suite.get("failures") == "0"
    assert [c.get("name") for c in suite.findall("testcase")] == list(steps(data))


def test_edited_requirements_fail_the_lock_step(reproducible_model: Path, tmp_path: Path) -> None:
    model = copy_of(reproducible_model, tmp_path)
    reqs = model / "requirements.txt"
    reqs.write_text(reqs.read_text().rstrip("\n") + "\nsix==1.16.0\n")
    code, data = reproduce_json(model)
    assert code == 3
    lock = steps(data)["lock"]
    assert lock["status"] == "failed"
    assert "out of date" in lock["message"] and "six" in lock["message"]
    assert "envbuild lock" in lock["hint"]
    assert all(
        steps(data)[n]["status"] == "skipped" for n in ("build", "verify", "predict", "compare")
    )


def test_altered_expected_output_fails_compare(reproducible_model: Path, tmp_path: Path) -> None:
    model = copy_of(reproducible_model, tmp_path)
    expected = json.loads((model / "envbuild_expected_output.json").read_text())
    expected["predictions"][1] = expected["predictions"][1] + 1
    (model / "envbuild_expected_output.json").write_text(json.dumps(expected))
    result = run_cli("reproduce", str(model))
    assert result.returncode == 7
    assert "row 1" in result.stdout
    assert "FAIL compare" in result.stdout
    assert "hint:" in result.stdout
    code, data = reproduce_json(model)
    assert code == 7
    compare = steps(data)["compare"]
    assert compare["details"]["differences"][0].startswith("row 1:")


def test_float_tolerance(reproducible_model: Path, tmp_path: Path) -> None:
    model = copy_of(reproducible_model, tmp_path)
    (model / "envbuild_expected_output.json").write_text(
        json.dumps({"predictions": [0.0, 0.0, 1e-9]})
    )
    assert reproduce_json(model)[0] == 7  # 1e-9 vs 0: differs at any relative tolerance
    (model / "envbuild_expected_output.json").write_text(
        json.dumps({"predictions": [0.0, 0.0, 0.0]})
    )
    assert reproduce_json(model, "--tolerance", "0.1")[0] == 0  # ints 0 vs floats 0.0 are equal


def test_hand_installed_package_fails_verify(reproducible_model: Path, tmp_path: Path) -> None:
    model = copy_of(reproducible_model, tmp_path)
    code, data = reproduce_json(model)
    assert code == 0
    env_python = Path(steps(data)["build"]["details"]["path"]) / "bin" / "python"
    proc.run(
        [proc.uv_bin(), "pip", "install", "--python", str(env_python), "text-unidecode==1.3"],
        what="installing by hand",
    )
    try:
        code, data = reproduce_json(model)
        assert code == 6
        verify = steps(data)["verify"]
        assert verify["status"] == "failed"
        assert verify["details"]["extra"] == ["text-unidecode==1.3"]
        assert "rebuild" in verify["hint"]
        assert steps(data)["compare"]["status"] == "passed"  # still informative after a failure
    finally:
        subprocess.run(
            [proc.uv_bin(), "pip", "uninstall", "--python", str(env_python), "text-unidecode"],
            capture_output=True,
            check=False,
        )


def test_model_without_lock_is_resolved_with_a_warning(
    sklearn_iris_model: Path, tmp_path: Path
) -> None:
    """Nothing failed, but nothing was compared: a partial result is not a success (exit 9)
    unless the CI job says it accepts one, and JUnit shows the skipped step as skipped."""
    model = copy_of(sklearn_iris_model, tmp_path)
    result = run_cli("reproduce", str(model), "--junit", str(tmp_path / "junit.xml"))
    assert result.returncode == 9, result.stdout + result.stderr
    assert "not reproducible from the model alone" in result.stderr
    assert "skip compare" in result.stdout
    assert "result: partial" in result.stdout and "reproduced" not in result.stdout.splitlines()[-1]
    assert not (model / "pylock.toml").exists()
    junit = (tmp_path / "junit.xml").read_text()
    assert '<testcase classname="envbuild.reproduce.model" name="compare"' in junit
    assert junit.count("<skipped") == 1
    allowed = run_cli("reproduce", str(model), "--allow-partial", "--json")
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    data = json.loads(allowed.stdout)
    assert data["result"] == "partial" and data["exit_code"] == 0
    assert any("pylock.toml" in note for note in data["partial"])


def test_invalid_model_exits_2(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "MLmodel").write_text("flavors: [\n")
    result = run_cli("reproduce", str(tmp_path / "m"))
    assert result.returncode == 2
    assert result.stderr.startswith("error: ")

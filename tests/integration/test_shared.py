"""Named shared environments with real environments: a shared venv built from a requirements
file, a registered prefix (a venv made with uv), environments for several models, and three
real MLflow models saved here: one that fits, one that needs another version of a package, one
whose requirement has a marker that excludes it on this Python.

What is asserted is what a user sees: ``check``'s rows and exit codes, predictions against
MLflow's own, refusals (exit 8) and ``--allow-mismatch``, conflicts naming both models' pins, a
registered prefix left exactly as it was, concurrent creates. The Docker half (an image
environment) is in test_shared_docker.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from envbuild.proc import uv_bin
from tests.conftest import run_cli
from tests.integration.mlflow_oracle import mlflow_predictions as oracle
from tests.integration.runtime_models import make_venv

pytestmark = [pytest.mark.integration, pytest.mark.network, pytest.mark.slow]

MINOR = f"{sys.version_info[0]}.{sys.version_info[1]}"
SIX_NEW, SIX_OLD = "1.16.0", "1.15.0"


def save(root: Path, name: str, requirements: list[str]) -> Path:
    """A custom PythonModel (doubles its input) saved by MLflow with these requirements (MLflow
    adds ``mlflow==<its version>`` as the first line)."""
    import mlflow.pyfunc
    import pandas as pd

    class Doubler(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            return model_input * 2

    path = root / name
    mlflow.pyfunc.save_model(
        str(path),
        python_model=Doubler(),
        pip_requirements=requirements,
        input_example=pd.DataFrame({"x": [1.0, 2.5, -3.0]}),
    )
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    pytest.importorskip("mlflow")
    root = tmp_path_factory.mktemp("shared-models")
    return {
        "fits": save(root, "fits", [f"six=={SIX_NEW}"]),
        "other": save(root, "other", [f"six=={SIX_OLD}"]),
        "marker": save(
            root, "marker", [f"six=={SIX_NEW}", "typing-extensions<4; python_version < '3.9'"]
        ),
    }


def mlflow_requirement() -> str:
    import mlflow

    return f"mlflow=={mlflow.__version__}"


def cli(*args: str) -> subprocess.CompletedProcess:
    return run_cli(*args)


def cli_json(*args: str) -> tuple[int, dict]:
    proc = run_cli(*args, "--json")
    assert proc.stdout, proc.stderr
    return proc.returncode, json.loads(proc.stdout)


@pytest.fixture(scope="module")
def team_env(tmp_path_factory: pytest.TempPathFactory) -> str:
    """``team:1``: a shared venv from a requirements file (MLflow and six 1.16.0)."""
    folder = tmp_path_factory.mktemp("team")
    (folder / "requirements.txt").write_text(f"{mlflow_requirement()}\nsix=={SIX_NEW}\n")
    code, data = cli_json(
        "environments", "create", "team", "-r", str(folder / "requirements.txt"), "--python", MINOR
    )
    assert code == 0, data
    assert data["version"] == "1" and data["managed"] is True
    assert Path(data["prefix"]).is_dir() and Path(data["lock_path"]).is_file()
    return "team"


def mlflow_predictions(model: Path) -> list:
    """What MLflow itself predicts on the model's serving example (the integration oracle)."""
    request = json.loads((model / "serving_input_example.json").read_text())
    return oracle(model, request)


def row(verdict: dict, name: str) -> dict:
    found = [r for r in verdict["rows"] if r["name"] == name]
    assert len(found) == 1, verdict["rows"]
    return found[0]


def test_show_and_list_describe_the_environment(team_env: str) -> None:
    code, shown = cli_json("environments", "show", team_env)
    assert code == 0
    names = {d["name"].lower(): d["version"] for d in shown["installed"]["distributions"]}
    assert names["six"] == SIX_NEW and "mlflow" in names
    assert shown["installed"]["python_version"].startswith(MINOR)
    assert shown["source"]["from"] == "requirements"
    code, listed = cli_json("environments", "list")
    assert [(e["name"], e["version"]) for e in listed["environments"] if e["name"] == "team"] == [
        ("team", "1")
    ]
    text = cli("environments", "show", "team:1").stdout
    assert f"six=={SIX_NEW}" in text and "made from    requirements:" in text


def test_check_gives_the_right_row_for_each_model(team_env: str, models: dict) -> None:
    code, fits = cli_json("check", str(models["fits"]), "--environment", team_env)
    assert code == 0 and fits["satisfied"] is True
    assert row(fits, "six")["status"] == "ok"
    assert row(fits, "mlflow")["status"] == "ok"
    assert row(fits, "python")["status"] == "ok"

    code, other = cli_json("check", str(models["other"]), "--environment", f"{team_env}:1")
    assert code == 8 and other["satisfied"] is False
    six = row(other, "six")
    assert (six["status"], six["wanted"], six["installed"], six["origin"]) == (
        "version",
        f"six=={SIX_OLD}",
        SIX_NEW,
        "requirements.txt:2",
    )
    assert other["rows"][0]["name"] == "six", "the failing row comes first"

    code, marker = cli_json("check", str(models["marker"]), "--environment", team_env)
    assert code == 0 and marker["satisfied"] is True
    typing = row(marker, "typing-extensions")
    assert typing["status"] == "marker" and typing["origin"] == "requirements.txt:3"

    proc = cli(
        "check", *(str(models[m]) for m in ("fits", "other", "marker")), "--environment", team_env
    )
    assert proc.returncode == 8
    table = proc.stdout.splitlines()
    verdicts = {
        line.split()[0]: line for line in table if line.startswith(str(models["fits"].parent))
    }
    assert "fits" in verdicts[str(models["fits"])].split()[1]
    assert "does not fit" in verdicts[str(models["other"])]
    assert f"version: six {SIX_NEW} is installed" in verdicts[str(models["other"])]


def test_predict_in_the_shared_environment(team_env: str, models: dict) -> None:
    proc = cli("predict", str(models["fits"]), "--environment", team_env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["predictions"] == mlflow_predictions(models["fits"])

    code, refused = cli_json("predict", str(models["other"]), "--environment", team_env)
    assert code == 8
    assert refused["error"] == "EnvironmentUnsuitable"
    assert f"team:1 does not satisfy the model: six {SIX_NEW} is installed" in refused["message"]
    assert row(refused["verdict"], "six")["status"] == "version"
    text = cli("predict", str(models["other"]), "--environment", team_env)
    assert text.returncode == 8 and text.stdout == ""
    assert "--allow-mismatch" in text.stderr

    code, allowed = cli_json(
        "predict", str(models["other"]), "--environment", team_env, "--allow-mismatch"
    )
    assert code == 0, allowed
    assert allowed["predictions"] == mlflow_predictions(models["other"])
    assert allowed["shared_environment"]["verdict"]["satisfied"] is False
    assert any("does not satisfy the model" in w for w in allowed["warnings"])

    ran = cli(
        "run",
        str(models["fits"]),
        "--environment",
        team_env,
        "--",
        "python",
        "-c",
        "import six, sys; print(six.__version__, sys.prefix)",
    )
    assert ran.returncode == 0, ran.stderr
    version, prefix = ran.stdout.split()
    assert version == SIX_NEW and "/environments/team/1/env" in prefix


def tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` with its size and modification time."""
    out = {}
    for folder, _dirs, files in os.walk(root):
        for name in files:
            path = Path(folder, name)
            stat = path.lstat()
            out[str(path.relative_to(root))] = (stat.st_size, stat.st_mtime_ns)
    return out


def test_a_registered_prefix_is_used_as_it_is(tmp_path: Path, models: dict) -> None:
    from tests.interpreters import python

    prefix = tmp_path / "prefix"
    make_venv(prefix, python(MINOR), [mlflow_requirement(), f"six=={SIX_OLD}"])
    code, made = cli_json("environments", "create", "legacy", "--prefix", str(prefix))
    assert code == 0, made
    assert made["managed"] is False and made["prefix"] == str(prefix)
    before = tree(prefix)

    # bytecode writing allowed, as on most machines: envbuild must still write nothing there
    writing = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    code, other = cli_json("check", str(models["other"]), "--environment", "legacy")
    assert code == 0 and row(other, "six")["status"] == "ok"
    proc = run_cli("predict", str(models["other"]), "--environment", "legacy", env=writing)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["predictions"] == mlflow_predictions(models["other"])
    fits = run_cli("check", str(models["fits"]), "--environment", "legacy", "--json", env=writing)
    assert fits.returncode == 8 and row(json.loads(fits.stdout), "six")["status"] == "version"
    assert tree(prefix) == before, "envbuild wrote into a registered prefix"

    # its owner changes it: the verdict follows what is installed now, and says so
    subprocess.run(
        [
            uv_bin(),
            "pip",
            "install",
            "--python",
            str(prefix / "bin" / "python"),
            f"six=={SIX_NEW}",
        ],
        check=True,
        capture_output=True,
    )
    proc = cli("check", str(models["fits"]), "--environment", "legacy")
    assert proc.returncode == 0, proc.stdout
    assert (
        f"six {SIX_OLD} -> {SIX_NEW}" in proc.stderr
        and "changed since it was registered" in proc.stderr
    )

    # and removes it: one line, exit 8
    import shutil

    shutil.rmtree(prefix)
    proc = cli("check", str(models["fits"]), "--environment", "legacy")
    assert proc.returncode == 8
    assert proc.stderr.startswith(f"error: legacy:1: its prefix {prefix} no longer exists")
    assert cli("environments", "remove", "legacy").returncode == 0


def test_one_environment_for_two_compatible_models(models: dict) -> None:
    code, made = cli_json(
        "environments", "create", "pair", "--from", str(models["fits"]), str(models["marker"])
    )
    assert code == 0, made
    assert [m["path"] for m in made["source"]["models"]] == [
        str(models["fits"]),
        str(models["marker"]),
    ]
    for name in ("fits", "marker"):
        proc = cli("predict", str(models[name]), "--environment", "pair")
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["predictions"] == mlflow_predictions(models[name])
    code, both = cli_json(
        "check", str(models["fits"]), str(models["marker"]), "--environment", "pair"
    )
    assert code == 0 and both["satisfied"] is True


def test_two_incompatible_models_fail_naming_both_pins(models: dict) -> None:
    fits, other = str(models["fits"]), str(models["other"])
    proc = cli("environments", "create", "clash", "--from", fits, other)
    assert proc.returncode == 3
    line = proc.stderr.splitlines()[0]
    assert line.startswith(f"error: the models {fits}, {other} cannot share one environment: ")
    assert f"six=={SIX_NEW} ({fits}/requirements.txt:2)" in line
    assert f"six=={SIX_OLD} ({other}/requirements.txt:2)" in line
    assert cli("environments", "show", "clash").returncode == 2, "nothing was registered"


def test_concurrent_creates_of_one_version(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text(f"six=={SIX_NEW}\n")
    argv = [
        sys.executable,
        "-m",
        "envbuild",
        "environments",
        "create",
        "race",
        "--version",
        "1",
        "-r",
        str(tmp_path / "requirements.txt"),
        "--python",
        MINOR,
    ]
    racers = [
        subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    results = [(p.wait(timeout=600), p.stdout.read(), p.stderr.read()) for p in racers]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 2], results
    loser = next(err for code, _, err in results if code == 2)
    assert (
        "race:1 is being created by another process" in loser
        or "race:1 already exists (versions are immutable)" in loser
    ), loser
    code, listed = cli_json("environments", "list", "race")
    assert code == 0 and [e["version"] for e in listed["environments"]] == ["1"]
    assert not list((Path(os.environ["ENVBUILD_HOME"]) / "environments" / "race").glob(".tmp-*"))
    code, shown = cli_json("environments", "show", "race:1")
    assert code == 0 and shown["installed"]["distributions"][0]["version"] == SIX_NEW


def test_reproduce_in_a_shared_environment(team_env: str, models: dict) -> None:
    code, report = cli_json(
        "reproduce", str(models["fits"]), "--environment", team_env, "--allow-partial"
    )
    steps = {s["name"]: s for s in report["steps"]}
    assert code == 0, report
    assert steps["lock"]["status"] == "skipped" and "used as it is" in steps["lock"]["message"]
    assert steps["verify"]["status"] == "passed"
    assert steps["verify"]["details"]["verdict"]["satisfied"] is True
    assert steps["predict"]["status"] == "passed"

    code, report = cli_json("reproduce", str(models["other"]), "--environment", team_env)
    steps = {s["name"]: s for s in report["steps"]}
    assert code == 8 and steps["verify"]["status"] == "failed"
    assert "does not satisfy the model" in steps["verify"]["message"]
    code, report = cli_json(
        "reproduce",
        str(models["other"]),
        "--environment",
        team_env,
        "--allow-mismatch",
        "--allow-partial",
    )
    steps = {s["name"]: s for s in report["steps"]}
    assert code == 0 and steps["verify"]["status"] == "passed"
    assert "--allow-mismatch" in steps["verify"]["message"]
    assert cli("reproduce", str(models["fits"]), "--environment", "nosuch").returncode == 2

"""Hostile and careless input, on the command line as a user sees it: one line (or one JSON
object), a documented exit code, no traceback, no secret, nothing damaged or left behind."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import run_cli, write_model

MLMODEL = (
    "flavors:\n  python_function:\n    loader_module: mlflow.sklearn\n    python_version: 3.11.7\n"
)


def one_json_error(proc: subprocess.CompletedProcess[str], code: int = 2) -> dict:
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    data = json.loads(proc.stdout)  # exactly one object: json.loads refuses trailing text
    assert data["exit_code"] == code
    return data


def one_line_error(proc: subprocess.CompletedProcess[str], code: int = 2) -> str:
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


# ---------------------------------------------------------------------------------------------
# YAML and JSON that would hang or crash a naive reader


def billion_laughs() -> str:
    text = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    previous = "a"
    for name in "bcdefghi":
        text += f"{name}: &{name} [" + ",".join([f"*{previous}"] * 9) + "]\n"
        previous = name
    return text


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (billion_laughs(), "aliases expand to more than"),
        ("x: &a [*a]\n", "an alias refers to a value that contains it"),
        ("x: " + "[" * 100_000 + "]" * 100_000 + "\n", "nested too deeply"),
    ],
    ids=["alias-bomb", "recursive-alias", "deep-nesting"],
)
def test_hostile_yaml_is_refused_quickly(tmp_path: Path, extra: str, message: str) -> None:
    model = write_model(tmp_path / "m", {"MLmodel": MLMODEL, "requirements.txt": "six\n"})
    (model / "MLmodel").write_text(MLMODEL + extra)
    for command in ("inspect", "lock", "env"):
        line = one_line_error(run_cli(command, str(model)))
        assert "MLmodel" in line and message in line, line
        data = one_json_error(run_cli(command, str(model), "--json"))
        assert message in data["message"]
    (model / "MLmodel").write_text(MLMODEL)
    (model / "conda.yaml").write_text("dependencies: " + "[" * 50_000 + "]" * 50_000 + "\n")
    (model / "requirements.txt").unlink()
    line = one_line_error(run_cli("inspect", str(model)))
    assert "conda.yaml" in line and "nested too deeply" in line


def test_deeply_nested_signature_json_names_the_field(tmp_path: Path) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    model = write_model(
        tmp_path / "m",
        {
            "MLmodel": MLMODEL + f"signature:\n  inputs: '{deep}'\n",
            "requirements.txt": "six\n",
        },
    )
    line = one_line_error(run_cli("inspect", str(model)))
    assert "signature.inputs" in line and "nested too deeply" in line


# ---------------------------------------------------------------------------------------------
# Python requests no release satisfies: one answer, at inspect time


@pytest.mark.parametrize(
    ("written", "message"),
    [
        ("'===banana'", "no Python release matches"),
        ("3.99", "does not exist"),
        ("2.7", "Python 2"),
        ("'3.1'", "too old"),
    ],
)
def test_impossible_python_is_exit_2_naming_file_and_field(
    tmp_path: Path, written: str, message: str
) -> None:
    model = write_model(
        tmp_path / "m",
        {
            "MLmodel": "flavors:\n  python_function:\n    loader_module: m\n",
            "python_env.yaml": f"python: {written}\ndependencies:\n- six\n",
        },
    )
    for command in ("inspect", "lock", "env"):
        line = one_line_error(run_cli(command, str(model)))
        assert line.startswith("error: ") and "python_env.yaml:1: python:" in line, line
        assert message in line and "pyenv install" not in line


# ---------------------------------------------------------------------------------------------
# Command-line values


@pytest.mark.parametrize(
    "argv",
    [
        ["serve", "M", "--port", "99999"],
        ["serve", "M", "--port", "-1"],
        ["serve", "M", "--workers", "0"],
        ["serve", "M", "--workers", "two"],
        ["predict", "M", "--chunk-rows", "0"],
        ["reproduce", "M", "--tolerance", "-1"],
        ["reproduce", "M", "--tolerance", "nan"],
        ["lock", "M", "--no-such-option"],
        ["predict"],
    ],
)
def test_bad_command_line_values_are_usage_errors(sklearn_model: Path, argv: list[str]) -> None:
    argv = [str(sklearn_model) if word == "M" else word for word in argv]
    line = one_line_error(run_cli(*argv))
    assert len(line) < 300
    data = one_json_error(run_cli(*argv, "--json"))
    assert data["error"] == "UsageError" and data["hint"]


def test_json_after_double_dash_belongs_to_the_command(sklearn_model: Path) -> None:
    """`run MODEL -- cmd --json`: --json is the command's, so errors stay text."""
    proc = run_cli("run", str(sklearn_model), "--kind", "nope", "--", "python", "--json")
    assert proc.returncode == 2 and proc.stdout == "" and proc.stderr.startswith("error: ")


# ---------------------------------------------------------------------------------------------
# Secrets


def test_credentials_in_requirements_never_reach_output(tmp_path: Path) -> None:
    secret = "s3cr3t-token-value"
    model = write_model(
        tmp_path / "m",
        {
            "MLmodel": MLMODEL,
            "requirements.txt": (
                f"mylib @ https://alice:{secret}@private.example/mylib-1.0-py3-none-any.whl\n"
                f"--extra-index-url https://bob:{secret}@pypi.example/simple\n"
            ),
        },
    )
    for argv in (["inspect", str(model)], ["inspect", str(model), "--json"]):
        proc = run_cli(*argv)
        assert proc.returncode == 0, proc.stderr
        assert secret not in proc.stdout + proc.stderr
        assert "***@private.example" in proc.stdout + proc.stderr
    bad = model / "requirements.txt"
    for line in (
        f"mylib @ https://alice:{secret}@private.example/x.whl ; bad marker ==\n",
        f"--frobnicate=https://carol:{secret}@x.example/\n",
    ):
        bad.write_text(line)
        for argv in (["inspect", str(model)], ["lock", str(model), "--json"]):
            proc = run_cli(*argv)
            assert proc.returncode == 2 and secret not in proc.stdout + proc.stderr
            assert "***@" in proc.stdout + proc.stderr


def test_ignored_index_options_do_not_change_the_identity(tmp_path: Path) -> None:
    plain = write_model(tmp_path / "a", {"MLmodel": MLMODEL, "requirements.txt": "six==1.16.0\n"})
    noisy = write_model(
        tmp_path / "b",
        {
            "MLmodel": MLMODEL,
            "requirements.txt": "--index-url https://mirror.example/simple\nsix==1.16.0\n",
        },
    )
    digests = [
        json.loads(run_cli("inspect", str(m), "--json").stdout)["env_digest"]
        for m in (plain, noisy)
    ]
    assert digests[0] == digests[1]


# ---------------------------------------------------------------------------------------------
# Files envbuild writes: modes, and outputs that are not plain files


def test_atomic_write_keeps_modes_and_respects_the_umask(tmp_path: Path) -> None:
    from envbuild.files import atomic_write

    existing = tmp_path / "pylock.toml"
    existing.write_text("old")
    os.chmod(existing, 0o640)
    atomic_write(existing, "new")
    assert existing.read_text() == "new" and stat.S_IMODE(existing.stat().st_mode) == 0o640
    old_mask = os.umask(0o022)
    try:
        fresh = tmp_path / "fresh.toml"
        atomic_write(fresh, "x")
        assert stat.S_IMODE(fresh.stat().st_mode) == 0o644
    finally:
        os.umask(old_mask)


def test_cache_lock_files_are_not_world_writable(tmp_path: Path) -> None:
    from envbuild.cache import publish

    entry, built = publish("things", "k1", lambda tmp: None, root=tmp_path)
    assert built and entry.is_dir()
    mode = stat.S_IMODE((tmp_path / "things" / "k1.lock").stat().st_mode)
    assert mode & 0o022 == 0, oct(mode)


def test_write_output_goes_through_links_and_never_replaces_devices(tmp_path: Path) -> None:
    from envbuild.errors import UsageError
    from envbuild.files import write_output

    real = tmp_path / "real.json"
    real.write_text("old")
    os.chmod(real, 0o600)
    link = tmp_path / "link.json"
    link.symlink_to(real)
    write_output(link, b"new")
    assert link.is_symlink() and real.read_text() == "new"
    assert stat.S_IMODE(real.stat().st_mode) == 0o600
    write_output(Path(os.devnull), b"discarded")
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    reader = subprocess.Popen(
        [sys.executable, "-c", f"print(open({str(fifo)!r}).read())"],
        stdout=subprocess.PIPE,
        text=True,
    )
    write_output(fifo, b"streamed")
    assert reader.communicate(timeout=30)[0].strip() == "streamed"
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    with pytest.raises(UsageError, match="is a directory"):
        write_output(tmp_path, b"x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.json", "pipe", "real.json"]

"""The lock stage without network: targets, --as-of, the canonical file, merging, --check, errors.

uv itself is replaced here by canned resolutions (what ``uv pip compile --format pylock.toml``
printed for these inputs); the integration tests run the real thing against PyPI.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

import envbuild
from envbuild.envspec import read_env
from envbuild.errors import ExitCode, LockMismatchError, ModelError, ResolutionError, UsageError
from envbuild.lock.pylock import tomllib
from envbuild.model import load_model
from envbuild.target import PLATFORMS, parse_platform, parse_python, resolve_platforms
from tests.conftest import run_cli

lockmod = importlib.import_module("envbuild.lock")
uvmod = importlib.import_module("envbuild.lock.uv")
from envbuild.lock.explain import explain_failure  # noqa: E402
from envbuild.lock.toml import render  # noqa: E402

T = datetime(2024, 4, 2, 10, 0, 0, tzinfo=timezone.utc)


def wheel(name: str) -> dict:
    return {
        "url": f"https://files.example.org/{name}",
        "upload-time": T,
        "size": 10,
        "hashes": {"sha256": hashlib.sha256(name.encode()).hexdigest()},
    }


def package(name: str, version: str, *wheels: str, marker: str | None = None) -> dict:
    out = {
        "name": name,
        "version": version,
        "sdist": wheel(f"{name}-{version}.tar.gz"),
        "wheels": [wheel(w) for w in wheels],
    }
    if marker:
        out["marker"] = marker
    return out


LINUX = {
    "packages": [
        package("numpy", "1.26.4", "numpy-1.26.4-cp311-cp311-manylinux_2_17_x86_64.whl"),
        package(
            "scikit-learn", "1.4.2", "scikit_learn-1.4.2-cp311-cp311-manylinux_2_17_x86_64.whl"
        ),
    ]
}
ARM = {
    "packages": [
        package("numpy", "1.26.4", "numpy-1.26.4-cp311-cp311-manylinux_2_17_aarch64.whl"),
        package(
            "scikit-learn", "1.4.1", "scikit_learn-1.4.1-cp311-cp311-manylinux_2_17_aarch64.whl"
        ),
    ]
}
WINDOWS = {
    "packages": [
        package(
            "colorama",
            "0.4.6",
            "colorama-0.4.6-py2.py3-none-any.whl",
            marker="sys_platform == 'win32'",
        ),
        package("numpy", "1.26.4", "numpy-1.26.4-cp311-cp311-win_amd64.whl"),
        package("scikit-learn", "1.4.2", "scikit_learn-1.4.2-cp311-cp311-win_amd64.whl"),
    ]
}
CANNED = {"linux/amd64": LINUX, "linux/arm64": ARM, "windows/amd64": WINDOWS}


@pytest.fixture
def fake_uv(monkeypatch: pytest.MonkeyPatch) -> list:
    """Replace the uv run with canned per-platform results; records (python, platform, as-of)."""
    calls: list = []

    def resolve_one(job, target):
        calls.append((job.target.python, target.name, job.as_of))
        (job.workdir / "seen-requirements.in").write_text(
            (job.workdir / "requirements.in").read_text()
        )
        return CANNED[target.name]

    monkeypatch.setattr(uvmod, "_resolve_one", resolve_one)
    monkeypatch.setenv("PIP_CONFIG_FILE", "/dev/null")
    for var in ("PIP_FIND_LINKS", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "UV_INDEX_URL"):
        monkeypatch.delenv(var, raising=False)
    return calls


def test_public_api_names_are_plain_functions_in_any_import_order() -> None:
    """No module shares a name with a public function: whatever was imported first,
    ``envbuild.resolve``/``lock_model``/``capture``/``reproduce`` are the functions."""
    code = (
        "import envbuild{first}\n"
        "import inspect\n"
        "from envbuild.errors import ModelError\n"
        "for name in ('resolve', 'lock_model', 'check_lock', 'build', 'capture', 'reproduce',\n"
        "             'load_model', 'read_env', 'prepare'):\n"
        "    assert inspect.isfunction(getattr(envbuild, name)), name\n"
        "try:\n"
        "    envbuild.lock_model('/nonexistent/model')\n"
        "except ModelError as exc:\n"
        "    assert 'no such model folder' in str(exc)\n"
        "else:\n"
        "    raise AssertionError('lock_model of a missing folder did not fail')\n"
        "from envbuild.lock import Lock, read_lock\n"
        "assert envbuild.Lock is Lock and envbuild.read_lock is read_lock\n"
    )
    for first in (
        "",
        "; import envbuild.lock",
        "; import envbuild.capturing.engine",
        "; import envbuild.reproduction",
    ):
        subprocess.run([sys.executable, "-c", code.format(first=first)], check=True)


# ---------------------------------------------------------------------------------------------
# targets


@pytest.mark.parametrize(
    ("typed", "name"),
    [
        ("linux/amd64", "linux/amd64"),
        ("linux/x86_64", "linux/amd64"),
        ("linux", "linux/amd64"),
        ("linux/arm64", "linux/arm64"),
        ("Linux/aarch64", "linux/arm64"),
        ("macos", "macos/arm64"),
        ("macos/x86_64", "macos/x86_64"),
        ("darwin/amd64", "macos/x86_64"),
        ("windows", "windows/amd64"),
    ],
)
def test_platform_names(typed: str, name: str) -> None:
    assert parse_platform(typed).name == name


def test_platform_uv_targets_and_markers() -> None:
    amd, arm = PLATFORMS["linux/amd64"], PLATFORMS["linux/arm64"]
    assert amd.uv_platform == "x86_64-manylinux_2_28"
    assert arm.uv_platform == "aarch64-manylinux_2_28"
    assert arm.marker == "sys_platform == 'linux' and platform_machine == 'aarch64'"
    assert PLATFORMS["macos/arm64"].uv_platform == "aarch64-apple-darwin"


def test_platform_sets() -> None:
    names = lambda values: [p.name for p in resolve_platforms(values)]  # noqa: E731
    assert names(None) == ["linux/amd64"]
    assert names(["linux/arm64"]) == ["linux/arm64"]  # replaces the default
    assert names(["+linux/arm64"]) == ["linux/amd64", "linux/arm64"]  # adds to it
    assert names(["linux/arm64,linux/amd64"]) == names(["linux/amd64", "linux/arm64"])
    assert names(["linux/x86_64", "linux/amd64"]) == ["linux/amd64"]


def test_unknown_platform_is_a_usage_error() -> None:
    with pytest.raises(UsageError) as info:
        parse_platform("solaris/sparc")
    assert info.value.exit_code == ExitCode.BAD_INPUT
    assert "linux/arm64" in (info.value.hint or "")


@pytest.mark.parametrize("bad", ["3", "python3.10", "3.10.x", "2.7.18x", ""])
def test_python_versions(bad: str) -> None:
    assert parse_python("3.10") == "3.10" and parse_python(" 3.11.7 ") == "3.11.7"
    with pytest.raises(UsageError):
        parse_python(bad)


# ---------------------------------------------------------------------------------------------
# --as-of


def test_as_of_values(sklearn_model: Path) -> None:
    spec = load_model(sklearn_model)  # utc_time_created: '2024-05-01 10:00:00.000000'
    assert lockmod.parse_as_of("model", spec) == "2024-05-01T10:00:00Z"
    assert lockmod.parse_as_of("2024-05-01") == "2024-05-01T00:00:00Z"
    assert lockmod.parse_as_of("2024-05-01T12:30:00.5Z") == "2024-05-01T12:30:00Z"
    assert lockmod.parse_as_of("2024-05-01T12:30:00+02:00") == "2024-05-01T10:30:00Z"
    assert lockmod.parse_as_of(None) is None
    with pytest.raises(UsageError):
        lockmod.parse_as_of("last tuesday")


def test_as_of_model_without_creation_time(sklearn_model: Path) -> None:
    text = (sklearn_model / "MLmodel").read_text()
    (sklearn_model / "MLmodel").write_text(
        "\n".join(line for line in text.splitlines() if "utc_time_created" not in line) + "\n"
    )
    with pytest.raises(ModelError) as info:
        lockmod.parse_as_of("model", load_model(sklearn_model))
    assert "utc_time_created" in str(info.value) and "--as-of" in (info.value.hint or "")


# ---------------------------------------------------------------------------------------------
# the canonical file


def test_render_round_trips_and_ignores_input_order() -> None:
    doc = {
        "lock-version": "1.0",
        "requires-python": "==3.11.*",
        "environments": ["sys_platform == 'linux'"],
        "created-by": "envbuild",
        "packages": [package("numpy", "1.26.4", "a.whl", "b.whl")],
        "tool": {"envbuild": {"python": "3.11", "note": 'quote " back\\slash\ttab'}},
    }
    text = render(doc)
    assert tomllib.loads(text) == doc
    shuffled = {k: doc[k] for k in reversed(list(doc))}
    shuffled["packages"] = [{k: v for k, v in reversed(list(doc["packages"][0].items()))}]
    assert render(shuffled) == text
    assert text.startswith('lock-version = "1.0"\nenvironments = ')
    assert "upload-time = 2024-04-02T10:00:00Z" in text


def test_merge_single_target_keeps_uv_result() -> None:
    merged = uvmod.merge([(PLATFORMS["linux/amd64"], LINUX)])
    assert [(p["name"], p["version"]) for p in merged] == [
        ("numpy", "1.26.4"),
        ("scikit-learn", "1.4.2"),
    ]
    assert all("marker" not in p for p in merged)


def test_merge_targets_unions_wheels_and_marks_differences() -> None:
    merged = uvmod.merge(
        [
            (PLATFORMS["linux/amd64"], LINUX),
            (PLATFORMS["linux/arm64"], ARM),
            (PLATFORMS["windows/amd64"], WINDOWS),
        ]
    )
    by = {(p["name"], p["version"]): p for p in merged}
    numpy = by[("numpy", "1.26.4")]
    assert "marker" not in numpy  # same version everywhere: no marker, every target's wheel
    assert len(numpy["wheels"]) == 3
    assert by[("scikit-learn", "1.4.1")]["marker"] == (
        "sys_platform == 'linux' and platform_machine == 'aarch64'"
    )
    assert by[("scikit-learn", "1.4.2")]["marker"] == (
        "(sys_platform == 'linux' and platform_machine == 'x86_64') or "
        "(sys_platform == 'win32' and platform_machine == 'AMD64')"
    )
    assert by[("colorama", "0.4.6")]["marker"] == (
        "(sys_platform == 'win32') and (sys_platform == 'win32' and platform_machine == 'AMD64')"
    )


def test_credentials_never_reach_file_urls() -> None:
    private = {"packages": [package("secretpkg", "1.0", "secretpkg-1.0-py3-none-any.whl")]}
    private["packages"][0]["wheels"][0]["url"] = "https://user:tok3n@pkgs.example.org/x.whl"
    merged = uvmod.merge([(PLATFORMS["linux/amd64"], private)])
    assert merged[0]["wheels"][0]["url"] == "https://pkgs.example.org/x.whl"


# ---------------------------------------------------------------------------------------------
# lock() with canned resolutions


def test_lock_writes_canonical_pylock(sklearn_model: Path, fake_uv: list) -> None:
    lk = envbuild.lock_model(load_model(sklearn_model), as_of="model")
    path = sklearn_model / "pylock.toml"
    assert lk.path == path and lk.changed is True
    raw = path.read_bytes()
    assert lk.text.encode() == raw
    assert lk.digest == "sha256:" + hashlib.sha256(raw).hexdigest()
    doc = tomllib.loads(raw.decode())
    assert doc["lock-version"] == "1.0" and doc["created-by"] == "envbuild"
    assert doc["requires-python"] == "==3.11.*"
    assert doc["environments"] == ["sys_platform == 'linux' and platform_machine == 'x86_64'"]
    tool = doc["tool"]["envbuild"]
    env = read_env(load_model(sklearn_model))
    assert tool["input-digest"] == env.digest() == lk.input_digest
    assert tool["python"] == "3.11.7" and tool["platforms"] == ["linux/amd64"]
    assert tool["as-of"] == "2024-05-01T10:00:00Z" == lk.as_of
    assert tool["index-url"] == "https://pypi.org/simple"
    assert tool["requirements"] == ["mlflow==2.20.0", "scikit-learn==1.5.0"]
    assert fake_uv == [("3.11.7", "linux/amd64", "2024-05-01T10:00:00Z")]
    assert [p.pin for p in lk.packages] == ["numpy==1.26.4", "scikit-learn==1.4.2"]
    assert "#" not in raw.decode()  # no header comment with temporary paths


def test_lock_is_deterministic_and_not_rewritten(sklearn_model: Path, fake_uv: list) -> None:
    first = envbuild.lock_model(sklearn_model, as_of="2024-05-01")
    path = sklearn_model / "pylock.toml"
    mtime = path.stat().st_mtime_ns
    second = envbuild.lock_model(sklearn_model, as_of="2024-05-01")
    assert second.text == first.text and second.digest == first.digest
    assert second.changed is False and path.stat().st_mtime_ns == mtime
    again = envbuild.read_lock(path)
    assert again == first


def test_lock_targets_and_python_override(sklearn_model: Path, fake_uv: list) -> None:
    lk = envbuild.lock_model(
        sklearn_model, python="3.10", platforms=["linux/arm64", "linux/amd64"], write=False
    )
    assert lk.path is None and not (sklearn_model / "pylock.toml").exists()
    assert sorted(c[1] for c in fake_uv) == ["linux/amd64", "linux/arm64"]
    assert lk.python == "3.10" and lk.requires_python == "==3.10.*"
    assert lk.platforms == ("linux/amd64", "linux/arm64")
    assert len(lk.environments) == 2


def test_failed_resolution_leaves_the_old_lock(
    sklearn_model: Path, fake_uv: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    envbuild.lock_model(sklearn_model)
    path = sklearn_model / "pylock.toml"
    before = path.read_bytes()
    (sklearn_model / "requirements.txt").write_text("mlflow==2.20.0\nnumpy<1\n")

    def fail(job, target):
        raise ResolutionError("no solution")

    monkeypatch.setattr(uvmod, "_resolve_one", fail)
    with pytest.raises(ResolutionError):
        envbuild.lock_model(sklearn_model)
    assert path.read_bytes() == before
    assert sorted(p.name for p in sklearn_model.iterdir() if p.name.startswith(".")) == []


def test_lock_file_name_must_follow_pep_751(sklearn_model: Path, fake_uv: list) -> None:
    with pytest.raises(UsageError):
        envbuild.lock_model(sklearn_model, output=sklearn_model / "requirements.lock")
    lk = envbuild.lock_model(sklearn_model, output=sklearn_model / "pylock.linux.toml")
    assert lk.path is not None and lk.path.name == "pylock.linux.toml"


def test_model_without_python_needs_python_option(tmp_path: Path, fake_uv: list) -> None:
    from tests.conftest import write_model

    model = write_model(
        tmp_path / "m",
        {
            "MLmodel": "flavors:\n  python_function:\n    loader_module: mlflow.sklearn\n",
            "requirements.txt": "scikit-learn\n",
        },
    )
    with pytest.raises(ModelError) as info:
        envbuild.lock_model(model)
    assert "--python" in (info.value.hint or "")
    assert envbuild.lock_model(model, python="3.11").python == "3.11"


# ---------------------------------------------------------------------------------------------
# --check


def test_check_passes_then_catches_an_edit(sklearn_model: Path, fake_uv: list) -> None:
    envbuild.lock_model(sklearn_model)
    assert (
        envbuild.check_lock(sklearn_model).input_digest
        == read_env(load_model(sklearn_model)).digest()
    )
    (sklearn_model / "requirements.txt").write_text("mlflow==2.20.0\nscikit-learn==1.5.1\n")
    with pytest.raises(LockMismatchError) as info:
        envbuild.check_lock(sklearn_model)
    message = str(info.value)
    assert info.value.exit_code == ExitCode.RESOLUTION_FAILED
    assert "requirements.txt:2 adds scikit-learn==1.5.1" in message
    assert "scikit-learn==1.5.0 was removed" in message
    assert "envbuild lock" in (info.value.hint or "")
    assert len(fake_uv) == 1  # --check never resolves


def test_check_missing_and_foreign_locks(sklearn_model: Path) -> None:
    with pytest.raises(LockMismatchError) as info:
        envbuild.check_lock(sklearn_model)
    assert "no lock file" in str(info.value) and "envbuild lock" in (info.value.hint or "")
    (sklearn_model / "pylock.toml").write_text('lock-version = "1.0"\ncreated-by = "uv"\n')
    with pytest.raises(LockMismatchError, match=r"not written by envbuild"):
        envbuild.check_lock(sklearn_model)
    (sklearn_model / "pylock.toml").write_text("lock-version = [\n")
    with pytest.raises(LockMismatchError, match="not a valid TOML"):
        envbuild.check_lock(sklearn_model)


def test_check_python_and_platforms(sklearn_model: Path, fake_uv: list) -> None:
    envbuild.lock_model(sklearn_model, python="3.10")
    with pytest.raises(LockMismatchError) as info:
        envbuild.check_lock(sklearn_model)
    assert "Python 3.10" in str(info.value) and "python_env.yaml:1" in str(info.value)
    assert envbuild.check_lock(sklearn_model, python="3.10").python == "3.10"
    with pytest.raises(LockMismatchError, match="linux/arm64"):
        envbuild.check_lock(sklearn_model, python="3.10", platforms=["linux/arm64"])


def test_cli_check_exit_codes(sklearn_model: Path) -> None:
    proc = run_cli("lock", str(sklearn_model), "--check")
    assert proc.returncode == 3
    lines = proc.stderr.strip().splitlines()
    assert lines[0].startswith("error: ") and lines[0].endswith("pylock.toml: no lock file")
    assert lines[1].startswith("hint: run `envbuild lock")
    proc = run_cli("lock", str(sklearn_model), "--check", "--json")
    data = json.loads(proc.stdout)
    assert data["error"] == "LockMismatchError" and data["exit_code"] == 3


def test_cli_usage_errors(sklearn_model: Path) -> None:
    proc = run_cli("lock", str(sklearn_model), "--platform", "amiga")
    assert proc.returncode == 2 and "unknown platform 'amiga'" in proc.stderr
    proc = run_cli("lock", str(sklearn_model), "--as-of", "yesterday")
    assert proc.returncode == 2 and "invalid date" in proc.stderr
    proc = run_cli("lock", str(sklearn_model), "--python", "three")
    assert proc.returncode == 2 and "--python" in proc.stderr


# ---------------------------------------------------------------------------------------------
# uv's failures, as one line


CONFLICT = """error: No solution found when resolving dependencies
  cause: Because scikit-learn==1.5.0 depends on numpy>=1.19.5 and you require scikit-learn==1.5.0, we can conclude that you require numpy>=1.19.5.
         And because you require numpy<1.0, we can conclude that your requirements are unsatisfiable.
"""
MISSING = """error: No solution found when resolving dependencies
  cause: Because nonexistent-pkg-xyz was not found in the package registry and you require nonexistent-pkg-xyz, we can conclude that your requirements are unsatisfiable.
"""
OLD_PYTHON = """error: No solution found when resolving dependencies
  cause: Because the requested Python version (>=3.6) does not satisfy Python>=3.9 and scikit-learn==1.5.0 depends on Python>=3.9, we can conclude that scikit-learn==1.5.0 cannot be used.
         And because you require scikit-learn==1.5.0, we can conclude that your requirements are unsatisfiable.

hint: The `--python-version` value (>=3.6) includes Python versions that are not supported by your dependencies (e.g., scikit-learn==1.5.0 only supports >=3.9). Consider using a higher `--python-version` value.
"""
OFFLINE = """error: No solution found when resolving dependencies
  cause: Because scikit-learn was not found in the cache and you require scikit-learn==1.5.0, we can conclude that your requirements are unsatisfiable.

hint: Packages were unavailable because the network was disabled. When the network is disabled, registry packages may only be read from the cache.
"""
NETWORK = """error: Request failed after 3 retries in 9.5s
  cause: Failed to fetch: https://user:s3cret@pkgs.example.org/simple/scikit-learn/
  cause: error sending request for url (https://user:s3cret@pkgs.example.org/simple/scikit-learn/)
  cause: client error (Connect)
  cause: tcp connect error
  cause: Connection refused (os error 111)
"""
AS_OF = """error: No solution found when resolving dependencies
  cause: Because there is no version of scikit-learn==1.5.0 and you require scikit-learn==1.5.0, we can conclude that your requirements are unsatisfiable.

hint: `scikit-learn` was filtered by `exclude-newer` to only include packages uploaded before 2024-05-01T00:00:00Z. The requested version, v1.5.0, was published at 2024-05-21T02:08:42.779Z. Consider using `exclude-newer-package` to override the cutoff for this package.
"""


@pytest.fixture
def conflict_env(tmp_path: Path):
    from tests.conftest import write_model

    model = write_model(
        tmp_path / "m",
        {
            "MLmodel": "flavors:\n  python_function:\n    loader_module: m\n    python_version: 3.11.7\n",
            "requirements.txt": "scikit-learn==1.5.0\nnumpy<1.0\nnonexistent-pkg-xyz\n",
        },
    )
    return read_env(load_model(model))


def explain(stderr: str, env, **kw) -> ResolutionError:
    kw.setdefault("python", "3.11.7")
    return explain_failure(stderr, env=env, **kw)


def test_conflict_names_both_origins(conflict_env) -> None:
    err = explain(CONFLICT, conflict_env)
    assert err.exit_code == ExitCode.RESOLUTION_FAILED
    assert err.path == conflict_env.model_path / "requirements.txt" and err.line == 1
    assert str(err.message).startswith(
        "scikit-learn==1.5.0 conflicts with numpy<1.0 (requirements.txt:2)"
    )
    assert "depends on numpy>=1.19.5" in err.message and "\n" not in err.message


def test_missing_package(conflict_env) -> None:
    err = explain(MISSING, conflict_env)
    assert err.line == 3 and "no package named 'nonexistent-pkg-xyz'" in err.message
    assert "index-url" in (err.hint or "")


def test_unsupported_python(conflict_env) -> None:
    err = explain(OLD_PYTHON, conflict_env, python="3.6", python_from_model=False)
    assert err.message == "scikit-learn==1.5.0 does not support Python 3.6 (it needs Python>=3.9)"
    assert err.line == 1 and "--python" in (err.hint or "")


def test_offline_cache_miss(conflict_env) -> None:
    err = explain(OFFLINE, conflict_env, offline=True)
    assert "--offline" in err.message and "scikit-learn" in err.message
    assert "network" in (err.hint or "")


def test_network_failure_hides_credentials(conflict_env) -> None:
    err = explain(NETWORK, conflict_env, index="https://user:s3cret@pkgs.example.org/simple")
    assert (
        err.message
        == "cannot reach the package index pkgs.example.org: Connection refused (os error 111)"
    )
    assert "s3cret" not in json.dumps(err.to_dict())


def test_as_of_too_early(conflict_env) -> None:
    err = explain(AS_OF, conflict_env, as_of="2024-05-01T00:00:00Z")
    assert "scikit-learn==1.5.0" in err.message and "2024-05-01T00:00:00Z" in err.message
    assert "published 2024-05-21" in err.message and "--as-of" in (err.hint or "")


def test_target_named_when_several(conflict_env) -> None:
    err = explain(CONFLICT, conflict_env, platform=PLATFORMS["linux/arm64"])
    assert "for linux/arm64" in err.message


def test_warnings_for_local_files_and_missing_wheels(
    sklearn_model: Path, fake_uv: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    local = package("numpy", "1.26.4", "numpy-1.26.4-cp311-cp311-manylinux_2_17_x86_64.whl")
    local["wheels"][0]["url"] = "file:///opt/wheels/numpy-1.26.4-cp311-cp311-linux_x86_64.whl"
    sdist_only = package("oldpkg", "0.1")
    sdist_only["wheels"] = []
    monkeypatch.setitem(CANNED, "linux/amd64", {"packages": [local, sdist_only]})
    monkeypatch.setenv("PIP_FIND_LINKS", "/opt/wheels")
    lk = envbuild.lock_model(sklearn_model, write=False)
    assert any(
        w.startswith("the lock refers to local files for numpy") and "PIP_FIND_LINKS" in w
        for w in lk.warnings
    ), lk.warnings
    assert any("oldpkg==0.1 has no wheel for linux/amd64" in w for w in lk.warnings)


def test_requirements_txt_for_pip(sklearn_model: Path, fake_uv: list) -> None:
    lk = envbuild.lock_model(sklearn_model, platforms=["linux/amd64", "windows"], write=False)
    text = lk.requirements_txt()
    assert text.startswith("colorama==0.4.6 ; (sys_platform == 'win32') and (")
    numpy = text.split("numpy==1.26.4 \\\n", 1)[1].split("scikit-learn")[0]
    assert numpy.count("--hash=sha256:") == 3  # both wheels and the sdist
    from pip_requirements_parser import RequirementsFile

    target = sklearn_model / "locked.txt"
    target.write_text(text)
    parsed = RequirementsFile.from_file(str(target))
    assert not parsed.invalid_lines
    assert sorted(r.name for r in parsed.requirements) == ["colorama", "numpy", "scikit-learn"]

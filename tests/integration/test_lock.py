"""`envbuild lock` against the real PyPI, on models saved by the real MLflow.

Each test copies its session model into its own folder (the lock is written next to MLmodel).
The environment given to envbuild ignores this machine's pip configuration (local file:// indexes)
so that locks refer to PyPI, as they would on a user's machine or in CI.
"""

from __future__ import annotations

import glob
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.version import Version

from envbuild.lock.pylock import tomllib
from tests.conftest import run_cli, write_model

pytestmark = [pytest.mark.integration, pytest.mark.network]

UV = shutil.which("uv", path=str(Path(sys.executable).parent)) or "uv"
SECRET = "s3cret-t0ken"


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    """The user's environment minus pip's configuration; envbuild's logs in a temp folder."""
    env = dict(os.environ)
    for var in list(env):
        if var.startswith(("PIP_", "UV_INDEX", "UV_EXTRA_INDEX", "UV_DEFAULT_INDEX")) or var in (
            "UV_FIND_LINKS",
            "UV_EXCLUDE_NEWER",
        ):
            env.pop(var)
    env["PIP_CONFIG_FILE"] = os.devnull
    env["ENVBUILD_CACHE_DIR"] = str(tmp_path / "envbuild-cache")
    return env


def copy_model(model: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(model, tmp_path / model.name))


def lock_json(model: Path, env: dict[str, str], *args: str) -> dict:
    proc = run_cli("lock", str(model), *args, "--json", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout)


def read_toml(path: Path) -> dict:
    return tomllib.loads(path.read_text())


def files_of(doc: dict) -> list[dict]:
    return [f for p in doc["packages"] for f in [*p.get("wheels", []), p.get("sdist") or {}] if f]


def pins_of(requirements: Path) -> dict[str, str]:
    out = {}
    for line in requirements.read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==", 1)
            out[name.strip().lower()] = version.strip()
    return out


def make_venv(python: str, where: Path) -> Path:
    subprocess.run([UV, "venv", "-q", "--python", python, str(where)], check=True)
    return where / "bin" / "python"


def sync(lock_path: Path, python: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """What the environment builder does with a lock."""
    return subprocess.run(
        [
            *(UV, "pip", "sync", "-q", "--preview-features", "pylock", "--require-hashes"),
            *("--python", str(python), str(lock_path)),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )


def installed(python: Path) -> dict[str, str]:
    code = (
        "import json, importlib.metadata as m\n"
        "print(json.dumps({d.metadata['Name'].lower().replace('_', '-'): d.version "
        "for d in m.distributions()}))"
    )
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def select_wheels(doc: dict, machine: str, python: str) -> dict[str, str]:
    """What a PEP 751 installer on Linux ``machine`` with ``python`` picks: name -> file name.

    packaging's own PEP 751 reader validates the file and evaluates markers and wheel tags, so
    this checks the arm64 part of a lock without an arm64 machine.
    """
    pylock = pytest.importorskip("packaging.pylock")
    from packaging.tags import compatible_tags, cpython_tags

    major, minor = (int(x) for x in python.split(".")[:2])
    platforms = [f"manylinux_2_{n}_{machine}" for n in range(28, 4, -1)]
    platforms += [f"manylinux{alias}_{machine}" for alias in ("2014", "2010", "1")]
    platforms.append(f"linux_{machine}")
    tags = [
        *cpython_tags((major, minor), platforms=platforms),
        *compatible_tags((major, minor), platforms=platforms),
    ]
    environment = {
        "implementation_name": "cpython",
        "implementation_version": f"{python}.0",
        "os_name": "posix",
        "platform_machine": machine,
        "platform_release": "",
        "platform_system": "Linux",
        "platform_version": "",
        "python_full_version": f"{python}.0",
        "platform_python_implementation": "CPython",
        "python_version": python,
        "sys_platform": "linux",
    }
    lock = pylock.Pylock.from_dict(doc)
    chosen = lock.select(environment=environment, tags=tags)
    return {
        str(package.name): (dist.name or getattr(dist, "url", None) or "").rsplit("/", 1)[-1]
        for package, dist in chosen
    }


def pyenv_python(minor: str) -> str | None:
    root = os.environ.get("PYENV_ROOT", str(Path.home() / ".pyenv"))
    found = sorted(glob.glob(f"{root}/versions/{minor}.*/bin/python{minor}"))
    return found[-1] if found else None


# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_sklearn_model_lock_installs_what_mlflow_pinned(
    sklearn_iris_model: Path, tmp_path: Path, cli_env: dict[str, str]
) -> None:
    model = copy_model(sklearn_iris_model, tmp_path)
    data = lock_json(model, cli_env)
    path = model / "pylock.toml"
    assert data["path"] == str(path) and data["changed"] is True
    inspected = json.loads(run_cli("inspect", str(model), "--json", env=cli_env).stdout)
    assert data["input_digest"] == inspected["env_digest"]
    assert data["python"] == inspected["python_version"]
    assert data["platforms"] == ["linux/amd64"] and data["as_of"] is None
    assert data["package_count"] == len(data["packages"]) > 30

    doc = read_toml(path)
    assert doc["lock-version"] == "1.0" and doc["created-by"] == "envbuild"
    assert doc["requires-python"] == "==" + ".".join(data["python"].split(".")[:2]) + ".*"
    assert doc["tool"]["envbuild"]["input-digest"] == data["input_digest"]
    locked = {p["name"]: p["version"] for p in doc["packages"]}
    for name, version in pins_of(model / "requirements.txt").items():
        assert locked[name] == version, name  # every pin MLflow wrote is kept as is
    for entry in files_of(doc):
        assert re.fullmatch(r"[0-9a-f]{64}", entry["hashes"]["sha256"]), entry
        assert entry["url"].startswith("https://files.pythonhosted.org/"), entry["url"]
    wheels = [w["url"].rsplit("/", 1)[-1] for p in doc["packages"] for w in p.get("wheels", [])]
    assert all(re.search(r"(manylinux\w*_x86_64|linux_x86_64|-any)\.whl$", w) for w in wheels)
    minor = ".".join(data["python"].split(".")[:2])
    assert len(select_wheels(doc, "x86_64", minor)) == data["package_count"]
    assert run_cli("lock", str(model), "--check", env=cli_env).returncode == 0

    # what the environment builder does: uv installs the lock, hashes required
    python = make_venv(sys.executable, tmp_path / "venv")
    proc = sync(path, python, cli_env)
    assert proc.returncode == 0, proc.stderr
    have = installed(python)
    for package in doc["packages"]:
        if "marker" not in package:
            assert have.get(package["name"]) == package["version"], package["name"]


def test_same_inputs_give_the_same_bytes_also_offline(
    custom_pyfunc_model: Path, tmp_path: Path, cli_env: dict[str, str]
) -> None:
    model = copy_model(custom_pyfunc_model, tmp_path)
    first = lock_json(model, cli_env, "--as-of", "2026-11-20")
    text = (model / "pylock.toml").read_bytes()
    again = lock_json(model, cli_env, "--as-of", "2026-11-20")
    assert again["changed"] is False and again["digest"] == first["digest"]
    (model / "pylock.toml").unlink()
    offline = lock_json(model, cli_env, "--as-of", "2026-11-20", "--offline")
    assert (model / "pylock.toml").read_bytes() == text
    assert offline["digest"] == first["digest"]
    assert first["digest"] == "sha256:" + __import__("hashlib").sha256(text).hexdigest()
    assert b"upload-time" in text and b"#" not in text


@pytest.mark.slow
def test_cross_target_lock_from_another_python(
    custom_pyfunc_model: Path, tmp_path: Path, cli_env: dict[str, str]
) -> None:
    """Python 3.10 on Linux amd64 and arm64, from this 3.11 (or other) host."""
    model = copy_model(custom_pyfunc_model, tmp_path)
    data = lock_json(
        model, cli_env, "--python", "3.10", "--platform", "linux/amd64", "--platform", "linux/arm64"
    )
    assert data["python"] == "3.10" and data["requires_python"] == "==3.10.*"
    assert data["platforms"] == ["linux/amd64", "linux/arm64"]
    doc = read_toml(model / "pylock.toml")
    assert doc["environments"] == [
        "sys_platform == 'linux' and platform_machine == 'x86_64'",
        "sys_platform == 'linux' and platform_machine == 'aarch64'",
    ]
    numpy = [p for p in doc["packages"] if p["name"] == "numpy"]
    tags = [w["url"].rsplit("/", 1)[-1] for p in numpy for w in p["wheels"]]
    assert any("cp310" in t and "x86_64" in t for t in tags), tags
    assert any("cp310" in t and "aarch64" in t for t in tags), tags
    assert not any("cp311" in t for t in tags)
    # a PEP 751 installer on each target finds a wheel for every package
    for machine in ("x86_64", "aarch64"):
        picked = select_wheels(doc, machine, "3.10")
        assert len(picked) >= len(numpy) and "mlflow" in picked
        for name, file in picked.items():
            assert file.endswith(".whl"), (machine, name, file)
            assert machine in file or file.endswith("-any.whl"), (machine, name, file)

    # --check knows the lock is for 3.10, not the model's Python
    proc = run_cli("lock", str(model), "--check", env=cli_env)
    assert proc.returncode == 3 and "locked for Python 3.10" in proc.stderr
    proc = run_cli(
        "lock", str(model), "--check", "--python", "3.10", "--platform", "linux/arm64,linux/amd64"
    )
    assert proc.returncode == 0, proc.stderr

    python310 = pyenv_python("3.10")
    if python310 is None:
        pytest.skip("no Python 3.10 interpreter to install the lock into")
    venv = make_venv(python310, tmp_path / "venv310")
    proc = sync(model / "pylock.toml", venv, cli_env)
    assert proc.returncode == 0, proc.stderr
    have = installed(venv)
    assert have["mlflow"] == pins_of(model / "requirements.txt")["mlflow"]
    assert have["numpy"] == numpy[0]["version"]
    # and the lock refuses an interpreter it was not made for
    wrong = make_venv(sys.executable, tmp_path / "venv-host")
    refused = sync(model / "pylock.toml", wrong, cli_env)
    assert refused.returncode != 0 and "3.10" in refused.stderr


def test_as_of_model_gives_the_releases_of_its_day(
    custom_pyfunc_model: Path, tmp_path: Path, cli_env: dict[str, str]
) -> None:
    """An old model that pinned only scikit-learn gets the numpy and scipy of its day."""
    model = copy_model(custom_pyfunc_model, tmp_path)
    (model / "requirements.txt").write_text("scikit-learn\n")
    mlmodel = model / "MLmodel"
    mlmodel.write_text(
        re.sub(
            r"utc_time_created: .*",
            "utc_time_created: '2024-05-01 10:00:00.123456'",
            mlmodel.read_text(),
        )
    )
    data = lock_json(model, cli_env, "--as-of", "model")
    assert data["as_of"] == "2024-05-01T10:00:00Z"
    doc = read_toml(model / "pylock.toml")
    assert doc["tool"]["envbuild"]["as-of"] == "2024-05-01T10:00:00Z"
    locked = {p["name"]: Version(p["version"]) for p in doc["packages"]}
    assert locked["scikit-learn"] < Version(importlib.metadata.version("scikit-learn"))
    assert locked["scikit-learn"] == Version("1.4.2")  # the newest release on 2024-05-01
    assert locked["numpy"] < Version("2")  # numpy 2.0 came out in June 2024
    assert locked["scipy"] < Version(importlib.metadata.version("scipy"))
    for entry in files_of(doc):
        assert entry["upload-time"].isoformat() < "2024-05-01T10:00:00", entry["url"]


def test_check_catches_an_edited_requirements_file_without_network(
    custom_pyfunc_model: Path, tmp_path: Path, cli_env: dict[str, str]
) -> None:
    model = copy_model(custom_pyfunc_model, tmp_path)
    lock_json(model, cli_env)
    no_network = dict(cli_env, HTTPS_PROXY="http://127.0.0.1:9", HTTP_PROXY="http://127.0.0.1:9")
    assert run_cli("lock", str(model), "--check", env=no_network).returncode == 0
    lines = (model / "requirements.txt").read_text().splitlines()
    (model / "requirements.txt").write_text("\n".join([*lines, "requests==2.32.3"]) + "\n")
    proc = run_cli("lock", str(model), "--check", env=no_network)
    assert proc.returncode == 3
    # (the edit also makes conda.yaml disagree: read_env warns about that first)
    shown = [line for line in proc.stderr.splitlines() if not line.startswith("warning: ")]
    assert shown[0].startswith("error: ") and "pylock.toml: out of date" in shown[0]
    assert f"requirements.txt:{len(lines) + 1} adds requests==2.32.3" in shown[0]
    assert shown[1].startswith("hint: run `envbuild lock ")


# ---------------------------------------------------------------------------------------------
# errors a user must understand


MLMODEL = """
flavors:
  python_function:
    loader_module: mlflow.pyfunc.model
    python_version: 3.11.7
utc_time_created: '2024-05-01 10:00:00.000000'
"""


def hand_model(tmp_path: Path, requirements: str) -> Path:
    return write_model(tmp_path / "model", {"MLmodel": MLMODEL, "requirements.txt": requirements})


def failing(model: Path, env: dict[str, str], *args: str) -> list[str]:
    """Run a lock that must fail: exit 3, a one-line error (+ hint, log), nothing written."""
    before = sorted(p.name for p in model.iterdir())
    proc = run_cli("lock", str(model), *args, env=env)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert proc.stdout == "" and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[0].startswith("error: ")
    assert all(line.startswith(("hint: ", "log: ", "warning: ")) for line in lines[1:]), lines
    assert sorted(p.name for p in model.iterdir()) == before  # no lock, no temporary file
    return lines


def test_conflict_names_the_packages_and_their_lines(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    model = hand_model(tmp_path, "pandas\nscikit-learn==1.5.0\nnumpy<1.0\n")
    (model / "pylock.toml").write_text("previous lock\n")
    lines = failing(model, cli_env)
    assert "requirements.txt:2: scikit-learn==1.5.0 conflicts with" in lines[0]
    assert "numpy<1.0 (requirements.txt:3)" in lines[0]
    assert (model / "pylock.toml").read_text() == "previous lock\n"


def test_python_version_no_package_supports(tmp_path: Path, cli_env: dict[str, str]) -> None:
    model = hand_model(tmp_path, "scikit-learn==1.5.0\n")
    lines = failing(model, cli_env, "--python", "3.6")
    assert lines[0].endswith(
        "requirements.txt:1: scikit-learn==1.5.0 does not support Python 3.6 (it needs Python>=3.9)"
    )


def test_package_that_does_not_exist(tmp_path: Path, cli_env: dict[str, str]) -> None:
    model = hand_model(tmp_path, "scikit-learn\nenvbuild-no-such-package-4242\n")
    lines = failing(model, cli_env)
    assert "requirements.txt:2" in lines[0]
    assert "no package named 'envbuild-no-such-package-4242'" in lines[0]


def test_no_network_and_no_cache(tmp_path: Path, cli_env: dict[str, str]) -> None:
    model = hand_model(tmp_path, "scikit-learn\n")
    env = dict(
        cli_env,
        HTTPS_PROXY="http://127.0.0.1:9",
        HTTP_PROXY="http://127.0.0.1:9",
        UV_CACHE_DIR=str(tmp_path / "empty-uv-cache"),
        UV_HTTP_RETRIES="0",
    )
    lines = failing(model, env)
    assert "cannot reach the package index pypi.org" in lines[0]
    lines = failing(model, env, "--offline")
    assert "--offline: scikit-learn is not in uv's cache" in lines[0]


def test_credentials_never_reach_the_lock_or_the_logs(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    model = hand_model(tmp_path, "six\n")
    index = f"https://envbuild:{SECRET}@pypi.org/simple"
    data = lock_json(model, cli_env, "--index-url", index)
    assert data["indexes"]["index-url"] == "https://***@pypi.org/simple"
    proc = run_cli(
        "lock",
        str(model),
        "--extra-index-url",
        f"https://envbuild:{SECRET}@127.0.0.1:9/simple",
        env=dict(cli_env, UV_HTTP_RETRIES="0"),
    )
    assert proc.returncode == 3
    logs = Path(cli_env["ENVBUILD_CACHE_DIR"], "logs")
    assert list(logs.iterdir())
    for text in (
        proc.stdout,
        proc.stderr,
        json.dumps(data),
        (model / "pylock.toml").read_text(),
        *(p.read_text() for p in logs.iterdir()),
    ):
        assert SECRET not in text


def test_changing_pip_or_uv_index_settings_gives_a_new_cached_lock(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    """Issue 16: a lock resolved under other index settings is never reused (real uv)."""
    model = write_model(
        tmp_path / "m",
        {
            "MLmodel": "flavors:\n  python_function:\n    loader_module: x\n"
            "    python_version: 3.11.7\n",
            "requirements.txt": "six==1.16.0\n",
        },
    )
    links, other = tmp_path / "links", tmp_path / "other-links"
    links.mkdir()
    other.mkdir()
    pip_conf = tmp_path / "pip.conf"
    pip_conf.write_text(f"[global]\nfind-links = {links}\n")

    def cached_lock(**extra: str) -> Path:
        done = run_cli("env", str(model), "--json", "--no-compile", env={**cli_env, **extra})
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        assert report["lock_source"] == "cache"
        return Path(report["lock"])

    plain = cached_lock()
    settings = {
        "pip.conf": {"PIP_CONFIG_FILE": str(pip_conf)},
        "PIP_FIND_LINKS": {"PIP_FIND_LINKS": str(other)},
        "UV_EXTRA_INDEX_URL": {"UV_EXTRA_INDEX_URL": "https://pypi.org/simple/"},
        "torch mirror": {"ENVBUILD_TORCH_INDEX_URL": "http://127.0.0.1:9/{accelerator}"},
    }
    paths = {name: cached_lock(**extra) for name, extra in settings.items()}
    assert len({plain, *paths.values()}) == 1 + len(settings), paths
    recorded = read_toml(paths["pip.conf"])["tool"]["envbuild"]
    assert recorded["find-links"] == [str(links)]
    # the same effective settings from another place are the same resolution
    assert cached_lock(PIP_FIND_LINKS=str(links)) == paths["pip.conf"]
    # back to the first settings: the first cached lock, not a new resolution
    before = plain.stat().st_mtime_ns
    assert cached_lock() == plain and plain.stat().st_mtime_ns == before

"""Conda environments with real py-rattler, from the local channel (tests/integration/conda_channel.py).

What a user relies on: the lock is the same bytes for the same inputs and reads back; failures
name the conda.yaml line or the channel; the prefix's Python is the channel's own (relocated, its
libpython from the prefix), and both kinds of prefix placeholder are replaced; a killed build is
never used; concurrent builds build once; offline installs come from the package cache only;
a package whose sha256 differs from the lock is refused; credentials never reach a lock or the
prefix.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from envbuild.cache import MARKER, is_finished
from envbuild.conda.activate import activation_env
from envbuild.conda.channels import ALIAS_ENV, resolve_channels
from envbuild.conda.install import build_env, env_key, install
from envbuild.conda.lockfile import CondaLock, lock_from_text, write_lock
from envbuild.conda.solve import solve
from envbuild.conda.spec import CondaSpec, conda_spec
from envbuild.envspec import read_env
from envbuild.errors import BuildError, ExitCode, ResolutionError
from envbuild.model import load_model
from tests.conftest import REPO, write_model
from tests.integration import conda_channel as channel_fixture
from tests.integration.conda_channel import DATA_TEXT, LocalChannel

pytestmark = [pytest.mark.integration, pytest.mark.slow]

conda_channel = channel_fixture.conda_channel


@pytest.fixture(scope="module", autouse=True)
def isolated_rattler_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """rattler's own caches (repodata, and packages when no cache is given) stay out of the
    user's ~/.cache/rattler."""
    path = tmp_path_factory.mktemp("rattler-cache")
    saved = os.environ.get("RATTLER_CACHE_DIR")
    os.environ["RATTLER_CACHE_DIR"] = str(path)
    yield path
    if saved is None:
        os.environ.pop("RATTLER_CACHE_DIR", None)
    else:
        os.environ["RATTLER_CACHE_DIR"] = saved


MLMODEL = """
flavors:
  python_function:
    env:
      conda: conda.yaml
    loader_module: mlflow.pyfunc.model
    python_version: 3.10.13
mlflow_version: 2.20.0
"""

CONDA_YAML = """
channels:
- {channel}
dependencies:
- python=3.10.13
- envbuild-prefixprobe
- envbuild-greet=1.0
- pip
- pip:
  - six==1.16.0
name: mlflow-env
"""

PROBE = """
import json, os, sys, prefixprobe
maps = [line.split()[-1] for line in open("/proc/self/maps") if "libpython" in line]
print(json.dumps({
    "prefix": sys.prefix,
    "base_prefix": sys.base_prefix,
    "executable": os.path.realpath(sys.executable),
    "version": sys.version.split()[0],
    "libpython": sorted(set(maps)),
    "probe": prefixprobe.probe(),
}))
"""


def model(tmp_path: Path, channel: str, conda_yaml: str = CONDA_YAML) -> Path:
    return write_model(
        tmp_path / "model", {"MLmodel": MLMODEL, "conda.yaml": conda_yaml.format(channel=channel)}
    )


def spec_for(folder: Path) -> CondaSpec:
    return conda_spec(read_env(load_model(folder)))


@pytest.fixture(scope="module")
def locked(conda_channel: LocalChannel, tmp_path_factory: pytest.TempPathFactory) -> CondaLock:
    """The test model's lock, solved from the channel's file:// URL."""
    folder = model(tmp_path_factory.mktemp("conda-model"), conda_channel.url)
    return solve(spec_for(folder))


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_in(prefix: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run a command in the prefix with an environment in which no other Python is visible."""
    env = activation_env(prefix, {"PATH": "/usr/bin:/bin", "HOME": str(prefix), "LANG": "C.UTF-8"})
    exe = shutil.which(args[0], path=env["PATH"]) or args[0]
    return subprocess.run([exe, *args[1:]], env=env, capture_output=True, text=True, check=False)


# ---------------------------------------------------------------------------------------------
# solving


def test_solve_is_deterministic_and_the_lock_reads_back(
    locked: CondaLock, conda_channel: LocalChannel, tmp_path: Path
) -> None:
    again = solve(spec_for(model(tmp_path, conda_channel.url)))
    assert again.text == locked.text and again.digest == locked.digest
    assert locked.digest == "sha256:" + hashlib.sha256(locked.text.encode()).hexdigest()
    versions = {r.name: r.version for r in locked.records}
    assert versions == {
        "envbuild-greet": "1.0",
        "envbuild-prefixprobe": "1.0",
        "envbuild-util": "0.2",  # the newest: nothing excluded
        "pip": versions["pip"],
        "python": "3.10.13",
    }
    assert locked.python_version == "3.10.13"
    assert locked.platform == "linux-64"
    assert "__glibc=2.28=0" in locked.virtual_packages
    assert locked.channels == (conda_channel.url + "/",)
    for record in locked.records:  # every URL and sha256 is the channel's file
        local = conda_channel.path / record.subdir / record.file_name
        assert record.url == local.as_uri()
        assert record.sha256 == sha256_of(local)
        assert f"{record.url}#{record.sha256}" in locked.explicit()
    assert lock_from_text(locked.text) == locked
    assert any("local folder" in w for w in locked.warnings)
    written = write_lock(locked, tmp_path / "pixi.lock")
    assert written.path is not None and written.path.read_text() == locked.text


def test_exclude_newer_picks_what_existed_then(conda_channel: LocalChannel, tmp_path: Path) -> None:
    spec = spec_for(model(tmp_path, conda_channel.url))
    old = solve(spec, exclude_newer=datetime(2024, 1, 1, tzinfo=timezone.utc))
    assert old.record("envbuild-util") is not None
    assert old.record("envbuild-util").version == "0.1"  # type: ignore[union-attr]


def test_unsatisfiable_spec_names_its_conda_yaml_line(
    conda_channel: LocalChannel, tmp_path: Path
) -> None:
    yaml = CONDA_YAML.replace(
        "- envbuild-greet=1.0\n", "- envbuild-greet=1.0\n- envbuild-util>=9\n"
    )
    folder = model(tmp_path, conda_channel.url, yaml)
    with pytest.raises(ResolutionError) as info:
        solve(spec_for(folder))
    error = info.value
    assert error.exit_code == ExitCode.RESOLUTION_FAILED == 3
    assert error.path == folder / "conda.yaml" and error.line == 7
    assert error.format() == (
        f"{folder / 'conda.yaml'}:7: dependencies: envbuild-util>=9 cannot be solved for "
        "linux-64: No candidates were found for envbuild-util >=9."
    )


def test_conflict_blames_the_spec_the_solver_rejects(
    conda_channel: LocalChannel, tmp_path: Path
) -> None:
    yaml = CONDA_YAML.replace(
        "- envbuild-greet=1.0\n", "- envbuild-util=0.1\n- envbuild-util=0.2\n"
    )
    folder = model(tmp_path, conda_channel.url, yaml)
    with pytest.raises(ResolutionError) as info:
        solve(spec_for(folder))
    assert info.value.line in (6, 7)
    assert "envbuild-util" in info.value.message and "\n" not in info.value.format()


def test_virtual_packages_are_the_targets(conda_channel: LocalChannel, tmp_path: Path) -> None:
    """A GPU package needs ``__cuda``: the target has it only when asked, whatever the host has."""
    yaml = CONDA_YAML.replace("- pip\n", "- pip\n- __cuda>=11.8\n")
    spec = spec_for(model(tmp_path, conda_channel.url, yaml))
    with pytest.raises(ResolutionError) as info:
        solve(spec)
    assert "__cuda >=11.8" in info.value.message and info.value.line == 8
    assert info.value.hint and "__glibc=2.28=0" in info.value.hint and "--cuda" in info.value.hint
    gpu = solve(spec, cuda="12.0")
    assert "__cuda=12.0=0" in gpu.virtual_packages
    with pytest.raises(ResolutionError) as info:  # the channel's python is linux-64 only
        solve(spec, cuda="12.0", platform="osx-arm64")
    assert "python=3.10.13 cannot be solved for osx-arm64" in info.value.message
    assert info.value.line == 4


def test_unknown_channel_is_named(
    conda_channel: LocalChannel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "no-such-channel"
    folder = model(tmp_path, missing.as_uri())
    with pytest.raises(ResolutionError) as info:
        solve(spec_for(folder))
    assert info.value.exit_code == 3
    assert info.value.path == folder / "conda.yaml" and info.value.field == "channels"
    assert info.value.message.startswith(
        f"channel {missing.as_uri()} ({missing.as_uri()}/): not found"
    )
    monkeypatch.setenv(ALIAS_ENV, str(conda_channel.alias_root))
    folder = model(tmp_path / "named", "not-a-channel")
    with pytest.raises(ResolutionError) as info:
        solve(spec_for(folder))
    assert info.value.message.startswith(
        "channel not-a-channel (https://conda.anaconda.org/not-a-channel/): not found"
    )
    monkeypatch.setenv(ALIAS_ENV, "http://user:s3cret@127.0.0.1:9/")  # nothing listens there
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    folder = model(tmp_path / "unreachable", "conda-forge")
    with pytest.raises(ResolutionError) as info:
        solve(spec_for(folder))
    assert info.value.message.startswith(
        "channel conda-forge (https://conda.anaconda.org/conda-forge/): cannot be reached: "
    )
    assert "127.0.0.1:9" in info.value.message and "s3cret" not in info.value.format()


# ---------------------------------------------------------------------------------------------
# installing


def test_prefix_runs_the_channels_own_python_with_prefixes_replaced(
    locked: CondaLock, tmp_path: Path
) -> None:
    env = build_env(locked, root=tmp_path / "cache", package_cache=tmp_path / "pkgs")
    assert env.built and env.python_version == "3.10.13"
    assert env.path == tmp_path / "cache" / "conda" / env_key(locked)
    assert is_finished(env.path, env.key)
    done = run_in(env.path, "python", "-c", PROBE)
    assert done.returncode == 0, done.stderr
    facts = json.loads(done.stdout)
    prefix = str(env.path)
    assert facts["prefix"] == facts["base_prefix"] == prefix  # a prefix, not a venv
    assert facts["executable"] == f"{prefix}/bin/python3.10"  # a copy, not a link to pyenv's
    assert facts["version"] == "3.10.13"
    assert facts["libpython"] == [f"{prefix}/lib/libpython3.10.so.1.0"]  # rpath fixed
    data = f"{prefix}/share/envbuild-prefixprobe/data.txt"
    assert facts["probe"] == {  # text and binary placeholders both replaced
        "text": {"path": data, "content": DATA_TEXT},
        "binary": {"path": data, "content": DATA_TEXT},
    }
    greet = run_in(env.path, "envbuild-greet")  # a noarch entry point, found on PATH
    assert greet.stdout == "hello from envbuild-greet, util 0.2\n", greet.stderr
    pip = run_in(env.path, "python", "-m", "pip", "--version")
    assert pip.returncode == 0 and f"{prefix}/lib/python3.10/site-packages/pip" in pip.stdout
    config = (env.path / "bin" / "python3.10-config").read_text()
    assert prefix in config and "/.pyenv/" not in config  # text files relocated to the prefix
    again = build_env(locked, root=tmp_path / "cache", package_cache=tmp_path / "pkgs")
    assert not again.built and again.path == env.path


def test_prefix_built_for_another_path_works_once_moved_there(
    locked: CondaLock, tmp_path: Path
) -> None:
    """How an image gets /opt/env: built on the host for the final path, then moved (copied)."""
    build, final = tmp_path / "build", tmp_path / "final"
    install(locked, build, package_cache=tmp_path / "pkgs", target_prefix=final)
    assert not final.exists()
    build.rename(final)
    done = run_in(final, "python", "-c", PROBE)
    assert done.returncode == 0, done.stderr
    facts = json.loads(done.stdout)
    assert facts["prefix"] == str(final)
    assert facts["probe"]["binary"]["content"] == facts["probe"]["text"]["content"] == DATA_TEXT
    assert run_in(final, "envbuild-greet").returncode == 0
    with pytest.raises(BuildError, match="link scripts cannot run"):
        install(locked, tmp_path / "b2", target_prefix=final, link_scripts=True)


def test_killed_build_never_looks_finished(locked: CondaLock, tmp_path: Path) -> None:
    lock_file = write_lock(locked, tmp_path / "pixi.lock").path
    root, pkgs = tmp_path / "cache", tmp_path / "pkgs"
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.integration.conda_worker",
            str(lock_file),
            str(root),
            str(pkgs),
            "--block-at-link",
        ],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline() == "linking\n"  # mid-install: a package is being linked
    child.send_signal(signal.SIGKILL)
    child.wait()
    entry = root / "conda" / env_key(locked)
    assert entry.is_dir() and (entry / "conda-meta").is_dir()  # half a prefix is there...
    assert not (entry / MARKER).exists() and not is_finished(entry, env_key(locked))  # ...unused
    env = build_env(locked, root=root, package_cache=pkgs)
    assert env.built and env.path == entry  # rebuilt from scratch, then usable
    assert run_in(env.path, "envbuild-greet").returncode == 0


def test_concurrent_builds_do_the_work_once(locked: CondaLock, tmp_path: Path) -> None:
    lock_file = write_lock(locked, tmp_path / "pixi.lock").path
    args = [sys.executable, "-m", "tests.integration.conda_worker", str(lock_file)]
    args += [str(tmp_path / "cache"), str(tmp_path / "pkgs")]
    children = [
        subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, text=True) for _ in range(4)
    ]
    results = []
    for child in children:
        out, _ = child.communicate(timeout=300)
        assert child.returncode == 0
        results.append(json.loads(out.splitlines()[-1]))
    assert sorted(r["built"] for r in results) == [False, False, False, True]
    assert len({r["path"] for r in results}) == 1
    assert is_finished(Path(results[0]["path"]), env_key(locked))


def test_a_mirror_keeps_the_lock_canonical_and_offline_uses_the_cache_only(
    conda_channel: LocalChannel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ALIAS_ENV, str(conda_channel.alias_root))
    lock = solve(spec_for(model(tmp_path, conda_channel.name)))
    canonical = f"https://conda.anaconda.org/{conda_channel.name}/"
    assert lock.channels == (canonical,)
    assert all(r.url.startswith(canonical) for r in lock.records) and "file:" not in lock.text
    pkgs = tmp_path / "pkgs"
    install(lock, tmp_path / "through-mirror", package_cache=pkgs)  # fills the package cache
    meta = json.loads(
        next((tmp_path / "through-mirror" / "conda-meta").glob("envbuild-greet-*.json")).read_text()
    )
    assert meta["url"] == canonical + "noarch/envbuild-greet-1.0-pyh_0.tar.bz2"
    monkeypatch.delenv(ALIAS_ENV)  # no mirror now: conda.anaconda.org would be the only source
    stats = install(lock, tmp_path / "offline", package_cache=pkgs, offline=True)
    assert stats.downloaded == 0 and stats.packages == len(lock.records)
    assert run_in(tmp_path / "offline", "envbuild-greet").returncode == 0
    with pytest.raises(BuildError) as info:
        install(lock, tmp_path / "empty-cache", package_cache=tmp_path / "empty", offline=True)
    assert info.value.exit_code == ExitCode.BUILD_FAILED == 4
    first = lock.records[0]
    assert info.value.message == (
        f"--offline: {first.name}={first.version}={first.build} is not in the package cache "
        f"{tmp_path / 'empty'} (and {len(lock.records) - 1} more)"
    )


def tampered(lock: CondaLock, name: str) -> CondaLock:
    record = lock.record(name)
    assert record is not None
    return lock_from_text(lock.text.replace(record.sha256, "0" * 64))


def test_sha256_mismatch_of_a_local_package_is_refused(locked: CondaLock, tmp_path: Path) -> None:
    bad = tampered(locked, "envbuild-util")
    with pytest.raises(BuildError) as info:
        install(bad, tmp_path / "prefix", package_cache=tmp_path / "pkgs")
    assert info.value.exit_code == 4
    assert info.value.message.startswith(
        f"envbuild-util-0.2-pyh_0.tar.bz2: sha256 mismatch: the lock says {'0' * 64}"
    )
    install(locked, tmp_path / "good", package_cache=tmp_path / "pkgs")
    with pytest.raises(BuildError, match="sha256 mismatch"):  # a cached copy does not hide it
        install(bad, tmp_path / "prefix2", package_cache=tmp_path / "pkgs")


@contextlib.contextmanager
def served(folder: Path) -> Iterator[int]:
    """An HTTP server for ``folder`` on 127.0.0.1 (it ignores the credentials it is sent)."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_credentials_of_a_mirror_stay_out_of_lock_prefix_and_messages(
    conda_channel: LocalChannel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with served(conda_channel.alias_root) as port:
        monkeypatch.setenv(ALIAS_ENV, f"http://user:s3cret@127.0.0.1:{port}/")
        channels = resolve_channels([conda_channel.name])
        lock = solve(spec_for(model(tmp_path, conda_channel.name)), channels=channels)
        assert "s3cret" not in lock.text and "127.0.0.1" not in lock.text
        prefix = tmp_path / "prefix"
        install(lock, prefix, package_cache=tmp_path / "pkgs", channels=channels)
        for meta in (prefix / "conda-meta").iterdir():
            assert "s3cret" not in meta.read_text(errors="replace"), meta
        with pytest.raises(BuildError) as info:  # rattler's own check of a download
            install(
                tampered(lock, "envbuild-util"), tmp_path / "p2", package_cache=tmp_path / "p2pkgs"
            )
        assert "sha256 mismatch" in info.value.message and info.value.exit_code == 4
        assert "s3cret" not in info.value.format()
        assert "***" in info.value.format()


def test_package_scripts_run_only_when_asked(conda_channel: LocalChannel, tmp_path: Path) -> None:
    yaml = CONDA_YAML.replace("- pip\n", "- pip\n- envbuild-scripts\n")
    lock = solve(spec_for(model(tmp_path, conda_channel.url, yaml)))
    marker = Path("share", "envbuild-scripts", "post-link-ran")
    quiet, loud = tmp_path / "quiet", tmp_path / "loud"
    install(lock, quiet, package_cache=tmp_path / "pkgs")
    assert not (quiet / marker).exists()  # post-link scripts are package code: off by default
    assert "ENVBUILD_ACTIVATED" not in activation_env(quiet, {"PATH": "/usr/bin:/bin"})
    install(lock, loud, package_cache=tmp_path / "pkgs", link_scripts=True)
    assert (loud / marker).read_text() == "envbuild-scripts\n"
    activated = activation_env(loud, {"PATH": "/usr/bin:/bin"}, run_scripts=True)
    assert activated["ENVBUILD_ACTIVATED"] == "1"
    assert activated["CONDA_PREFIX"] == str(loud)
    assert activated["PATH"].split(os.pathsep)[0] == str(loud / "bin")


def test_offline_solve_uses_cached_repodata_only(
    conda_channel: LocalChannel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    folder = model(tmp_path, conda_channel.name)
    with served(conda_channel.alias_root) as port:
        monkeypatch.setenv(ALIAS_ENV, f"http://127.0.0.1:{port}/")
        online = solve(spec_for(folder), repodata_cache=tmp_path / "repodata")
    # the server is gone: only the cache can answer
    offline = solve(spec_for(folder), repodata_cache=tmp_path / "repodata", offline=True)
    assert offline.text == online.text
    with pytest.raises(ResolutionError) as info:
        solve(spec_for(folder), repodata_cache=tmp_path / "empty", offline=True)
    assert info.value.exit_code == 3 and info.value.field == "channels"
    assert info.value.message.startswith(
        f"channel {conda_channel.name} (https://conda.anaconda.org/{conda_channel.name}/): "
        "no cached repodata (--offline)"
    )


# ---------------------------------------------------------------------------------------------
# the pip half


@pytest.mark.network
def test_pip_half_goes_into_the_prefixs_python(
    locked: CondaLock, conda_channel: LocalChannel, tmp_path: Path
) -> None:
    from envbuild.lock import lock_model as pip_lock

    folder = model(tmp_path, conda_channel.url)
    pylock = pip_lock(folder, python="3.10.13", write=False)  # the conda.yaml pip: block
    assert [p.name for p in pylock.packages] == ["six"]
    env = build_env(
        locked, pip_lock=pylock, root=tmp_path / "cache", package_cache=tmp_path / "pkgs"
    )
    assert env.pip_lock_digest == pylock.digest and env.key == env_key(locked, pylock)
    done = run_in(env.path, "python", "-c", "import six, envbuild_util; print(six.__file__)")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{env.path}/lib/python3.10/site-packages/six.py"
    # conda's own Python packages stay (uv pip install, not sync)
    assert (env.path / "lib/python3.10/site-packages/envbuild_util/__init__.py").exists()
    assert os.access(env.python, os.X_OK)

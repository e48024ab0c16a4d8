"""Cold builds at the floor, and a cache that does not grow: installs through the index reuse uv's
wheel cache, nothing is compiled up front, and the first run writes bytecode safely."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from envbuild.envs.venv import build_venv
from envbuild.errors import BuildError
from envbuild.lock import Lock, lock_model
from envbuild.proc import uv_bin
from envbuild.python import find_interpreter
from envbuild.target import host_platform
from tests.conftest import REPO, run_cli, write_model

pytestmark = [pytest.mark.integration, pytest.mark.network]


def uv_archives() -> set[str]:
    """The unpacked archives in uv's cache (what per-file URL installs add every time)."""
    done = subprocess.run([uv_bin(), "cache", "dir"], capture_output=True, text=True, check=True)
    folder = Path(done.stdout.strip()) / "archive-v0"
    return {p.name for p in folder.iterdir()} if folder.is_dir() else set()


@pytest.fixture(scope="module")
def small_lock(tmp_path_factory: pytest.TempPathFactory) -> Lock:
    model = write_model(
        tmp_path_factory.mktemp("lock") / "model",
        {
            "MLmodel": "flavors:\n  python_function:\n    loader_module: m\n    python_version: 3.11\n",
            "requirements.txt": "six==1.16.0\nattrs==23.2.0\npackaging==24.1\n",
        },
    )
    return lock_model(model, python="3.11", write=False)


def test_a_second_environment_with_the_same_wheels_adds_nothing_to_uvs_cache(
    small_lock: Lock,
) -> None:
    interpreter = find_interpreter("3.11")
    first = dataclasses.replace(small_lock, content_digest=f"sha256:a-{uuid.uuid4().hex}")
    second = dataclasses.replace(small_lock, content_digest=f"sha256:b-{uuid.uuid4().hex}")
    assert build_venv(first, interpreter).built
    before = uv_archives()
    env = build_venv(second, interpreter)
    assert env.built
    assert uv_archives() == before, "a rebuild of the same wheels unpacked archives again"
    assert imported_six(env.python, "attrs", "packaging") == "1.16.0"


def imported_six(python: Path, *others: str) -> str:
    """six's version as the environment's Python imports it (with ``others`` imported too)."""
    code = f"import {', '.join(('six', *others))}; print(six.__version__)"
    done = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True)
    return done.stdout.strip()


def pyc_files(prefix: Path) -> set[Path]:
    return set(prefix.rglob("*.pyc"))


def test_bytecode_is_written_once_by_the_first_runs_and_they_can_run_together(
    tmp_path: Path,
) -> None:
    """No .pyc at build time; two concurrent first runs both succeed with the same predictions
    (Python writes .pyc atomically); a later run writes no new .pyc."""
    env = dict(os.environ, ENVBUILD_CACHE_DIR=str(tmp_path / "cache"), PIP_CONFIG_FILE=os.devnull)
    env.pop("PIP_FIND_LINKS", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    model = REPO / "examples" / "sklearn-iris"
    built = run_cli("env", str(model), "--json", env=env)
    assert built.returncode == 0, built.stderr
    prefix = Path(json.loads(built.stdout)["environment"]["path"])
    site = next(prefix.glob("lib/python*/site-packages"))
    assert not pyc_files(site), "nothing is compiled at build time"
    command = [sys.executable, "-m", "envbuild", "predict", str(model)]
    runs = [
        subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=600) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], [err for _, err in outputs]
    assert outputs[0][0] == outputs[1][0]
    written = pyc_files(site)
    assert any("sklearn" in str(p) for p in written), "the first run writes what it imports"
    again = run_cli("predict", str(model), env=env)
    assert again.returncode == 0 and again.stdout == outputs[0][0]
    assert pyc_files(site) == written


def test_an_install_by_name_takes_the_locked_files_when_an_index_has_a_newer_tagged_one(
    small_lock: Lock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lock was resolved for manylinux_2_28; a configured index (pip's extra index, a
    find-links folder) offering a wheel of the same version with a newer platform tag that this
    machine accepts must not be picked (its hash is not in the lock)."""
    host = host_platform()
    glibc = platform.libc_ver()[1]
    if host is None or not host.name.startswith("linux/") or not glibc:
        pytest.skip("the newer-tagged wheel needs a glibc Linux host")
    if tuple(int(p) for p in glibc.split(".")[:2]) < (2, 34):
        pytest.skip("this glibc would refuse a manylinux_2_34 wheel anyway")
    wheel = f"six-1.16.0-py3-none-manylinux_2_34_{host.machine}.whl"
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / wheel).write_bytes(b"not the locked file")
    digest = hashlib.sha256(b"not the locked file").hexdigest()
    page = tmp_path / "simple" / "six" / "index.html"
    page.parent.mkdir(parents=True)
    page.write_text(f'<a href="../../files/{wheel}#sha256={digest}">{wheel}</a>\n')
    monkeypatch.setenv("UV_EXTRA_INDEX_URL", (tmp_path / "simple").as_uri())
    lock = dataclasses.replace(small_lock, content_digest=f"sha256:c-{uuid.uuid4().hex}")
    env = build_venv(lock, find_interpreter("3.11"))
    assert imported_six(env.python) == "1.16.0"


def test_a_rebuild_needs_no_network_and_an_empty_uv_cache_falls_back_to_it(
    small_lock: Lock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Installs by name try uv's cache alone first (the same files, hashes enforced); when it
    lacks something, the install goes through the index as before."""
    interpreter = find_interpreter("3.11")
    monkeypatch.setenv("UV_CACHE_DIR", str(tmp_path / "uv-cache"))  # empty: the network is used
    first = dataclasses.replace(small_lock, content_digest=f"sha256:d-{uuid.uuid4().hex}")
    assert build_venv(first, interpreter).built
    for variable in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY"):
        monkeypatch.setenv(variable, "http://127.0.0.1:9")  # nothing listens: no network
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    second = dataclasses.replace(small_lock, content_digest=f"sha256:e-{uuid.uuid4().hex}")
    env = build_venv(second, interpreter)
    assert imported_six(env.python) == "1.16.0"
    third = dataclasses.replace(small_lock, content_digest=f"sha256:f-{uuid.uuid4().hex}")
    monkeypatch.setenv("UV_CACHE_DIR", str(tmp_path / "another-uv-cache"))
    with pytest.raises(BuildError, match="installing the locked packages failed"):
        build_venv(third, interpreter)  # not cached, and no network: the online error is shown

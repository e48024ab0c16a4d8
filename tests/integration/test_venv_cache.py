"""The venv kind and its cache, built for real with uv: reuse, crash safety, concurrency."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from envbuild.cache import MARKER
from envbuild.envs.venv import build_venv, env_key
from envbuild.lock import Lock
from envbuild.python import find_interpreter
from tests.conftest import write_model

pytestmark = [pytest.mark.integration, pytest.mark.network]

BUILD_SCRIPT = """
import dataclasses, json, sys
from envbuild.envs.venv import build_venv
from envbuild.lock import lock_from_text
from envbuild.python import find_interpreter
lk = dataclasses.replace(lock_from_text(open(sys.argv[1]).read()), content_digest=sys.argv[2])
env = build_venv(lk, find_interpreter(sys.argv[3]))
print(json.dumps({"built": env.built, "path": str(env.path)}))
"""


def keyed(lk: Lock, name: str) -> Lock:
    """The same lock under a cache key of its own (each test builds its own environment)."""
    return dataclasses.replace(lk, content_digest=f"sha256:{name}-{uuid.uuid4().hex}")


@pytest.fixture(scope="module")
def small_lock(tmp_path_factory: pytest.TempPathFactory) -> Lock:
    """A real lock (resolved by envbuild with uv from PyPI) of a tiny pure-Python model env."""
    from envbuild.lock import lock_model

    model = write_model(
        tmp_path_factory.mktemp("lock") / "model",
        {
            "MLmodel": "flavors:\n  python_function:\n    loader_module: m\n    python_version: 3.10\n",
            "requirements.txt": "six==1.16.0\nattrs==23.2.0\n",
        },
    )
    return lock_model(model, python="3.10", write=False)


def installed(python: Path) -> dict[str, str]:
    out = subprocess.run(
        [
            str(python),
            "-c",
            "import json, importlib.metadata as m; print(json.dumps("
            "{d.metadata['Name'].lower(): d.version for d in m.distributions()}))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


def test_build_then_reuse(small_lock: Lock) -> None:
    lk = keyed(small_lock, "reuse")
    interpreter = find_interpreter("3.10")
    first = build_venv(lk, interpreter, compile_bytecode=True)
    assert first.python.exists()
    # exactly the lock: no pip, no setuptools, nothing of envbuild's
    assert installed(first.python) == {"six": "1.16.0", "attrs": "23.2.0"}
    assert list(first.path.rglob("six*.pyc")), "bytecode is compiled at build time"
    second = build_venv(lk, interpreter)
    assert second.path == first.path
    assert first.built is True and second.built is False


def test_environment_is_relocated_cleanly(small_lock: Lock) -> None:
    env = build_venv(small_lock, find_interpreter("3.10"))
    for item in env.path.rglob("*"):
        if item.is_file() and item.suffix in ("", ".cfg", ".txt", ".py"):
            assert ".tmp-" not in item.read_text(errors="ignore"), item


def test_killed_build_is_never_used_and_is_rebuilt(small_lock: Lock, tmp_path: Path) -> None:
    lk = keyed(small_lock, "killed")
    interpreter = find_interpreter("3.10")
    lock_file = tmp_path / "pylock.toml"
    lock_file.write_text(lk.text)
    cache = Path(os.environ["ENVBUILD_CACHE_DIR"]) / "envs"
    key = env_key(lk.content_digest, interpreter)
    child = subprocess.Popen(
        [sys.executable, "-c", BUILD_SCRIPT, str(lock_file), lk.content_digest, "3.10"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait until the build is under way, then kill it
        tmp_dirs = list(cache.glob(f".tmp-{key}-*"))
        if tmp_dirs and (tmp_dirs[0] / "pyvenv.cfg").exists():
            break
        time.sleep(0.02)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert not (cache / key / MARKER).exists(), "a killed build must not look finished"
    env = build_venv(lk, interpreter)
    assert env.built is True
    assert installed(env.python) == {"six": "1.16.0", "attrs": "23.2.0"}
    assert not list(cache.glob(f".tmp-{key}-*")), "leftovers of the killed build are removed"


def test_four_concurrent_builds_build_once(small_lock: Lock, tmp_path: Path) -> None:
    lk = keyed(small_lock, "concurrent")
    lock_file = tmp_path / "pylock.toml"
    lock_file.write_text(lk.text)
    children = [
        subprocess.Popen(
            [sys.executable, "-c", BUILD_SCRIPT, str(lock_file), lk.content_digest, "3.10"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    results = []
    for child in children:
        out, err = child.communicate(timeout=300)
        assert child.returncode == 0, err
        results.append(json.loads(out))
    assert sum(r["built"] for r in results) == 1
    assert len({r["path"] for r in results}) == 1


def test_pip_fallback_installs_the_same_set(small_lock: Lock) -> None:
    env = build_venv(keyed(small_lock, "pip"), find_interpreter("3.10"), installer="pip")
    assert installed(env.python) == {"six": "1.16.0", "attrs": "23.2.0"}

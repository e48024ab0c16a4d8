"""``envbuild cache``: listing, pruning by age and by size, never what a running command holds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from envbuild.cache import publish
from tests.conftest import run_cli

HOLD = """
import sys, time
from pathlib import Path
from envbuild.cache.usage import hold
hold(Path(sys.argv[1]))
print("held", flush=True)
time.sleep(600)
"""


def make_entry(root: Path, kind: str, key: str, size: int, age_days: float) -> Path:
    def build(tmp: Path) -> None:
        (tmp / "payload.bin").write_bytes(os.urandom(size))

    entry, built = publish(kind, key, build, root=root)
    assert built
    used = entry.parent / f"{entry.name}.used"
    moment = time.time() - age_days * 86400
    os.utime(used, (moment, moment))
    return entry


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("ENVBUILD_CACHE_DIR", str(root))
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")  # files only
    return root


def cli(*args: str, root: Path) -> tuple[int, dict]:
    env = dict(os.environ, ENVBUILD_CACHE_DIR=str(root))
    proc = run_cli("cache", *args, "--json", env=env)
    return proc.returncode, json.loads(proc.stdout)


def test_list_shows_every_entry_with_its_size_and_users(cache: Path) -> None:
    from envbuild.cache.usage import record_user

    env = make_entry(cache, "envs", "e1", 200_000, 0)
    make_entry(cache, "locks", "l1", 10_000, 0)
    record_user(env, "/models/iris")
    code, data = cli("list", root=cache)
    assert code == 0
    by_key = {e["key"]: e for e in data["entries"]}
    assert set(by_key) == {"e1", "l1"}
    assert by_key["e1"]["kind"] == "env" and by_key["e1"]["users"] == ["/models/iris"]
    assert by_key["e1"]["size"] >= 200_000 and by_key["l1"]["size"] >= 10_000
    assert data["total_size"] == sum(e["size"] for e in data["entries"])


def test_prune_older_than_removes_exactly_the_old_ones_and_never_one_in_use(cache: Path) -> None:
    old = make_entry(cache, "envs", "old", 1000, 40)
    held = make_entry(cache, "envs", "held", 1000, 40)
    fresh = make_entry(cache, "envs", "fresh", 1000, 1)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(held)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        code, dry = cli("prune", "--older-than", "30d", "--dry-run", root=cache)
        assert code == 0 and [e["key"] for e in dry["removed"]] == ["old"]
        assert old.exists()  # a dry run removes nothing
        code, data = cli("prune", "--older-than", "30d", root=cache)
        assert code == 0
        assert [e["key"] for e in data["removed"]] == ["old"]
        assert [e["key"] for e in data["kept_in_use"]] == ["held"]
        assert not old.exists() and held.exists() and fresh.exists()
    finally:
        holder.kill()
        holder.wait()
    code, data = cli("prune", "--older-than", "30d", root=cache)
    assert [e["key"] for e in data["removed"]] == ["held"]  # released: now it goes


def test_prune_max_size_removes_least_recently_used_first(cache: Path) -> None:
    make_entry(cache, "envs", "a", 300_000, 3)
    make_entry(cache, "envs", "b", 300_000, 2)
    make_entry(cache, "envs", "c", 300_000, 1)
    code, data = cli("prune", "--max-size", "700K", root=cache)
    assert code == 0 and [e["key"] for e in data["removed"]] == ["a"]
    code, data = cli("list", root=cache)
    assert sorted(e["key"] for e in data["entries"]) == ["b", "c"]


def test_clean_removes_everything_and_bad_values_are_usage_errors(cache: Path) -> None:
    make_entry(cache, "envs", "a", 1000, 0)
    make_entry(cache, "models", "m", 1000, 0)
    code, data = cli("clean", root=cache)
    assert code == 0 and len(data["removed"]) == 2
    assert cli("list", root=cache)[1]["entries"] == []
    code, error = cli("prune", "--older-than", "soon", root=cache)
    assert code == 2 and "--older-than" in error["message"]
    code, error = cli("prune", root=cache)
    assert code == 2 and "--older-than" in error["message"]


def test_any_build_sweeps_temporary_folders_older_than_a_day(cache: Path) -> None:
    stale = cache / "envs" / ".tmp-deadbeef-xyz"
    stale.mkdir(parents=True)
    recent = cache / "envs" / ".tmp-cafe-abc"
    recent.mkdir()
    day_ago = time.time() - 2 * 86400
    os.utime(stale, (day_ago, day_ago))
    make_entry(cache, "envs", "other", 10, 0)
    assert not stale.exists() and recent.exists()

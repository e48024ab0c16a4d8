"""Interpreter discovery against the interpreters really installed here (pyenv 3.8-3.13)."""

from __future__ import annotations

import sys

import pytest

from envbuild.errors import InterpreterNotFound
from envbuild.python import describe, discover, find_interpreter


def test_discovers_the_running_interpreter() -> None:
    versions = {i.version for i in discover()}
    assert ".".join(map(str, sys.version_info[:3])) in versions


def test_major_minor_request_picks_that_series() -> None:
    chosen = find_interpreter(f"{sys.version_info[0]}.{sys.version_info[1]}")
    assert chosen.minor == f"{sys.version_info[0]}.{sys.version_info[1]}"
    assert "newest" in chosen.reason


def test_exact_version_is_preferred() -> None:
    version = ".".join(map(str, sys.version_info[:3]))
    assert find_interpreter(version).version == version


def test_same_series_with_a_warning_or_strict_error() -> None:
    minor = f"{sys.version_info[0]}.{sys.version_info[1]}"
    warnings: list[str] = []
    chosen = find_interpreter(f"{minor}.999", warnings=warnings)
    assert chosen.minor == minor
    assert len(warnings) == 1 and "--strict-python" in warnings[0]
    with pytest.raises(InterpreterNotFound):
        find_interpreter(f"{minor}.999", strict=True)


def test_missing_version_lists_what_was_found() -> None:
    with pytest.raises(InterpreterNotFound) as info:
        find_interpreter("3.99.1")
    assert "installed:" in info.value.message
    assert "--install-python" in info.value.hint


def test_describe_rejects_a_non_interpreter(tmp_path) -> None:
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\nexit 3\n")
    fake.chmod(0o755)
    with pytest.raises(InterpreterNotFound):
        describe(str(fake))

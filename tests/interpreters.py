"""Interpreters for the tests, found through envbuild's own discovery (never by a fixed path).

The Python 3.8 runtime promise, MLflow 2 support and cross-version models are core features: on
CI (``CI=true``) a missing interpreter fails the test instead of skipping it.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

import pytest


def on_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


@cache
def _find(minor: str) -> Path | None:
    from envbuild.errors import InterpreterNotFound
    from envbuild.python import find_interpreter

    try:
        return Path(find_interpreter(minor).path)
    except InterpreterNotFound:
        return None


def python(minor: str) -> Path:
    """The newest installed CPython ``minor`` (``"3.8"``); skip locally, fail on CI, if none."""
    found = _find(minor)
    if found is None:
        message = f"no Python {minor} interpreter found by envbuild's discovery"
        if on_ci():
            pytest.fail(message)
        pytest.skip(message)
    return found

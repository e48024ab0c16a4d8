"""``python -m envbuild``."""

from envbuild.cli import entry

entry()

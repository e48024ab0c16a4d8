"""envbuild's version, kept apart so `envbuild --version` imports nothing else."""

__version__ = "0.1.0"

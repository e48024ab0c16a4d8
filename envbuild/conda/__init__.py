"""Conda environments without conda: solve, lock and install a model's ``conda.yaml`` with py-rattler.

A model's ``conda.yaml`` can need what a virtualenv cannot give: conda-only packages (system
libraries, ``cudatoolkit``, ``mkl``) or a Python that is not installed where the model runs (the
channel brings its own). No conda, mamba or micromamba binary is used: py-rattler (PyPI) solves and
installs conda packages from Python.

The stages, each a frozen value in and a value out:

* :mod:`envbuild.conda.spec` — the conda half of an :class:`~envbuild.envspec.EnvSpec`
  (``CondaSpec``: match specs with their ``conda.yaml`` lines, channels as written);
* :mod:`envbuild.conda.platforms` — the *target* platform and its virtual packages (``__glibc``,
  ``__unix``, ``__cuda`` when asked), never the host's;
* :mod:`envbuild.conda.channels` — channel names to URLs (``defaults``, a mirror through
  ``ENVBUILD_CONDA_CHANNEL_ALIAS``, ``file://``), credentials kept out of everything written;
* :mod:`envbuild.conda.solve` — ``solve(spec, ...) -> CondaLock``;
* :mod:`envbuild.conda.lockfile` — ``CondaLock``, the canonical lock text and its parser;
* :mod:`envbuild.conda.install` — ``install(lock, prefix)``, ``build_env(lock, pip_lock)`` into
  envbuild's cache (crash- and concurrency-safe), the pip half with uv;
* :mod:`envbuild.conda.activate` — the environment variables of a process run in a prefix.

py-rattler costs ~0.1 s to import, so only the functions that solve, parse or install import it
(inside the function): importing this package, the spec or the activation module stays free for
the CLI's start-up.
"""

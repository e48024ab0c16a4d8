"""What a process run "in" a conda prefix needs: the variables conda's activation would set.

``conda activate`` does two things: it sets variables (``CONDA_PREFIX``, ``PATH`` with the
prefix's folders first, the environment's own ``conda env config vars`` from
``conda-meta/state``), and it sources the packages' ``etc/conda/activate.d`` scripts. The first
is computed here, in Python, without starting a shell or importing py-rattler. The scripts are
code from the packages (compilers' flags, GDAL's data path, ...): they run only when asked
(``run_scripts=True``), in a bash subprocess with rattler's activation script, and the resulting
environment is read back.

Python hygiene is the same as for envbuild's virtualenvs: no ``PYTHONPATH``/``PYTHONHOME``/user
site-packages leak in from the caller, and bytecode may be written on first use.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

_PYTHON_LEAKS = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE", "VIRTUAL_ENV")
_WINDOWS_DIRS = ("", "Library/mingw-w64/bin", "Library/usr/bin", "Library/bin", "Scripts", "bin")


def prefix_python(prefix: Path, *, windows: bool | None = None) -> Path:
    """The interpreter of a conda prefix (``bin/python``; ``python.exe`` at the top on Windows)."""
    if windows if windows is not None else os.name == "nt":
        return prefix / "python.exe"
    return prefix / "bin" / "python"


def path_entries(prefix: Path, *, windows: bool | None = None) -> list[str]:
    """The folders conda's activation puts first on ``PATH``, in its order."""
    if windows if windows is not None else os.name == "nt":
        return [str(prefix / d) if d else str(prefix) for d in _WINDOWS_DIRS]
    return [str(prefix / "bin")]


def state_variables(prefix: Path) -> dict[str, str]:
    """``conda env config vars`` of the environment (``conda-meta/state``), if any."""
    try:
        state = json.loads((prefix / "conda-meta" / "state").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    env_vars = state.get("env_vars") if isinstance(state, dict) else None
    if not isinstance(env_vars, dict):
        return {}
    return {str(k): str(v) for k, v in env_vars.items()}


def activation_env(
    prefix: Path,
    base: Mapping[str, str] | None = None,
    *,
    run_scripts: bool = False,
) -> dict[str, str]:
    """The environment of a process running in ``prefix`` (``base`` defaults to ours)."""
    env = dict(base if base is not None else os.environ)
    for key in _PYTHON_LEAKS:
        env.pop(key, None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONNOUSERSITE"] = "1"
    previous = env.get("CONDA_PREFIX")
    stale = set(path_entries(Path(previous))) if previous else set()
    rest = [p for p in env.get("PATH", "").split(os.pathsep) if p and p not in stale]
    env["PATH"] = os.pathsep.join([*path_entries(prefix), *rest])
    env["CONDA_PREFIX"] = str(prefix)
    env["CONDA_DEFAULT_ENV"] = str(prefix)
    env["CONDA_SHLVL"] = "1"
    env.update(state_variables(prefix))
    if run_scripts:
        return _with_scripts(prefix, env)
    return env


def _with_scripts(prefix: Path, env: dict[str, str]) -> dict[str, str]:
    """Source rattler's bash activation of ``prefix`` (its activate.d scripts) and read the
    environment it leaves."""
    from rattler.shell import ActivationVariables, Shell, activate

    from envbuild import proc
    from envbuild.errors import BuildError

    if os.name == "nt":
        raise BuildError("running activation scripts is supported on Linux and macOS only")
    variables = ActivationVariables(None, env["PATH"].split(os.pathsep))
    script = activate(prefix, variables, Shell.bash).script
    done = proc.run(
        ["bash", "--noprofile", "--norc", "-c", f"{script}\nenv -0"],
        what="running the environment's activation scripts",
        error=BuildError,
        env=env,
    )
    out: dict[str, str] = {}
    for item in done.stdout.split("\0"):
        key, sep, value = item.partition("=")
        if sep and key:
            out[key] = value
    out["CONDA_PREFIX"] = str(prefix)
    return out

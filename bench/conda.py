"""Benchmark: a conda environment through py-rattler vs uv for the same model's pip half.

    .venv/bin/python bench/conda.py [--runs 3] [--pip "six==1.16.0 packaging==24.1 pyyaml==6.0.2"]

The model is the conda test model (tests/integration/test_conda.py): ``python=3.10.13`` (the
local channel's relocated pyenv build), a compiled package with prefix placeholders, two noarch
packages and ``pip``, plus a ``pip:`` block (``--pip``). conda-forge is unreachable here, so the
conda half comes from the local ``file://`` channel (tests/integration/conda_channel.py, built
once and cached): rattler's "download" is reading and extracting a local archive, so cold-cache
figures are a floor for a real channel (no network time).

Timed, medians over ``--runs`` runs after one warm-up:

* conda solve (``envbuild.conda.solve``: repodata, solve, canonical lock);
* conda install into a fresh prefix, *cold* (an empty rattler package cache: every archive is
  extracted) and *warm* (every package already extracted: hard links only);
* the pip half with uv: lock (``uv pip compile --format pylock.toml``, online) and install, into
  the conda prefix (what ``build_env`` does) and into a fresh ``uv venv`` of the pyenv 3.10 (what
  the venv kind does), with a warm uv cache;
* ``build_env`` end to end (both halves, envbuild's cache cold, rattler's package cache warm) and
  reuse (envbuild's cache warm);
* the commands a user runs, ``--kind conda`` against ``--kind venv`` on the same model (its
  loader imports only the pip half's ``six``, so both kinds can run it): ``envbuild lock``
  (conda: both halves), ``envbuild env`` with envbuild's cache cold (rattler's and uv's caches
  warm) and reused, and ``envbuild predict`` (whole process: start-up, choosing the locks,
  running the model).

Prints the figures, the ratios, and the sizes of the conda prefix and of the venv.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

CONDA_YAML = """\
channels:
- {channel}
dependencies:
- python=3.10.13
- envbuild-prefixprobe
- envbuild-greet=1.0
- pip
- pip:
{pip}
name: mlflow-env
"""
MLMODEL = """\
flavors:
  python_function:
    env:
      conda: conda.yaml
    loader_module: bench_loader
    code: code
    python_version: 3.10.13
mlflow_version: 2.20.0
"""
LOADER = """\
import six


class Model:
    def predict(self, model_input, params=None):
        return [row["a"] + row["b"] for row in model_input]


def _load_pyfunc(path):
    assert six.PY3
    return Model()
"""
EXAMPLE = '{"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2.5], [3, -1]]}}'


def cli_figures(model: Path, work: Path, runs: int) -> dict[str, tuple[str, tuple[float, float]]]:
    """The user's commands for each kind, as subprocesses (see the module docstring)."""
    results: dict[str, tuple[str, tuple[float, float]]] = {}
    for kind in ("conda", "venv"):
        results.update(_kind_figures(kind, model, work, runs))
    return results


def _kind_figures(
    kind: str, model: Path, work: Path, runs: int
) -> dict[str, tuple[str, tuple[float, float]]]:
    copies = []
    for i in range(runs + 1):  # one model folder per run (the warm-up is run 0)
        copy = work / f"cli-{kind}-{i}"
        shutil.copytree(model, copy)
        copies.append(copy)

    def envbuild(*args: str, cache: Path) -> None:
        subprocess.run(
            [sys.executable, "-m", "envbuild", *args, "--kind", kind],
            check=True,
            env=dict(os.environ, ENVBUILD_CACHE_DIR=str(cache)),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    warm = work / f"cli-{kind}-cache-0"
    return {
        f"lock-{kind}": (
            f"envbuild lock --kind {kind}",
            timed(lambda i: envbuild("lock", str(copies[i]), cache=work / "cli-cache"), runs),
        ),
        f"env-{kind}": (
            f"envbuild env --kind {kind}, envbuild cache cold",
            timed(
                lambda i: envbuild("env", str(copies[i]), cache=work / f"cli-{kind}-cache-{i}"),
                runs,
            ),
        ),
        f"reuse-{kind}": (
            f"envbuild env --kind {kind}, reused",
            timed(lambda i: envbuild("env", str(copies[0]), cache=warm), runs),
        ),
        f"predict-{kind}": (
            f"envbuild predict --kind {kind}, reused",
            timed(lambda i: envbuild("predict", str(copies[0]), cache=warm), runs),
        ),
    }


def timed(func: Callable[[int], object], runs: int) -> tuple[float, float]:
    """(median, min) seconds of ``runs`` calls after one untimed warm-up; ``func`` gets the
    run's number so each call can use fresh folders."""
    func(0)
    samples = []
    for i in range(1, runs + 1):
        started = time.perf_counter()
        func(i)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples), min(samples)


def du(*paths: Path) -> int:
    """Bytes in ``paths``, each hard-linked file counted once (as ``du``)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for path in paths:
        for root, _dirs, files in os.walk(path):
            for name in files:
                st = os.lstat(os.path.join(root, name))
                if (st.st_dev, st.st_ino) not in seen:
                    seen.add((st.st_dev, st.st_ino))
                    total += st.st_size
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--pip", default="six==1.16.0 packaging==24.1 pyyaml==6.0.2")
    args = parser.parse_args()

    from envbuild import proc
    from envbuild.conda.install import build_env, install, install_pip_half
    from envbuild.conda.solve import solve
    from envbuild.conda.spec import conda_spec
    from envbuild.envspec import read_env
    from envbuild.lock import lock_model as pip_lock
    from envbuild.model import load_model
    from envbuild.python import find_interpreter
    from tests.integration.conda_channel import ensure_channel

    os.environ["PIP_CONFIG_FILE"] = os.devnull
    os.environ.pop("PIP_FIND_LINKS", None)
    os.environ["UV_PYTHON_DOWNLOADS"] = "never"
    work = Path(tempfile.mkdtemp(prefix="bench-conda-"))
    os.environ["ENVBUILD_CACHE_DIR"] = str(work / "envbuild-cache")
    os.environ["RATTLER_CACHE_DIR"] = str(work / "rattler-cache")
    try:
        interpreter = find_interpreter("3.10")
        base = Path(os.environ.get("ENVBUILD_TEST_CACHE") or "/var/cache/envbuild-test")
        if not os.access(base if base.exists() else base.parent, os.W_OK):
            base = work
        started = time.perf_counter()
        channel = ensure_channel(base, Path(interpreter.path))
        print(f"channel: {channel.path} (ready in {time.perf_counter() - started:.1f} s)")
        model = work / "model"
        model.mkdir()
        (model / "MLmodel").write_text(MLMODEL)
        (model / "code").mkdir()
        (model / "code" / "bench_loader.py").write_text(LOADER)
        (model / "serving_input_example.json").write_text(EXAMPLE)
        pip_lines = "\n".join(f"  - {r}" for r in args.pip.split())
        (model / "conda.yaml").write_text(CONDA_YAML.format(channel=channel.url, pip=pip_lines))
        spec = conda_spec(read_env(load_model(model)))
        print(f"model: {len(spec.dependencies)} conda specs; pip half: {args.pip}")
        print(f"load average before: {os.getloadavg()[0]:.2f}\n")
        uv = proc.uv_bin()
        warm_pkgs = work / "pkgs-warm"
        results: dict[str, tuple[str, tuple[float, float]]] = {}

        def measure(key: str, label: str, func: Callable[[int], object]) -> None:
            results[key] = (label, timed(func, args.runs))

        lock = solve(spec)
        measure("solve", "conda solve (py-rattler)", lambda i: solve(spec))
        measure(
            "cold",
            "conda install, cold package cache",
            lambda i: install(lock, work / f"cold-{i}", package_cache=work / f"pkgs-{i}"),
        )
        install(lock, work / "seed", package_cache=warm_pkgs)
        measure(
            "warm",
            "conda install, warm package cache",
            lambda i: install(lock, work / f"warm-{i}", package_cache=warm_pkgs),
        )
        pylock = pip_lock(model, python="3.10.13", write=False)
        measure(
            "uvlock",
            "pip half: lock (uv pip compile, online)",
            lambda i: pip_lock(model, python="3.10.13", write=False),
        )
        for i in range(args.runs + 1):  # copies of a conda prefix without the pip half
            shutil.copytree(work / "seed", work / f"pipconda-{i}", symlinks=True)
        measure(
            "pipconda",
            "pip half: uv install into the conda prefix",
            lambda i: install_pip_half(work / f"pipconda-{i}", pylock, compile_bytecode=False),
        )
        measure(
            "venv",
            "uv venv (the venv kind's interpreter)",
            lambda i: subprocess.run(
                [uv, "venv", "-q", "--python", interpreter.path, str(work / f"venv-{i}")],
                check=True,
            ),
        )
        pylock_file = work / "pylock.toml"
        pylock_file.write_text(pylock.text)
        uv_install = ["pip", "install", "-q", "--require-hashes", "--preview-features", "pylock"]

        def venv_python(i: int) -> str:
            return str(work / f"venv-{i}" / "bin" / "python")

        measure(
            "pipvenv",
            "pip half: uv install into a venv",
            lambda i: subprocess.run(
                [uv, *uv_install, "-r", str(pylock_file), "--python", venv_python(i)],
                check=True,
            ),
        )
        measure(
            "env",
            "build_env: both halves, envbuild cache cold",
            lambda i: build_env(
                lock, pip_lock=pylock, root=work / f"env-{i}", package_cache=warm_pkgs
            ),
        )
        measure(
            "reuse",
            "build_env: reused",
            lambda i: build_env(
                lock, pip_lock=pylock, root=work / "env-0", package_cache=warm_pkgs
            ),
        )

        results.update(cli_figures(model, work, args.runs))

        width = max(len(label) for label, _ in results.values())
        print(f"{'step':<{width}}   median      min")
        for label, (median, low) in results.values():
            print(f"{label:<{width}}  {median:7.3f}s  {low:7.3f}s")
        t = {key: median for key, (_label, (median, _low)) in results.items()}
        print("\nratios (medians)")
        for label, a, b in (
            ("conda install, cold / warm package cache", "cold", "warm"),
            ("conda install (warm) / uv venv", "warm", "venv"),
            ("conda solve / uv lock of the pip half", "solve", "uvlock"),
            ("pip half into the conda prefix / into a venv", "pipconda", "pipvenv"),
            ("build_env / (uv venv + pip half into it)", "env", "venv"),
            ("envbuild lock: conda / venv", "lock-conda", "lock-venv"),
            ("envbuild env, cold: conda / venv", "env-conda", "env-venv"),
            ("envbuild env, reused: conda / venv", "reuse-conda", "reuse-venv"),
            ("envbuild predict: conda / venv", "predict-conda", "predict-venv"),
        ):
            denominator = t[b] + (t["pipvenv"] if a == "env" else 0.0)
            print(f"  {label:<46} {t[a] / denominator:6.2f}x")
        prefix = next(p for p in (work / "env-0" / "conda").iterdir() if p.is_dir())
        print("\nsizes")
        files = sum(len(f) for _r, _d, f in os.walk(prefix))
        print(f"  conda prefix, both halves ({files} files)  {du(prefix) / 2**20:7.1f} MiB")
        print(f"  rattler package cache                    {du(warm_pkgs) / 2**20:7.1f} MiB")
        print(
            f"  prefix + package cache (links once)      {du(prefix, warm_pkgs) / 2**20:7.1f} MiB"
        )
        print(f"  venv with the pip half                   {du(work / 'venv-1') / 2**20:7.1f} MiB")
        print(f"\nload average after: {os.getloadavg()[0]:.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: `envbuild lock` vs bare `uv pip compile` vs MLflow's own locking, on one model.

    .venv/bin/python bench/lock.py [--runs 3] [--model DIR]

All three resolve the same requirements (the model's requirements.txt) with the same uv:

* ``envbuild lock MODEL`` (the command, Python start-up included) and ``envbuild.lock_model()``
  (in-process, to separate start-up from envbuild's own work);
* ``uv pip compile requirements.txt --format pylock.toml`` for the same Python and platform
  (what envbuild runs underneath, without reading the model or writing the canonical file);
* MLflow's locking: ``mlflow.sklearn.save_model`` with ``MLFLOW_LOCK_MODEL_DEPENDENCIES=true``
  minus the same save without it (MLflow runs ``uv pip compile --universal`` itself, no hashes).

Each is timed online (uv revalidates index pages through the network) and ``--offline`` (from
uv's cache), after one warm-up run; medians over ``--runs`` runs and their ratios are printed.
pip's configuration is ignored for all of them (``PIP_CONFIG_FILE=/dev/null``).
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


def timed(func: Callable[[], object], runs: int) -> float:
    """Median seconds of ``runs`` calls, after one untimed warm-up call."""
    func()
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        func()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def run(args: list[str], env: dict[str, str]) -> None:
    subprocess.run(args, env=env, check=True, capture_output=True, text=True)


def make_model(folder: Path) -> Path:
    import mlflow.sklearn
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True, as_frame=True)
    path = folder / "sklearn-iris"
    mlflow.sklearn.save_model(LogisticRegression(max_iter=500).fit(X, y), str(path))
    return path


def mlflow_lock_seconds(
    folder: Path, requirements: list[str], runs: int, env: dict[str, str]
) -> tuple[float, float]:
    """(median save with locking, median save without): MLflow's lock costs the difference.

    The requirements are given (``pip_requirements``) so that MLflow does not infer them by
    loading the model in a subprocess (~8 s, and noisy enough to hide the locking cost).
    """
    import mlflow.sklearn
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True, as_frame=True)
    model = LogisticRegression(max_iter=500).fit(X, y)

    def save(lock: bool) -> None:
        saved = dict(os.environ)
        os.environ.update(env)
        os.environ["MLFLOW_LOCK_MODEL_DEPENDENCIES"] = "true" if lock else "false"
        try:
            target = Path(tempfile.mkdtemp(prefix="mlflow-", dir=folder)) / "model"
            mlflow.sklearn.save_model(model, str(target), pip_requirements=requirements)
            text = (target / "requirements.txt").read_text()
            assert ("# Locked requirements" in text) == lock, "MLflow did not lock (uv on PATH?)"
        finally:
            os.environ.clear()
            os.environ.update(saved)

    return timed(lambda: save(True), runs), timed(lambda: save(False), runs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--model", type=Path, help="an MLflow model folder (default: make one)")
    args = parser.parse_args()

    import envbuild
    from envbuild.envspec import read_env
    from envbuild.model import load_model
    from envbuild.proc import uv_bin
    from envbuild.target import PLATFORMS

    uv = uv_bin()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_INDEX"))}
    env["PIP_CONFIG_FILE"] = os.devnull
    env["PATH"] = f"{Path(uv).parent}{os.pathsep}{env.get('PATH', '')}"  # MLflow looks up `uv`
    env["UV_PYTHON_DOWNLOADS"] = "never"

    with tempfile.TemporaryDirectory(prefix="envbuild-bench-") as tmp:
        work = Path(tmp)
        model = args.model.resolve() if args.model else make_model(work)
        spec = load_model(model)
        python = read_env(spec).python.version
        requirements = model / "requirements.txt"
        out_dir = work / "out"
        out_dir.mkdir()
        print(f"model: {model} ({len(read_env(spec).requirements)} requirements)")
        print(f"target: Python {python} on linux/amd64; {args.runs} runs each, medians\n")

        results: dict[str, dict[str, float]] = {}
        for mode in ("online", "offline"):
            offline = ["--offline"] if mode == "offline" else []
            uv_cmd = [
                *(uv, "pip", "compile", str(requirements), "--format", "pylock.toml"),
                *("--python-version", python),
                *("--python-platform", PLATFORMS["linux/amd64"].uv_platform),
                *("--python", sys.executable, "--quiet", "--no-header"),
                *("-o", str(out_dir / "pylock.toml"), *offline),
            ]
            cli_cmd = [sys.executable, "-m", "envbuild", "lock", str(model), *offline]
            cli_cmd += ["-o", str(work / "pylock.toml")]
            # as installed normally: bytecode cached after the warm-up run (this machine sets
            # PYTHONDONTWRITEBYTECODE, which would make every start compile envbuild again)
            cli_env = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}

            def api(offline: bool = bool(offline)) -> None:
                saved = dict(os.environ)
                os.environ.clear()
                os.environ.update(env)
                try:
                    envbuild.lock_model(spec, offline=offline, write=False)
                finally:
                    os.environ.clear()
                    os.environ.update(saved)

            def bare(cmd: list[str] = uv_cmd) -> None:
                (out_dir / "pylock.toml").unlink(missing_ok=True)  # no preferences from a prior run
                run(cmd, env)

            results[mode] = {
                "uv pip compile": timed(bare, args.runs),
                "envbuild lock (CLI)": timed(lambda c=cli_cmd, e=cli_env: run(c, e), args.runs),
                "envbuild.lock_model() (API)": timed(api, args.runs),
            }
        mlflow_env = dict(env)
        reqs = [r.text for r in read_env(spec).requirements]
        with_lock, without = mlflow_lock_seconds(work, reqs, args.runs, mlflow_env)
        results["online"]["MLflow save, locking part"] = with_lock - without
        results["online"]["MLflow save with locking"] = with_lock
        mlflow_env["UV_OFFLINE"] = "1"
        with_lock_off, without_off = mlflow_lock_seconds(work, reqs, args.runs, mlflow_env)
        results["offline"]["MLflow save, locking part"] = with_lock_off - without_off
        results["offline"]["MLflow save with locking"] = with_lock_off

        for mode, rows in results.items():
            base = rows["uv pip compile"]
            print(f"{mode}:")
            for name, seconds in rows.items():
                print(f"  {name:<28} {seconds * 1000:8.0f} ms   x{seconds / base:5.2f} of bare uv")
            overhead = rows["envbuild lock (CLI)"] - base
            in_process = rows["envbuild.lock_model() (API)"] - base
            print(
                f"  envbuild overhead over bare uv: {overhead * 1000:.0f} ms as a command, "
                f"{in_process * 1000:.0f} ms in-process\n"
            )
        shutil.rmtree(out_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

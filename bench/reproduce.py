"""Benchmark: a full `envbuild reproduce` (lock check, build, verify, predict, compare) vs MLflow.

    .venv/bin/python bench/reproduce.py [--repeat 3] [--quick] [--model DIR | --make-model]
                                        [--keep-no-bytecode]

The model: a copy of the example model ``examples/sklearn-iris`` (it carries its ``pylock.toml``
and ``envbuild_expected_output.json``), or of ``--model DIR``; with ``--make-model``, a new
scikit-learn model (``serialization_format="cloudpickle"``, with an input example). A copy whose
``pylock.toml`` is missing or stale (``envbuild lock --check``) is locked with ``envbuild lock``
(so the lock step resolves nothing, it checks), and one without an expected output gets one from
``envbuild predict -o``; both untimed. Then times, interleaved (every case once per round,
``--repeat`` rounds):

* ``envbuild reproduce MODEL --json``
  - warm: envbuild's cache holds the environment (what a CI job with a cached
    ``ENVBUILD_CACHE_DIR`` pays);
  - cold: a fresh, empty ``ENVBUILD_CACHE_DIR`` every run (interpreter probes, environment build
    from the model's pylock.toml, verify, predict: the first run, which writes ``.pyc`` for what
    it imports, compare). uv's own package cache stays warm, as on any CI runner that caches
    ``~/.cache/uv``; nothing is downloaded. Issue #15's target: faster than MLflow's
    ``models predict --env-manager uv`` of the same model;
  with each step's own duration from the JSON report, so the total can be read step by step;
* ``envbuild predict MODEL`` warm, for reference (reproduce = predict + lock check + verify);
* ``mlflow models predict -m MODEL -i INPUT -t json --env-manager uv`` on the same input: MLflow's
  nearest equivalent (it rebuilds a temporary environment on every call, from the model's
  requirements, and compares nothing).

Medians and ratios are printed; nothing asserts a time. ``PYTHONDONTWRITEBYTECODE`` is unset for
every process (``--keep-no-bytecode`` keeps it set for all); pip's configuration is ignored
(``PIP_CONFIG_FILE=/dev/null``, no ``PIP_FIND_LINKS``) so that the lock refers to PyPI.
"""

from __future__ import annotations

import argparse
import json
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

PIP_INDEX_VARS = (
    "PIP_FIND_LINKS",
    "PIP_INDEX_URL",
    "PIP_EXTRA_INDEX_URL",
    "PIP_CONSTRAINT",
    "PIP_TRUSTED_HOST",
    "PIP_NO_INDEX",
)
STEPS = ("lock", "build", "verify", "predict", "compare")

WARM = "envbuild reproduce, warm"
COLD = "envbuild reproduce, cold (fresh envbuild cache)"
PREDICT = "envbuild predict, warm"
MLFLOW = "mlflow models predict --env-manager uv"


class CaseFailed(Exception):
    """A command exited with an unexpected code: its row says so instead of a time."""


def make_model(folder: Path) -> Path:
    import mlflow.sklearn
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True, as_frame=True)
    path = folder / "sklearn-iris"
    mlflow.sklearn.save_model(
        LogisticRegression(max_iter=500).fit(X, y),
        str(path),
        serialization_format="cloudpickle",
        input_example=X.head(3),
    )
    return path


def run(args: list[str], env: dict[str, str], timeout: float = 900) -> tuple[float, str]:
    """(seconds, stdout) of one command; CaseFailed with the last line of output if it fails."""
    started = time.perf_counter()
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        lines = [x for x in (done.stderr or done.stdout).strip().splitlines() if x.strip()]
        raise CaseFailed(f"exit {done.returncode}: {lines[-1][:200] if lines else ''}")
    return seconds, done.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="rounds (default 3); medians")
    parser.add_argument("--quick", action="store_true", help="one round")
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--model",
        type=Path,
        default=HERE.parent / "examples" / "sklearn-iris",
        help="an MLflow model folder with an input example (default: examples/sklearn-iris); "
        "a copy is used",
    )
    which.add_argument(
        "--make-model", action="store_true", help="make a new scikit-learn model instead"
    )
    parser.add_argument(
        "--keep-no-bytecode",
        action="store_true",
        help="keep PYTHONDONTWRITEBYTECODE=1 for every process (default: unset for all)",
    )
    args = parser.parse_args()
    repeat = 1 if args.quick else max(1, args.repeat)

    from envbuild.proc import uv_bin

    uv = uv_bin()
    env = {k: v for k, v in os.environ.items() if k not in PIP_INDEX_VARS}
    env = {k: v for k, v in env.items() if not k.startswith(("UV_INDEX", "UV_EXTRA_INDEX"))}
    env.pop("UV_FIND_LINKS", None)
    env["PIP_CONFIG_FILE"] = os.devnull
    env["UV_PYTHON_DOWNLOADS"] = "never"
    env["PATH"] = os.pathsep.join([str(Path(uv).parent), env.get("PATH", "")])  # MLflow's `uv`
    if args.keep_no_bytecode:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    else:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    envbuild_cli = [sys.executable, "-m", "envbuild"]
    mlflow_cli = str(Path(sys.executable).parent / "mlflow")

    load_before = os.getloadavg()
    started_all = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="envbuild-bench-reproduce-") as tmp:
        work = Path(tmp)
        warm_cache = work / "cache-warm"
        source = make_model(work / "made") if args.make_model else args.model.resolve()
        model = work / "model"
        shutil.copytree(source, model)
        input_path = model / "serving_input_example.json"
        expected = model / "envbuild_expected_output.json"
        if not input_path.is_file():
            print(f"{source} has no serving_input_example.json: give a model with an input example")
            return 2

        def with_cache(cache: Path) -> dict[str, str]:
            return {**env, "ENVBUILD_CACHE_DIR": str(cache)}

        print(f"model: {source} (a copy)")
        setup_cache = with_cache(work / "cache-setup")  # not the warm cache: its first use is cold
        lock_seconds: float | None = None
        try:
            run([*envbuild_cli, "lock", str(model), "--check"], setup_cache)
            print("its pylock.toml is current")
        except CaseFailed:
            print("setup: envbuild lock ...")
            lock_seconds = run([*envbuild_cli, "lock", str(model)], setup_cache)[0]
        setup_predict: float | None = None
        if not expected.is_file():
            print("setup: envbuild predict -o envbuild_expected_output.json ...")
            setup_predict = run(
                [*envbuild_cli, "predict", str(model), "-o", str(expected)], setup_cache
            )[0]

        steps: dict[str, dict[str, list[float]]] = {WARM: {}, COLD: {}}
        counter = [0]

        def reproduce(cache_kind: str) -> float:
            name = WARM if cache_kind == "warm" else COLD
            if cache_kind == "warm":
                cache = warm_cache
            else:
                counter[0] += 1
                cache = work / f"cache-{counter[0]}"
            try:
                cmd = [*envbuild_cli, "reproduce", str(model), "--json"]
                seconds, out = run(cmd, with_cache(cache))
            finally:
                if cache != warm_cache:
                    shutil.rmtree(cache, ignore_errors=True)
            report = json.loads(out)
            if not report.get("ok"):
                raise CaseFailed(f"not reproduced: exit {report.get('exit_code')}")
            for step in report["steps"]:
                steps[name].setdefault(step["name"], []).append(float(step["duration"]))
            return seconds

        def predict() -> float:
            cmd = [*envbuild_cli, "predict", str(model), "-i", str(input_path)]
            return run(cmd, with_cache(warm_cache))[0]

        def mlflow_predict() -> float:
            cmd = [mlflow_cli, "models", "predict", "-m", str(model), "-i", str(input_path)]
            return run([*cmd, "-t", "json", "--env-manager", "uv"], env)[0]

        print("warming up (one reproduce filling the warm cache, one mlflow predict) ...")
        first_reproduce = reproduce("warm")
        steps[WARM].clear()
        mlflow_predict()

        cases: dict[str, Callable[[], float]] = {
            WARM: lambda: reproduce("warm"),
            COLD: lambda: reproduce("cold"),
            PREDICT: predict,
            MLFLOW: mlflow_predict,
        }
        samples: dict[str, list[float]] = {name: [] for name in cases}
        failures: dict[str, str] = {}
        for round_no in range(repeat):
            print(f"round {round_no + 1}/{repeat} ...", flush=True)
            for name, func in cases.items():
                if name in failures:
                    continue
                try:
                    samples[name].append(func())
                except (CaseFailed, subprocess.TimeoutExpired, ValueError) as exc:
                    failures[name] = str(exc)
        load_after = os.getloadavg()
        total = time.perf_counter() - started_all

    med = {name: statistics.median(s) for name, s in samples.items() if s}
    low = {name: min(s) for name, s in samples.items() if s}
    print(
        f"\n{repeat} round(s); load average {load_before[0]:.1f} before, {load_after[0]:.1f} "
        f"after (2 cores: other work on the machine slows every case); {total:.0f} s in all"
    )
    print(
        f"PYTHONDONTWRITEBYTECODE {'set' if args.keep_no_bytecode else 'unset'} for every "
        "process; uv's package cache warm throughout (cold = envbuild's cache only)"
    )
    setup = [f"first envbuild reproduce (cold) {first_reproduce:.2f} s"]
    if lock_seconds is not None:
        setup.insert(0, f"envbuild lock {lock_seconds:.2f} s")
    if setup_predict is not None:
        setup.insert(1, f"envbuild predict -o {setup_predict:.2f} s")
    print(f"untimed for the table: {', '.join(setup)}")
    print(f"\n{'':<50} {'median':>9} {'min':>9}")
    for name in cases:
        if name in failures:
            print(f"  {name:<48} failed: {failures[name]}")
        elif name in med:
            print(f"  {name:<48} {med[name]:7.2f} s {low[name]:7.2f} s")
            for step in STEPS:
                durations = steps.get(name, {}).get(step)
                if durations:
                    print(
                        f"    {step:<46} {statistics.median(durations):7.2f} s "
                        f"{min(durations):7.2f} s"
                    )
    if med.get(WARM) and med.get(COLD):
        covered = sum(statistics.median(steps[WARM].get(s, [0.0])) for s in STEPS)
        print(
            f"  {'(warm: outside the steps: start-up, model read)':<48} "
            f"{med[WARM] - covered:7.2f} s"
        )

    def ratio(label: str, a: str, b: str, note: str = "") -> None:
        if med.get(a) and med.get(b):
            print(f"  {label:<48} x{med[a] / med[b]:5.2f}    x{low[a] / low[b]:5.2f}{note}")
        else:
            print(f"  {label:<48}   n/a")

    print(f"\n{'ratios':<50} {'medians':>9} {'mins':>8}")
    note = ""
    if med.get(COLD) and med.get(MLFLOW):
        met = med[COLD] / med[MLFLOW] < 1
        note = "   target < 1 (medians): " + ("met" if met else "NOT met")
    ratio("envbuild reproduce, cold / mlflow predict uv", COLD, MLFLOW, note)
    ratio("mlflow predict uv / envbuild reproduce, warm", MLFLOW, WARM)
    ratio("mlflow predict uv / envbuild reproduce, cold", MLFLOW, COLD)
    ratio("envbuild reproduce, warm / predict, warm", WARM, PREDICT)
    ratio("envbuild reproduce, cold / warm", COLD, WARM)
    return 0


if __name__ == "__main__":
    sys.exit(main())

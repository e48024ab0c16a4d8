"""Benchmark: `envbuild capture` vs MLflow's `mlflow.models.infer_pip_requirements`, same models.

    .venv/bin/python bench/capture.py [--runs 3]

Models (the integration tests' builders, saved by this environment's mlflow):

* ``sklearn``: LogisticRegression on iris, with an input example;
* ``lazy``: a PythonModel whose ``predict`` imports ``dotenv`` (python-dotenv) lazily;
* ``code``: a PythonModel from a code path importing ``PIL``, ``yaml`` and ``sklearn`` (and
  ``tomli_w`` in a function never called).

Both load the model in a subprocess of this interpreter; envbuild also predicts on the input
example and scans the model's code. Timed: ``envbuild capture MODEL --json`` (the command, start-up
included, without --write: no lock) and ``infer_pip_requirements(model, flavor)`` in this process
(it starts its own subprocess). Medians over ``--runs`` runs after one warm-up run each; then, per
model, the requirements each found that the other did not, and the pins that differ.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

FLAVORS = {"sklearn": "sklearn", "lazy": "python_function", "code": "python_function"}


def timed(func: Callable[[], object], runs: int) -> tuple[float, object]:
    """(median seconds of ``runs`` calls after one untimed warm-up, the last result)."""
    result = func()
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        result = func()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples), result


def envbuild_capture(model: Path) -> list[str]:
    env = dict(os.environ, PIP_CONFIG_FILE=os.devnull)
    out = subprocess.run(
        [sys.executable, "-m", "envbuild", "capture", str(model), "--json"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return json.loads(out.stdout)["requirements"]


def mlflow_infer(model: Path, flavor: str) -> list[str]:
    from mlflow.models import infer_pip_requirements

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return list(infer_pip_requirements(str(model), flavor))


def pins(requirements: list[str]) -> dict[str, str]:
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    out = {}
    for line in requirements:
        req = Requirement(line)
        out[canonicalize_name(req.name)] = str(req.specifier) or (req.url or "")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    from tests.integration.test_capture import build_code, build_lazy, build_sklearn

    rows = []
    with tempfile.TemporaryDirectory(prefix="envbuild-bench-capture-") as tmp:
        root = Path(tmp)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            models = {
                "sklearn": build_sklearn(root),
                "lazy": build_lazy(root),
                "code": build_code(root),
            }
        for name, model in models.items():
            ours_s, ours = timed(lambda m=model: envbuild_capture(m), args.runs)
            theirs_s, theirs = timed(lambda m=model, n=name: mlflow_infer(m, FLAVORS[n]), args.runs)
            rows.append((name, ours_s, theirs_s, ours, theirs))

    print(f"median of {args.runs} runs after a warm-up; Python {sys.version.split()[0]}")
    print(
        f"{'model':<8} {'envbuild capture':>17} {'mlflow infer':>13} {'ratio':>6}  found (envbuild/mlflow)"
    )
    for name, ours_s, theirs_s, ours, theirs in rows:
        print(
            f"{name:<8} {ours_s:>16.2f}s {theirs_s:>12.2f}s {ours_s / theirs_s:>6.2f}  "
            f"{len(ours)}/{len(theirs)}"
        )
    for name, _, _, ours, theirs in rows:
        a, b = pins(ours), pins(theirs)
        print(f"\n{name}:")
        print(f"  mlflow found  ({len(b)}): {', '.join(sorted(b)) or '-'}")
        print(
            f"  only envbuild ({len(set(a) - set(b))}): {', '.join(sorted(set(a) - set(b))) or '-'}"
        )
        print(
            f"  only mlflow   ({len(set(b) - set(a))}): {', '.join(sorted(set(b) - set(a))) or '-'}"
        )
        differ = [f"{k} {b[k]} vs {a[k]}" for k in sorted(set(a) & set(b)) if a[k] != b[k]]
        print(f"  pinned differently (mlflow vs envbuild): {', '.join(differ) or '-'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

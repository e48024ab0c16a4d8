"""Benchmark: `envbuild capture` vs MLflow's `mlflow.models.infer_pip_requirements`, same models.

    .venv/bin/python bench/capture.py [--runs 3] [--keep-no-bytecode]

Models (the integration tests' builders, saved by this environment's mlflow):

* ``sklearn``: LogisticRegression on iris, with an input example;
* ``lazy``: a PythonModel whose ``predict`` imports ``dotenv`` (python-dotenv) lazily;
* ``code``: a PythonModel from a code path importing ``PIL``, ``yaml`` and ``sklearn`` (and
  ``tomli_w`` in a function never called).

Both load the model in a subprocess of this interpreter; envbuild also predicts on the input
example and scans the model's code. Timed: ``envbuild capture MODEL --json`` (the command, start-up
included, without --write: no lock) and ``infer_pip_requirements(model, flavor)`` run the way a
user runs it, in a fresh ``python -c`` (it starts its own subprocess). Cases run interleaved
(every case once per round, ``--runs`` rounds, after one untimed warm-up round); medians, minimums
and the envbuild/MLflow ratio per model are printed, then where envbuild's time goes (the probe's
load, predict and mapping, as it reports them; the rest is start-up of both processes), then, per
model, the direct requirements each found (envbuild: every distribution something was imported
from, before it keeps only the roots for requirements.txt) that the other did not, and the pins
that differ.

Bytecode: this machine sets ``PYTHONDONTWRITEBYTECODE=1``. It is removed for both sides and
``PYTHONPYCACHEPREFIX`` points at a temporary folder, so both write and reuse ``.pyc`` (what a
user's Python does by default) without writing into the development venv; the warm-up round fills
it. ``--keep-no-bytecode`` keeps the variable set for both instead (every load compiles mlflow
from source, unless the environment was installed with bytecode).
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
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

FLAVORS = {"sklearn": "sklearn", "lazy": "python_function", "code": "python_function"}

MLFLOW_SCRIPT = """\
import json, sys, warnings
warnings.simplefilter("ignore")
from mlflow.models import infer_pip_requirements
print(json.dumps(list(infer_pip_requirements(sys.argv[1], sys.argv[2]))))
"""


def envbuild_capture(model: Path, env: dict[str, str]) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "envbuild", "capture", str(model), "--json"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return time.perf_counter() - started, json.loads(out.stdout)


def mlflow_infer(model: Path, flavor: str, env: dict[str, str]) -> tuple[float, list[str]]:
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", MLFLOW_SCRIPT, str(model), flavor],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    seconds = time.perf_counter() - started
    return seconds, json.loads(out.stdout.strip().splitlines()[-1])


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
    parser.add_argument("--runs", type=int, default=3, help="timed rounds (default 3); medians")
    parser.add_argument(
        "--keep-no-bytecode",
        action="store_true",
        help="keep PYTHONDONTWRITEBYTECODE=1 for both sides (default: unset, .pyc in a temp dir)",
    )
    args = parser.parse_args()

    from tests.integration.test_capture import build_code, build_lazy, build_sklearn

    load_before = os.getloadavg()
    started_all = time.perf_counter()
    samples: dict[tuple[str, str], list[float]] = {}
    phases: dict[tuple[str, str], list[float]] = {}
    found: dict[tuple[str, str], list[str]] = {}
    with tempfile.TemporaryDirectory(prefix="envbuild-bench-capture-") as tmp:
        root = Path(tmp)
        env = dict(os.environ, PIP_CONFIG_FILE=os.devnull, ENVBUILD_CACHE_DIR=str(root / "cache"))
        if args.keep_no_bytecode:
            env["PYTHONDONTWRITEBYTECODE"] = "1"
        else:
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = str(root / "pycache")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            models = {
                "sklearn": build_sklearn(root),
                "lazy": build_lazy(root),
                "code": build_code(root),
            }
        for round_no in range(args.runs + 1):
            print(
                f"{'warm-up' if round_no == 0 else f'round {round_no}/{args.runs}'} ...", flush=True
            )
            for name, model in models.items():
                seconds, doc = envbuild_capture(model, env)
                found[(name, "envbuild")] = list(doc["requirements"])  # the roots
                found[(name, "direct")] = [p["requirement"] for p in doc["packages"]]
                found[(name, "closure")] = list(doc["closure"])  # what the lock pins
                theirs_s, theirs = mlflow_infer(model, FLAVORS[name], env)
                found[(name, "mlflow")] = theirs
                if round_no == 0:
                    continue
                samples.setdefault((name, "envbuild"), []).append(seconds)
                samples.setdefault((name, "mlflow"), []).append(theirs_s)
                timings = dict(doc.get("timings") or {})
                for phase in ("load", "predict", "map"):
                    phases.setdefault((name, phase), []).append(float(timings.get(phase, 0.0)))
                rest = seconds - float(timings.get("total", 0.0))
                phases.setdefault((name, "start-up and host side"), []).append(rest)
    load_after = os.getloadavg()
    total = time.perf_counter() - started_all

    med = {key: statistics.median(values) for key, values in samples.items()}
    low = {key: min(values) for key, values in samples.items()}
    print(
        f"\n{args.runs} round(s) after a warm-up; Python {sys.version.split()[0]}; load average "
        f"{load_before[0]:.1f} before, {load_after[0]:.1f} after (2 cores: other work slows "
        f"every case); {total:.0f} s in all"
    )
    bytecode = "set" if args.keep_no_bytecode else "unset (.pyc in a temporary prefix)"
    print(f"PYTHONDONTWRITEBYTECODE {bytecode} for both sides")
    print(
        f"\n{'model':<8} {'envbuild capture':>17} {'mlflow infer':>13}   {'envbuild/mlflow':>15}"
        f"   found (envbuild direct/mlflow)"
    )
    print(f"{'':<8} {'median  min':>17} {'median  min':>13}   {'medians  mins':>15}")
    ratios = []
    for name in models:
        ours, theirs = (name, "envbuild"), (name, "mlflow")
        ratios.append(med[ours] / med[theirs])
        print(
            f"{name:<8} {med[ours]:>8.2f} {low[ours]:>6.2f}s {med[theirs]:>6.2f} {low[theirs]:>5.2f}s"
            f"   x{med[ours] / med[theirs]:>5.2f}  x{low[ours] / low[theirs]:>5.2f}"
            f"   {len(found[(name, 'direct')])}/{len(found[theirs])}"
        )
    geo = statistics.geometric_mean(ratios)
    print(f"{'all':<8} {'':>17} {'':>13}   x{geo:>5.2f} (geometric mean of the medians' ratios)")
    print(
        "   target: envbuild/mlflow <= 1.00 on every model: "
        + ("met" if max(ratios) <= 1.0 else "NOT met")
    )

    print("\nwhere envbuild capture's time goes (medians, s)")
    print(f"{'model':<8} {'probe: load':>12} {'predict':>8} {'map':>6} {'start-up + host':>16}")
    for name in models:
        row = [statistics.median(phases[(name, p)]) for p in ("load", "predict", "map")]
        rest = statistics.median(phases[(name, "start-up and host side")])
        print(f"{name:<8} {row[0]:>12.2f} {row[1]:>8.2f} {row[2]:>6.2f} {rest:>16.2f}")

    for name in models:
        roots, closure = pins(found[(name, "envbuild")]), pins(found[(name, "closure")])
        theirs = pins(found[(name, "mlflow")])
        print(f"\n{name}:")
        print(f"  envbuild requirements.txt (roots): {', '.join(sorted(roots)) or '-'}")
        print(
            f"  envbuild direct requirements: {len(found[(name, 'direct')])} (every distribution "
            f"imported from); the lock pins {len(closure)}"
        )
        print(f"  mlflow found ({len(theirs)}): {', '.join(sorted(theirs)) or '-'}")
        missing = sorted(set(theirs) - set(closure))
        print(f"  found by mlflow, not pinned by envbuild: {', '.join(missing) or '-'}")
        extra = sorted(set(roots) - set(theirs))
        print(f"  envbuild roots mlflow did not list: {', '.join(extra) or '-'}")
        differ = [
            f"{k} {theirs[k]} vs {closure[k]}"
            for k in sorted(set(theirs) & set(closure))
            if theirs[k] != closure[k]
        ]
        print(f"  pinned differently (mlflow vs envbuild): {', '.join(differ) or '-'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

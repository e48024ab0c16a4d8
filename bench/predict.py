"""Benchmark: `envbuild predict`/`serve` vs a hand-made venv (the floor) vs MLflow's own commands.

    .venv/bin/python bench/predict.py [--repeat 3] [--warm-samples 2] [--quick] [--model DIR]
                                      [--keep-no-bytecode]

On one scikit-learn model (saved here with ``serialization_format="cloudpickle"`` and an input
example, unless ``--model`` is given) and one input (its ``serving_input_example.json``), times:

* ``envbuild predict -i INPUT``
  - cold, model's pylock.toml: a fresh, empty ``ENVBUILD_CACHE_DIR`` every run, on a copy of the
    model carrying its own ``pylock.toml`` (``envbuild lock`` writes it, untimed, unless the
    model has a current one): interpreter probes, environment build, the first run (which writes
    ``.pyc`` for what it imports), nothing resolved. uv's own package cache stays warm, as it
    would on any machine that has built one environment before. Issue #15's cold target:
    within 1.2x the hand-made cold floor below, and faster than MLflow;
  - cold (resolve + build): the same on a copy without ``pylock.toml``, so the lock is resolved
    through the network first;
  - cold env, cached lock: that copy again, the fresh cache seeded with the first cache's
    ``locks/`` and interpreter probes, so only the environment is built;
  - the same with ``--compile-bytecode`` (every module compiled at build time, what images do;
    the default compiles nothing and lets the first run write ``.pyc``), to size that option;
  - warm: the environment is in the cache;
  and, inside the cold runs, each step's seconds as envbuild's logs record them (resolve, create,
  install: link and compile bytecode);
* the hand-made cold floor: what a person does by hand with uv on a warm package cache, in a fresh
  temporary folder: ``uv venv --python P`` (P: the interpreter envbuild picks for the model),
  ``uv pip install --no-deps --require-hashes -r REQS`` (REQS: the model's ``pylock.toml`` as
  ``name==version --hash=...`` lines, written once, untimed), then the first run of the six-line
  script below with the new venv's ``python``; each step's seconds are shown, and the same with
  ``uv pip install --offline`` (what envbuild tries first: no index page revalidated);
* the floor: the environment's own ``python`` running a six-line script (import mlflow, load the
  model, predict the same input, print JSON), i.e. a hand-made venv with nothing around it;
* ``mlflow models predict -m MODEL -i INPUT -t json --env-manager uv`` (and ``virtualenv``, tried
  once, not with ``--quick``: it needs pyenv and virtualenv; a failure is printed as a row).
  MLflow's ``models predict`` builds a new environment in a temporary folder on every call
  (``create_env_root_dir=True``), so it has no warm case: every run is "cold env, warm uv cache";
* ``envbuild serve`` and ``mlflow models serve --env-manager uv``: seconds from starting the
  command to the first 200 on ``/ping``, warm (envbuild's cache; MLflow's ``MLFLOW_ENV_ROOT``, a
  temporary folder made warm by one untimed start), plus one cold start of each;
* a breakdown of a warm ``envbuild predict``: interpreter start-up, the CLI's start-up, importing
  envbuild's pipeline, ``prepare()`` in-process, the same command with the moment it spawns the
  runner recorded (host side vs runner part of one run), and the runner alone with the
  environment's python.

Cases run interleaved (every case once per round, ``--repeat`` rounds; the cheap warm cases
``--warm-samples`` times per round, since the warm/floor ratio is the one with a target) so that a
busy machine slows all of them alike; medians, minimums and ratios are printed, and nothing
asserts a time.

Bytecode: this machine sets ``PYTHONDONTWRITEBYTECODE=1``. It is removed for every timed process,
on all sides (Python's default elsewhere): envbuild's and the hand-made environments get their
``.pyc`` from their first run, MLflow's cached serving environment from the untimed warm-up start.
With ``--keep-no-bytecode`` the variable stays set for every process instead (then only
``--compile-bytecode`` environments ever have ``.pyc`` files).

pip's configuration is ignored (``PIP_CONFIG_FILE=/dev/null``, no ``PIP_FIND_LINKS``) so that
locks and installs refer to PyPI; ``UV_PYTHON_DOWNLOADS=never``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
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
PYENV_BIN = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "bin"
RUNNER_DROPPED_VARS = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE")
READY_TIMEOUT = 300.0

# the rows
COLD = "envbuild predict, cold (resolve + build)"
SEEDED = "envbuild predict, cold env, cached lock"
PYLOCK_COLD = "envbuild predict, cold, model's pylock.toml"
HAND_COLD = "hand-made cold floor: uv venv + install + 1st run"
HAND_COLD_OFFLINE = "hand-made cold floor, uv pip install --offline"
COMPILE = "envbuild predict --compile-bytecode, cold env, cached lock"
WARM = "envbuild predict, warm"
FLOOR = "floor: env python + 6-line script"
MLFLOW_UV = "mlflow models predict --env-manager uv"
MLFLOW_VENV = "mlflow models predict --env-manager virtualenv"
SERVE_WARM = "envbuild serve, warm"
MLFLOW_SERVE_WARM = "mlflow models serve --env-manager uv, warm"
SERVE_COLD = "envbuild serve, cold (resolve + build)"
MLFLOW_SERVE_COLD = "mlflow models serve --env-manager uv, cold"
PY_PASS = "python -c pass (envbuild's interpreter)"
CLI_START = "envbuild --version (CLI start-up)"
PREPARE = "python: import envbuild.prepare + 5 x prepare()"
RUNNER_ALONE = "runner alone (env python runner.py predict)"
STAMPED = "envbuild predict, warm, timestamped"
HOST_PART = "host side: start until the runner is spawned"
RUNNER_PART = "runner part: spawn until exit"
# cheap cases, run --warm-samples times per round: the warm ratio is the one with a target
LIGHT = (WARM, FLOOR, RUNNER_ALONE, STAMPED, PY_PASS, CLI_START, PREPARE)

FLOOR_SCRIPT = """\
import json, sys
import mlflow.pyfunc
import pandas as pd
model = mlflow.pyfunc.load_model(sys.argv[1])
split = json.load(open(sys.argv[2]))["dataframe_split"]
sys.stdout.write(json.dumps({"predictions": model.predict(pd.DataFrame(split["data"], columns=split["columns"])).tolist()}))
"""

PREPARE_SCRIPT = """\
import json, statistics, sys, time
started = time.perf_counter()
from envbuild.envspec import read_env
from envbuild.model import load_model
from envbuild.prepare import prepare
imported = time.perf_counter()
samples = []
for _ in range(5):
    t = time.perf_counter()
    spec = load_model(sys.argv[1])
    prepared = prepare(spec, read_env(spec))
    samples.append(time.perf_counter() - t)
    if prepared.environment.built:
        raise SystemExit("the environment was not in the cache")
print(json.dumps({"import": imported - started, "prepare": statistics.median(samples)}))
"""


# `envbuild ARGS...` that writes the wall-clock time at which it spawns the runner to stderr
STAMP_SCRIPT = """\
import subprocess, sys, time
popen_init = subprocess.Popen.__init__
def stamped(self, *args, **kwargs):
    sys.stderr.write("ENVBUILD-BENCH-SPAWN %r\\n" % time.time())
    popen_init(self, *args, **kwargs)
subprocess.Popen.__init__ = stamped
from envbuild.cli import main
sys.argv[0] = "envbuild"
sys.exit(main())
"""


class CaseFailed(Exception):
    """A command exited non-zero: its row says so instead of a time."""


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


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:200] if lines else "(no output)"


def run_full(
    args: list[str], env: dict[str, str], timeout: float = 900, cwd: Path | None = None
) -> tuple[float, subprocess.CompletedProcess[str]]:
    """(seconds, the finished process) of one command; CaseFailed if it exits non-zero."""
    started = time.perf_counter()
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout, cwd=cwd)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise CaseFailed(f"exit {done.returncode}: {last_line(done.stderr or done.stdout)}")
    return seconds, done


def run(
    args: list[str], env: dict[str, str], timeout: float = 900, cwd: Path | None = None
) -> tuple[float, str]:
    """(seconds, stdout) of one command; CaseFailed with the last line of stderr if it fails."""
    seconds, done = run_full(args, env, timeout, cwd)
    return seconds, done.stdout


def hashed_requirements(pylock: Path) -> str:
    """A ``pylock.toml`` as the requirements file a person would hand to ``uv pip install
    --no-deps --require-hashes``: ``name==version ; marker --hash=sha256:...`` per package, every
    file's hash (wheels and sdist), so uv picks among the locked files from its index."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    lines = []
    for package in tomllib.loads(pylock.read_text(encoding="utf-8")).get("packages", []):
        files = [*package.get("wheels", []), *([package["sdist"]] if "sdist" in package else [])]
        hashes = [f["hashes"]["sha256"] for f in files if "sha256" in f.get("hashes", {})]
        if "version" not in package or not hashes:
            raise SystemExit(f"{pylock}: {package.get('name')} is not a hashed index package")
        marker = f" ; {package['marker']}" if package.get("marker") else ""
        pins = "".join(f" --hash=sha256:{h}" for h in hashes)
        lines.append(f"{package['name']}=={package['version']}{marker}{pins}")
    return "\n".join(lines) + "\n"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve_seconds(args: list[str], port: int, env: dict[str, str], log: Path) -> float:
    """Seconds from starting a server to its first 200 on /ping; the server is stopped after."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    url = f"http://127.0.0.1:{port}/ping"
    with open(log, "w") as handle:
        started = time.perf_counter()
        child = subprocess.Popen(
            args, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            while True:
                try:
                    with opener.open(url, timeout=2) as answer:
                        if answer.status == 200:
                            return time.perf_counter() - started
                except OSError:
                    pass
                if child.poll() is not None:
                    raise CaseFailed(f"exit {child.returncode}: {last_line(log.read_text())}")
                if time.perf_counter() - started > READY_TIMEOUT:
                    raise CaseFailed(f"no 200 on /ping after {READY_TIMEOUT:.0f} s")
                time.sleep(0.05)
        finally:
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGTERM)  # our own session: the server and its workers
                try:
                    child.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(child.pid, signal.SIGKILL)
                    child.wait()


def cold_steps(cache: Path) -> dict[str, float]:
    """Seconds of each subprocess of a cold build, read from the logs envbuild wrote in ``cache``.

    Each log starts with ``# exit 0 after X s``; uv's install log also says how long it took to
    link the packages and to compile bytecode (``Installed 87 packages in 425ms``).
    """
    steps: dict[str, float] = {}
    for log in sorted((cache / "logs").glob("*.log")):
        text = log.read_text(errors="replace")
        found = re.search(r"^# exit 0 after ([0-9.]+) s", text, re.M)
        if not found:
            continue
        for key, label in (
            ("resolving", "resolve the lock (uv pip compile)"),
            ("creating-the-virtualenv", "create the venv (uv venv)"),
            ("installing", "install (uv pip install)"),
        ):
            if key in log.name:
                steps[label] = float(found.group(1))
        for what, label in (
            ("Installed", "  of which: link packages"),
            ("Bytecode compiled", "  of which: compile bytecode"),
        ):
            found = re.search(rf"{what} .* in ([0-9.]+)(ms|s)\b", text)
            if found:
                value = float(found.group(1))
                steps[label] = value / 1000 if found.group(2) == "ms" else value
    order = ("resolve", "create", "install", "  of which: link", "  of which: compile")
    rank = {label: next(i for i, o in enumerate(order) if label.startswith(o)) for label in steps}
    return dict(sorted(steps.items(), key=lambda kv: rank[kv[0]]))


def predictions(stdout: str) -> object:
    """The ``{"predictions": ...}`` document at the end of a command's stdout."""
    text = stdout.strip()
    start = text.rfind('{"predictions"')
    try:
        return json.loads(text[start:])["predictions"] if start >= 0 else None
    except ValueError:
        return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="rounds (default 3); medians")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="one round; skip --compile-bytecode, the virtualenv manager and envbuild's cold serve",
    )
    parser.add_argument(
        "--warm-samples",
        type=int,
        default=2,
        help="runs of each cheap (warm) case per round (default 2)",
    )
    parser.add_argument("--model", type=Path, help="an MLflow model folder (default: make one)")
    parser.add_argument(
        "--keep-no-bytecode",
        action="store_true",
        help="keep PYTHONDONTWRITEBYTECODE=1 for every process (default: unset for all)",
    )
    args = parser.parse_args()
    repeat = 1 if args.quick else max(1, args.repeat)

    from envbuild.proc import uv_bin
    from envbuild.runtime_files import RUNNER

    uv = uv_bin()
    env = {k: v for k, v in os.environ.items() if k not in PIP_INDEX_VARS}
    env = {k: v for k, v in env.items() if not k.startswith(("UV_INDEX", "UV_EXTRA_INDEX"))}
    env.pop("UV_FIND_LINKS", None)
    env["PIP_CONFIG_FILE"] = os.devnull
    env["UV_PYTHON_DOWNLOADS"] = "never"
    # MLflow looks up `uv`, `virtualenv` and `pyenv` on PATH
    path = [str(Path(uv).parent), str(Path(sys.executable).parent), str(PYENV_BIN)]
    env["PATH"] = os.pathsep.join([*path, env.get("PATH", "")])
    if args.keep_no_bytecode:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    else:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    mlflow_cli = str(Path(sys.executable).parent / "mlflow")
    envbuild_cli = [sys.executable, "-m", "envbuild"]

    load_before = os.getloadavg()
    started_all = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="envbuild-bench-predict-") as tmp:
        work = Path(tmp)
        source = args.model.resolve() if args.model else make_model(work / "made")
        if not (source / "serving_input_example.json").is_file():
            print(f"{source}/serving_input_example.json is missing: give a model saved with an ")
            print("input example")
            return 2
        # two copies: one without pylock.toml (the cases that resolve or use a cached lock), one
        # carrying a current pylock.toml (the cold target's case, the hand-made floor, MLflow)
        model = work / "model"
        shutil.copytree(source, model, ignore=shutil.ignore_patterns("pylock*.toml"))
        locked = work / "model-locked"
        shutil.copytree(source, locked)
        input_path = model / "serving_input_example.json"
        locked_input = locked / "serving_input_example.json"
        floor_script = work / "floor.py"
        floor_script.write_text(FLOOR_SCRIPT)
        prepare_script = work / "prepare.py"
        prepare_script.write_text(PREPARE_SCRIPT)
        warm_cache = work / "cache-warm"
        mlflow_root = work / "mlflow-envs"
        logs = work / "logs"
        logs.mkdir()

        def with_cache(cache: Path, **extra: str) -> dict[str, str]:
            return {**env, "ENVBUILD_CACHE_DIR": str(cache), **extra}

        fresh_count = [0]

        def fresh_cache(seed: bool) -> Path:
            fresh_count[0] += 1
            cache = work / f"cache-{fresh_count[0]}"
            cache.mkdir()
            if seed:  # everything but the environments: the cached lock and interpreter probes
                shutil.copytree(warm_cache / "locks", cache / "locks")
                probes = warm_cache / "interpreters.json"
                if probes.is_file():
                    shutil.copy2(probes, cache / "interpreters.json")
            return cache

        predict_cmd = [*envbuild_cli, "predict", str(model), "-i", str(input_path)]
        locked_cmd = [*envbuild_cli, "predict", str(locked), "-i", str(locked_input)]
        outputs: dict[str, object] = {}
        inside: dict[str, dict[str, list[float]]] = {COLD: {}, PYLOCK_COLD: {}}

        def envbuild_predict(cache_kind: str, extra: tuple[str, ...] = ()) -> float:
            if cache_kind == "warm":
                seconds, out = run([*predict_cmd, *extra], with_cache(warm_cache))
                outputs.setdefault("envbuild predict", predictions(out))
                return seconds
            cache = fresh_cache(seed=cache_kind == "seeded")
            try:
                if cache_kind == "pylock":
                    seconds, out = run([*locked_cmd, *extra], with_cache(cache))
                    outputs.setdefault("envbuild predict, model's pylock", predictions(out))
                else:
                    seconds = run([*predict_cmd, *extra], with_cache(cache))[0]
                name = {"fresh": COLD, "pylock": PYLOCK_COLD}.get(cache_kind)
                if name:
                    for step, value in cold_steps(cache).items():
                        inside[name].setdefault(step, []).append(value)
                return seconds
            finally:
                shutil.rmtree(cache, ignore_errors=True)

        def mlflow_predict(manager: str) -> float:
            # on the copy carrying pylock.toml, which MLflow does not read: the same model
            cmd = [mlflow_cli, "models", "predict", "-m", str(locked), "-i", str(locked_input)]
            seconds, out = run([*cmd, "-t", "json", "--env-manager", manager], env)
            outputs.setdefault(f"mlflow {manager}", predictions(out))
            return seconds

        # -- warm-up (untimed unless said): envbuild's warm cache, MLflow's serving env ---------
        print(f"model: {source} (two copies: without pylock.toml, with a current one)")
        print(f"input: {input_path.name}")
        lock_cmd = [*envbuild_cli, "lock", str(locked)]
        lock_env = with_cache(work / "cache-lock")  # not the warm cache: its first use is cold
        try:
            run([*lock_cmd, "--check"], lock_env)
            print("the model's pylock.toml is current")
        except CaseFailed:  # none, or stale: lock the copy (untimed)
            print(f"envbuild lock (untimed): {run(lock_cmd, lock_env)[0]:.2f} s")
        print("warming up (first envbuild predict, first mlflow serve) ...", flush=True)
        first_predict = envbuild_predict("warm")
        chosen = json.loads(
            run([*envbuild_cli, "env", str(locked), "--json"], with_cache(warm_cache))[1]
        )
        if chosen.get("lock_source") != "model":
            print(f"the locked copy's pylock.toml was not used: {chosen.get('lock_source')}")
            return 2
        interpreter = chosen["interpreter"]["path"]
        requirements = work / "requirements-hashed.txt"
        requirements.write_text(hashed_requirements(locked / "pylock.toml"))
        env_path = run([*envbuild_cli, "env", str(model), "--print-path"], with_cache(warm_cache))[
            1
        ].strip()
        env_python = str(Path(env_path) / "bin" / "python")
        # what Environment.run_env() gives the runner
        run_env = {k: v for k, v in env.items() if k not in RUNNER_DROPPED_VARS}
        run_env["PYTHONNOUSERSITE"] = "1"
        run_env["VIRTUAL_ENV"] = env_path
        run_env["PATH"] = os.pathsep.join([str(Path(env_python).parent), env["PATH"]])
        mlflow_predict("uv")  # uv's cache holds what MLflow's resolution picks, too

        def envbuild_serve(cache: Path) -> float:
            port = free_port()
            cmd = [*envbuild_cli, "serve", str(model), "--port", str(port)]
            return serve_seconds(cmd, port, with_cache(cache), logs / "envbuild-serve.log")

        def mlflow_serve() -> float:
            port = free_port()
            cmd = [mlflow_cli, "models", "serve", "-m", str(model), "-p", str(port)]
            cmd += ["--env-manager", "uv"]
            menv = {**env, "MLFLOW_ENV_ROOT": str(mlflow_root)}
            return serve_seconds(cmd, port, menv, logs / "mlflow-serve.log")

        singles: dict[str, float | str] = {}

        def single(name: str, func: Callable[[], float]) -> None:
            try:
                singles[name] = func()
            except (CaseFailed, subprocess.TimeoutExpired) as exc:
                singles[name] = f"failed: {exc}"

        single(MLFLOW_SERVE_COLD, mlflow_serve)
        if not args.quick:
            print("cold serve and the virtualenv manager (one run each) ...", flush=True)

            def cold_serve() -> float:
                cache = fresh_cache(seed=False)
                try:
                    return envbuild_serve(cache)
                finally:
                    shutil.rmtree(cache, ignore_errors=True)

            single(SERVE_COLD, cold_serve)
            single(
                MLFLOW_VENV,
                lambda: mlflow_predict("virtualenv"),
            )

        # -- the timed rounds -------------------------------------------------------------------
        hand_count = [0]
        hand_steps: dict[str, list[float]] = {}

        def hand_cold(offline: bool) -> float:
            """The hand-made cold floor: a fresh folder, uv venv, uv pip install, first run."""
            hand_count[0] += 1
            folder = work / f"hand-{hand_count[0]}"
            folder.mkdir()
            venv = folder / ".venv"
            python = str(venv / "bin" / "python")
            install = [uv, "pip", "install", "--python", python, "--no-deps", "--require-hashes"]
            install += ["-r", str(requirements), *(["--offline"] if offline else [])]
            try:
                made = run(
                    [uv, "venv", "--quiet", "--python", interpreter, str(venv)], env, cwd=folder
                )[0]
                installed = run(install, env, cwd=folder)[0]
                first, out = run(
                    [python, str(floor_script), str(locked), str(locked_input)], env, cwd=folder
                )
            finally:
                shutil.rmtree(folder, ignore_errors=True)
            outputs.setdefault("hand-made cold floor", predictions(out))
            if not offline:
                for label, value in (
                    ("uv venv --python P", made),
                    ("uv pip install --no-deps --require-hashes -r", installed),
                    ("first run of the 6-line script", first),
                ):
                    hand_steps.setdefault(label, []).append(value)
            return made + installed + first

        # the cold target's three cases side by side, then the rest
        cases: dict[str, Callable[[], float]] = {
            PYLOCK_COLD: lambda: envbuild_predict("pylock"),
            HAND_COLD: lambda: hand_cold(offline=False),
            MLFLOW_UV: lambda: mlflow_predict("uv"),
            HAND_COLD_OFFLINE: lambda: hand_cold(offline=True),
            COLD: lambda: envbuild_predict("fresh"),
            SEEDED: lambda: envbuild_predict("seeded"),
        }
        if not args.quick:
            cases[COMPILE] = lambda: envbuild_predict("seeded", ("--compile-bytecode",))
        cases[WARM] = lambda: envbuild_predict("warm")

        def floor() -> float:
            seconds, out = run([env_python, str(floor_script), str(model), str(input_path)], env)
            outputs.setdefault("floor", predictions(out))
            return seconds

        cases[FLOOR] = floor
        cases[SERVE_WARM] = lambda: envbuild_serve(warm_cache)
        cases[MLFLOW_SERVE_WARM] = mlflow_serve
        # breakdown of a warm `envbuild predict`
        cases[PY_PASS] = lambda: run([sys.executable, "-c", "pass"], env)[0]
        cases[CLI_START] = lambda: run([*envbuild_cli, "--version"], env)[0]
        in_process: dict[str, list[float]] = {"import": [], "prepare": []}

        def prepare_in_process() -> float:
            seconds, out = run(
                [sys.executable, str(prepare_script), str(model)], with_cache(warm_cache)
            )
            data = json.loads(out)
            in_process["import"].append(data["import"])
            in_process["prepare"].append(data["prepare"])
            return seconds

        cases[PREPARE] = prepare_in_process
        runner_cmd = [env_python, str(RUNNER), "predict", "--model", str(model)]
        runner_cmd += ["--input", str(input_path)]
        cases[RUNNER_ALONE] = lambda: run(runner_cmd, run_env)[0]
        stamp_script = work / "stamped_envbuild.py"
        stamp_script.write_text(STAMP_SCRIPT)
        parts: dict[str, list[float]] = {HOST_PART: [], RUNNER_PART: []}

        def stamped() -> float:
            cmd = [sys.executable, str(stamp_script), *predict_cmd[3:]]
            started = time.time()
            seconds, done = run_full(cmd, with_cache(warm_cache))
            ended = time.time()
            spawns = [
                float(line.split()[1])
                for line in done.stderr.splitlines()
                if line.startswith("ENVBUILD-BENCH-SPAWN ")
            ]
            if spawns:
                parts[HOST_PART].append(spawns[-1] - started)
                parts[RUNNER_PART].append(ended - spawns[-1])
            return seconds

        cases[STAMPED] = stamped

        samples: dict[str, list[float]] = {name: [] for name in cases}
        failures: dict[str, str] = {}
        heavy = [name for name in cases if name not in LIGHT]
        light = [name for name in cases if name in LIGHT]
        for round_no in range(repeat):
            print(f"round {round_no + 1}/{repeat} ...", flush=True)
            for name in heavy + light * max(1, args.warm_samples):
                if name in failures:
                    continue
                try:
                    samples[name].append(cases[name]())
                except (CaseFailed, subprocess.TimeoutExpired) as exc:
                    failures[name] = str(exc)
        load_after = os.getloadavg()
        total = time.perf_counter() - started_all

    med = {name: statistics.median(s) for name, s in samples.items() if s}
    low = {name: min(s) for name, s in samples.items() if s}
    for name, value in singles.items():
        if isinstance(value, float):
            med[name] = low[name] = value

    def show(name: str, label: str | None = None) -> None:
        label = label or name
        if name in singles and not isinstance(singles[name], float):
            print(f"  {label:<54} {singles[name]}")
        elif name in failures:
            print(f"  {label:<54} failed: {failures[name]}")
        elif name in med:
            count = 1 if name in singles else len(samples[name])
            runs = "1 run" if count == 1 else f"{count} runs"
            print(f"  {label:<54} {med[name]:7.2f} s {low[name]:7.2f} s   {runs}")

    def ratio(label: str, a: str, b: str, note: str = "") -> None:
        if med.get(a) and med.get(b):
            print(f"  {label:<54} x{med[a] / med[b]:5.2f}   x{low[a] / low[b]:5.2f}{note}")
        elif {a, b} <= set(med) | set(failures) | set(singles):  # both tried, one failed
            print(f"  {label:<54}   n/a")

    print(
        f"\n{repeat} round(s); load average {load_before[0]:.1f} before, "
        f"{load_after[0]:.1f} after (2 cores: other work on the machine slows every case); "
        f"{total:.0f} s in all"
    )
    print(
        f"PYTHONDONTWRITEBYTECODE {'set' if args.keep_no_bytecode else 'unset'} for every "
        f"process; uv's cache warm throughout ({run([uv, 'cache', 'dir'], env)[1].strip()})"
    )
    print(f"first envbuild predict (untimed warm-up, cold): {first_predict:.2f} s")

    print(f"\n{'predict (same model, same input)':<56} {'median':>9} {'min':>9}")
    shown = (PYLOCK_COLD, HAND_COLD, HAND_COLD_OFFLINE, MLFLOW_UV, MLFLOW_VENV)
    shown += (COLD, SEEDED, COMPILE, WARM, FLOOR)
    for name in shown:
        show(name)
        steps = {f"{name}\t{k}": v for k, v in inside.get(name, {}).items()}
        if name == HAND_COLD:
            steps = {f"{name}\t{k}": v for k, v in hand_steps.items()}
        if steps:
            print(
                "    of which:" if name == HAND_COLD else "    inside those runs (envbuild's logs):"
            )
        for key, values in steps.items():
            med[key], low[key], samples[key] = statistics.median(values), min(values), values
            show(key, "    " + key.split("\t", 1)[1])
    print(f"\n{'serve (start -> first 200 on /ping)':<56} {'median':>9} {'min':>9}")
    for name in (SERVE_WARM, MLFLOW_SERVE_WARM, SERVE_COLD, MLFLOW_SERVE_COLD):
        show(name)

    print(f"\n{'where a warm `envbuild predict` goes':<56} {'median':>9} {'min':>9}")
    show(WARM)
    show(PY_PASS)
    show(CLI_START)
    show(PREPARE)
    if in_process["import"]:
        for key, label in (("import", "import envbuild.prepare"), ("prepare", "one prepare()")):
            med[label], low[label] = statistics.median(in_process[key]), min(in_process[key])
            samples[label] = in_process[key]
            show(label, "  of which: " + label)
    show(STAMPED)
    for name, values in parts.items():
        if values:
            med[name], low[name], samples[name] = statistics.median(values), min(values), values
            show(name, "  " + name)
    show(RUNNER_ALONE)
    show(FLOOR)
    if med.get(RUNNER_ALONE) and med.get(FLOOR):
        over = med[RUNNER_ALONE] - med[FLOOR]
        print(f"  {'runner over the floor (runner alone - floor)':<54} {over:7.2f} s")

    print(f"\n{'ratios':<56} {'medians':>9} {'mins':>8}")

    def target(a: str, b: str, limit: float, strict: bool = False) -> str:
        if not (med.get(a) and med.get(b)):
            return ""
        value = med[a] / med[b]
        met = value < limit if strict else value <= limit
        return f"   target {'<' if strict else '<='} {limit} (medians): " + (
            "met" if met else "NOT met"
        )

    # issue #15's cold target: empty envbuild cache, uv's cache warm, the model's pylock.toml
    ratio(
        "cold (model's pylock) / hand-made cold floor",
        PYLOCK_COLD,
        HAND_COLD,
        target(PYLOCK_COLD, HAND_COLD, 1.2),
    )
    ratio(
        "cold (model's pylock) / mlflow predict uv",
        PYLOCK_COLD,
        MLFLOW_UV,
        target(PYLOCK_COLD, MLFLOW_UV, 1.0, strict=True),
    )
    ratio("cold (model's pylock) / hand-made floor --offline", PYLOCK_COLD, HAND_COLD_OFFLINE)
    ratio("hand-made cold floor / floor (warm env)", HAND_COLD, FLOOR)
    ratio("envbuild predict, warm / floor", WARM, FLOOR, target(WARM, FLOOR, 1.15))
    ratio("runner alone / floor", RUNNER_ALONE, FLOOR)
    for other in (PYLOCK_COLD, COLD, SEEDED, COMPILE, WARM):
        ratio(f"mlflow predict uv / {other.removeprefix('envbuild ')}", MLFLOW_UV, other)
    ratio("mlflow predict virtualenv / predict, cold", MLFLOW_VENV, COLD, "  (1 run)")
    ratio("mlflow serve uv / envbuild serve, warm", MLFLOW_SERVE_WARM, SERVE_WARM)
    ratio("mlflow serve uv / envbuild serve, cold", MLFLOW_SERVE_COLD, SERVE_COLD, "  (1 run)")
    if med.get(SEEDED) and med.get(COMPILE):
        spent = med[COMPILE] - med[SEEDED]
        print(f"  {'cost of --compile-bytecode (cold env, cached lock)':<54} {spent:7.2f} s")

    got = {k: v for k, v in outputs.items() if v is not None}
    same = len({json.dumps(v) for v in got.values()}) <= 1
    print(f"\npredictions agree ({', '.join(got)}): {'yes' if same else 'NO'}")
    if not same:
        for name, value in got.items():
            print(f"  {name}: {json.dumps(value)[:200]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``envbuild reproduce``: prove in CI that a model's environment still rebuilds and still predicts
what it predicted when it was logged.

Composes the stages (it reimplements none): lock -> build -> verify -> predict -> compare. Every step
is reported as passed, failed or skipped with a reason and a duration; the first failed step
decides the exit code, so a CI job can tell "cannot build" from "built, but differs". Steps after a
failure still run when they can add information (predictions are still compared when the installed
set drifted), otherwise they are skipped with the reason.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from envbuild.errors import (
    BuildError,
    EnvbuildError,
    EnvironmentMismatch,
    ExitCode,
    ModelRunError,
    PredictionMismatch,
)

EXPECTED_OUTPUT = "envbuild_expected_output.json"
STEPS = ("lock", "build", "verify", "predict", "compare")
PASSED, FAILED, SKIPPED = "passed", "failed", "skipped"
MAX_DIFFS = 5


@dataclass
class Step:
    """One step of a reproduction and what it found."""

    name: str
    status: str = SKIPPED
    seconds: float = 0.0
    message: str = ""
    hint: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    exit_code: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "duration": round(self.seconds, 3),
            "message": self.message,
            "hint": self.hint,
            "details": self.details,
        }


@dataclass
class Report:
    """The whole reproduction: steps, drift and the exit code CI acts on."""

    model: str
    kind: str
    steps: list[Step]
    warnings: list[str] = field(default_factory=list)
    drift: list[dict[str, str | None]] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        for step in self.steps:
            if step.status == FAILED:
                return step.exit_code
        return int(ExitCode.OK)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def step(self, name: str) -> Step:
        return next(s for s in self.steps if s.name == name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "kind": self.kind,
            "ok": self.ok,
            "exit_code": self.exit_code,
            "steps": [s.to_dict() for s in self.steps],
            "drift": self.drift,
            "warnings": self.warnings,
        }


# ---------------------------------------------------------------------------------------------
# comparison of predictions


def compare_predictions(expected: Any, actual: Any, rtol: float, atol: float = 0.0) -> list[str]:
    """Differences between two ``{"predictions": ...}`` values: floats within ``rtol``, the rest
    exactly. Returns up to MAX_DIFFS readable lines naming the row (and column) that differs."""
    diffs: list[str] = []

    def same_number(a: float, b: float) -> bool:
        if math.isnan(a) and math.isnan(b):
            return True
        return math.isclose(a, b, rel_tol=rtol, abs_tol=atol)

    def walk(a: Any, b: Any, where: str) -> None:
        if len(diffs) >= MAX_DIFFS:
            return
        numbers = (int, float)
        if isinstance(a, bool) or isinstance(b, bool):
            if a is not b and a != b:
                diffs.append(f"{where}: expected {a!r}, got {b!r}")
        elif isinstance(a, numbers) and isinstance(b, numbers):
            if isinstance(a, int) and isinstance(b, int):
                if a != b:
                    diffs.append(f"{where}: expected {a!r}, got {b!r}")
            elif not same_number(float(a), float(b)):
                diffs.append(f"{where}: expected {a!r}, got {b!r} (rtol {rtol:g})")
        elif isinstance(a, dict) and isinstance(b, dict):
            if set(a) != set(b):
                diffs.append(f"{where}: keys differ: expected {sorted(a)}, got {sorted(b)}")
                return
            for key in a:
                walk(a[key], b[key], f"{where}[{key!r}]")
        elif isinstance(a, list) and isinstance(b, list):
            if len(a) != len(b):
                diffs.append(f"{where}: expected {len(a)} items, got {len(b)}")
                return
            for index, (x, y) in enumerate(zip(a, b, strict=True)):
                walk(x, y, f"{where}[{index}]")
        elif a != b:
            diffs.append(f"{where}: expected {a!r}, got {b!r}")

    walk(expected, actual, "predictions")
    return [
        d.replace("predictions[", "row ", 1).replace("]", "", 1)
        if d.startswith("predictions[")
        else d
        for d in diffs
    ]


# ---------------------------------------------------------------------------------------------
# the steps


def _timed(step: Step, func: Callable[[], None]) -> None:
    started = time.monotonic()
    try:
        func()
        if step.status == SKIPPED and not step.message:
            step.status = PASSED
    except EnvbuildError as exc:
        step.status = FAILED
        step.message = exc.message if not exc.path else str(exc)
        step.hint = exc.hint
        step.exit_code = int(exc.exit_code)
        if exc.log_path:
            step.details["log"] = str(exc.log_path)
    finally:
        step.seconds = time.monotonic() - started


def _distribution_key(name: str) -> str:
    from packaging.utils import canonicalize_name

    return canonicalize_name(name)


def verify_installed(
    lock_document: dict[str, Any], info: dict[str, Any], model_python: str | None
) -> dict[str, Any]:
    """Compare an environment's installed distributions with the lock's (for its markers)."""
    from packaging.markers import Marker

    markers = info.get("markers") or {}
    expected: dict[str, str] = {}
    for pkg in lock_document.get("packages", []):
        marker = pkg.get("marker")
        if marker and markers and not Marker(marker).evaluate(markers):
            continue
        expected[_distribution_key(pkg["name"])] = str(pkg["version"])
    installed = {_distribution_key(k): str(v) for k, v in (info.get("distributions") or {}).items()}
    missing = sorted(f"{n}=={v}" for n, v in expected.items() if n not in installed)
    extra = sorted(f"{n}=={v}" for n, v in installed.items() if n not in expected)
    different = sorted(
        f"{n}: locked {v}, installed {installed[n]}"
        for n, v in expected.items()
        if n in installed and installed[n] != v
    )
    python = str(info.get("python_version", ""))
    python_ok = model_python is None or ".".join(python.split(".")[:2]) == ".".join(
        model_python.split(".")[:2]
    )
    return {
        "missing": missing,
        "extra": extra,
        "different": different,
        "python": python,
        "model_python": model_python,
        "python_ok": python_ok,
        "checked": len(expected),
    }


def drift_report(
    env_spec: Any, lock_document: dict[str, Any] | None, installed: dict[str, str] | None
) -> list[dict[str, str | None]]:
    """Which packages differ from what the model was logged with (its exact pins and its lock)."""
    logged: dict[str, str] = {}
    for req in env_spec.requirements:
        if req.pinned_version:
            logged[req.name] = req.pinned_version
    if lock_document:
        for pkg in lock_document.get("packages", []):
            logged.setdefault(_distribution_key(pkg["name"]), str(pkg["version"]))
    if not installed:
        return [
            {"name": n, "logged": v, "installed": None}
            for n, v in sorted(logged.items())
            if n in {r.name for r in env_spec.requirements}
        ]
    now = {_distribution_key(k): str(v) for k, v in installed.items()}
    out: list[dict[str, str | None]] = []
    for name in sorted(set(logged) | {r.name for r in env_spec.requirements}):
        before, after = logged.get(name), now.get(name)
        if before != after:
            out.append({"name": name, "logged": before, "installed": after})
    return out


def reproduce(
    model: str | Path,
    *,
    kind: str = "venv",
    rtol: float = 1e-6,
    python: str | None = None,
    on_progress: Callable[[str], None] | None = None,
) -> Report:
    """Run the five steps on ``model``; never raises for the model's own problems (see Report)."""
    from envbuild.envspec import read_env
    from envbuild.lock import PYLOCK_NAME, check_lock
    from envbuild.model import load_model
    from envbuild.pipeline import BuildOptions, choose_interpreter

    report = Report(model=str(model), kind=kind, steps=[Step(name) for name in STEPS])
    spec = load_model(model)  # a model that cannot be read is exit 2, raised to the CLI
    env_spec = read_env(spec)
    report.model = str(spec.path)
    report.warnings.extend([*spec.warnings, *env_spec.warnings])
    progress = on_progress or (lambda _msg: None)
    state: dict[str, Any] = {}

    # 1. lock ------------------------------------------------------------------------------
    lock_step = report.step("lock")

    def do_lock() -> None:
        progress("lock: checking the model's pylock.toml")
        own = spec.path / PYLOCK_NAME
        if own.is_file():
            state["lock"] = check_lock(spec, env=env_spec)
            lock_step.details["lock"] = str(own)
            lock_step.details["source"] = "model"
        else:
            from envbuild.lockstage import obtain_lock

            interpreter = choose_interpreter(env_spec, BuildOptions(python=python), report.warnings)
            state["interpreter"] = interpreter
            lk, _ = obtain_lock(spec, env_spec, interpreter, warnings=report.warnings)
            state["lock"] = lk
            lock_step.details["lock"] = str(lk.path)
            lock_step.details["source"] = "resolved"
            report.warnings.append(
                f"the model has no {PYLOCK_NAME}: envbuild resolved one today, so this result is "
                f"not reproducible from the model alone (run `envbuild lock {spec.path}` and "
                "commit the lock)"
            )
        lk = state["lock"]
        lock_step.details.update(digest=lk.digest, python=lk.python, packages=len(lk.packages))

    _timed(lock_step, do_lock)
    if lock_step.status == FAILED:
        # the model's lock is stale or unreadable: a build from it would prove nothing
        with_reason(report, "build", "the lock step failed")
        with_reason(report, "verify", "the lock step failed")
        with_reason(report, "predict", "the lock step failed")
        with_reason(report, "compare", "the lock step failed")
        report.drift = drift_report(env_spec, _document_of(spec), None)
        return report

    # 2. build -----------------------------------------------------------------------------
    build_step = report.step("build")

    def do_build() -> None:
        from envbuild.envs.venv import build_venv

        if kind != "venv":
            from envbuild.envs.docker import environment_for_reproduce

            state["environment"] = environment_for_reproduce(
                spec, state["lock"], on_progress=progress
            )
        else:
            interpreter = state.get("interpreter") or choose_interpreter(
                env_spec, BuildOptions(python=python), report.warnings
            )
            progress("build: materializing the environment")
            lk = state["lock"]
            state["environment"] = build_venv(lk.text, lk.digest, interpreter, on_line=progress)
        environment = state["environment"]
        build_step.details.update(
            path=str(environment.path),
            reused=not environment.built,
            python=environment.interpreter_version,
        )

    _timed(build_step, do_build)
    if build_step.status == FAILED:
        build_step.exit_code = int(BuildError.exit_code)
        for name in ("verify", "predict", "compare"):
            with_reason(report, name, "the build step failed")
        report.drift = drift_report(env_spec, state["lock"].document, None)
        return report
    environment = state["environment"]

    # 3. verify ----------------------------------------------------------------------------
    verify_step = report.step("verify")

    def do_verify() -> None:
        from envbuild.execute import environment_info

        progress("verify: listing installed distributions")
        info = environment_info(environment)
        state["installed"] = info.get("distributions") or {}
        found = verify_installed(
            state["lock"].document, info, env_spec.python.version if env_spec.python else None
        )
        verify_step.details.update(found)
        problems = []
        if found["missing"]:
            problems.append(f"missing {', '.join(found['missing'][:5])}")
        if found["extra"]:
            problems.append(f"not in the lock {', '.join(found['extra'][:5])}")
        if found["different"]:
            problems.append(f"different {'; '.join(found['different'][:5])}")
        if not found["python_ok"]:
            problems.append(
                f"Python {found['python']} but the model asks for {found['model_python']}"
            )
        if problems:
            raise EnvironmentMismatch(
                "the environment differs from the lock: " + "; ".join(problems),
                hint="rebuild the environment from the lock (remove it from envbuild's cache, or "
                "do not install into it by hand); if the lock is what changed, run `envbuild lock`",
            )

    _timed(verify_step, do_verify)

    # 4. predict ---------------------------------------------------------------------------
    predict_step = report.step("predict")
    expected_path = spec.path / EXPECTED_OUTPUT

    def do_predict() -> None:
        from envbuild.execute import default_input, predict_to_file

        progress("predict: scoring the input example")
        input_path, content_type = default_input(spec)
        out_dir = Path(tempfile.mkdtemp(prefix="envbuild-reproduce-"))
        output = out_dir / "predictions.json"
        predict_to_file(environment, spec, input_path, content_type, output)
        state["predictions"] = json.loads(output.read_text(encoding="utf-8"))
        predict_step.details["input"] = str(input_path)
        predict_step.details["output"] = str(output)

    if spec.input_example is None or (
        spec.input_example.path is None and spec.input_example.serving_input_path is None
    ):
        with_reason(report, "predict", "the model has no saved input example")
    else:
        _timed(predict_step, do_predict)
        if predict_step.status == FAILED:
            predict_step.exit_code = int(ModelRunError.exit_code)

    # 5. compare ---------------------------------------------------------------------------
    compare_step = report.step("compare")
    if predict_step.status != PASSED:
        with_reason(report, "compare", f"the predict step {predict_step.status}")
    elif not expected_path.is_file():
        with_reason(
            report,
            "compare",
            f"the model has no recorded {EXPECTED_OUTPUT} (run `envbuild capture MODEL --write` "
            "where the model was logged)",
        )
    else:

        def do_compare() -> None:
            try:
                expected = json.loads(expected_path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise PredictionMismatch(f"cannot read {EXPECTED_OUTPUT}: {exc}") from None
            diffs = compare_predictions(
                expected.get("predictions") if isinstance(expected, dict) else expected,
                state["predictions"].get("predictions")
                if isinstance(state["predictions"], dict)
                else state["predictions"],
                rtol,
            )
            compare_step.details["differences"] = diffs
            compare_step.details["rtol"] = rtol
            if diffs:
                raise PredictionMismatch(
                    f"predictions differ from {EXPECTED_OUTPUT}: " + "; ".join(diffs[:3]),
                    hint="see the drift report for the packages that changed; if the new "
                    "predictions are right, record them again with `envbuild capture --write`",
                )

        _timed(compare_step, do_compare)

    if compare_step.status == FAILED or verify_step.status == FAILED:
        report.drift = drift_report(env_spec, state["lock"].document, state.get("installed"))
    return report


def with_reason(report: Report, name: str, reason: str) -> None:
    step = report.step(name)
    step.status = SKIPPED
    step.message = reason


def _document_of(spec: Any) -> dict[str, Any] | None:
    """The model's own lock as TOML data, when it can be read at all (for the drift report)."""
    from envbuild.lock import PYLOCK_NAME, read_lock

    try:
        return read_lock(spec.path / PYLOCK_NAME).document
    except EnvbuildError:
        return None

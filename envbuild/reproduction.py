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
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from envbuild.envs import Environment, get_backend
from envbuild.envspec import EnvSpec
from envbuild.errors import (
    BuildError,
    EnvbuildError,
    EnvironmentMismatch,
    ExitCode,
    ModelRunError,
    PredictionMismatch,
)
from envbuild.lock.select import LockChoice
from envbuild.model import ModelSpec

if TYPE_CHECKING:
    from envbuild.sources import Provenance

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
    partial: list[str] = field(default_factory=list)  # what was not checked, and why
    allow_partial: bool = False
    source: Provenance | None = None  # where MODEL came from (a URI's resolved version)

    @property
    def exit_code(self) -> int:
        for step in self.steps:
            if step.status == FAILED:
                return step.exit_code
        if self.partial and not self.allow_partial:
            return int(ExitCode.PARTIAL)
        return int(ExitCode.OK)

    @property
    def result(self) -> str:
        """``reproduced``, ``partial`` (nothing failed, but something was not checked) or
        ``failed``."""
        if any(step.status == FAILED for step in self.steps):
            return "failed"
        return "partial" if self.partial else "reproduced"

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
            "result": self.result,
            "exit_code": self.exit_code,
            "partial": self.partial,
            "steps": [s.to_dict() for s in self.steps],
            "drift": self.drift,
            "warnings": self.warnings,
            "source": self.source.to_dict() if self.source else None,
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


class Reproduction:
    """The five steps on one model, one method each; ``run()`` returns the :class:`Report`.

    State flows from step to step through attributes (the lock the build uses, the environment
    the verify and predict steps run in); a step that cannot run because an earlier one failed is
    skipped with the reason.
    """

    def __init__(
        self,
        model: ModelSpec,
        env: EnvSpec,
        *,
        kind: str | None = None,
        rtol: float = 1e-6,
        python: str | None = None,
        allow_partial: bool = False,
        environment: str | None = None,
        allow_mismatch: bool = False,
        on_progress: Callable[[str], None] | None = None,
        source: Provenance | None = None,
    ) -> None:
        from envbuild.envs import BuildOptions
        from envbuild.envs.base import REPRODUCE
        from envbuild.envs.registry import SHARED_KIND, choose_kind

        self.model = model
        self.env = env
        self.rtol = rtol
        # a shared environment is built (found) whatever its verdict: the verify step judges it
        self.shared = environment
        self.allow_mismatch = allow_mismatch
        self.kind = choose_kind(env, SHARED_KIND if environment else kind, REPRODUCE)
        kind = self.kind.name
        self.options = BuildOptions(
            kind=kind, python=python, environment=environment, allow_mismatch=True
        )
        self.progress = on_progress or (lambda _msg: None)
        remote = source is not None and not source.is_local
        self.report = Report(
            model=source.uri if source is not None and remote else str(model.path),
            kind=kind,
            steps=[Step(name) for name in STEPS],
            warnings=[*model.warnings, *env.warnings],
            allow_partial=allow_partial,
            source=source,
        )
        self.choice: LockChoice | None = None
        self.environment: Environment | None = None
        self.installed: dict[str, str] | None = None
        self.predictions: Any = None

    # -- the steps ------------------------------------------------------------------------
    def lock(self, step: Step) -> None:
        """The model's lock files (the kind's: ``pylock.toml``, or ``pixi.lock`` and
        ``pylock.conda.toml``) match its environment files (as ``lock --check``); without
        them, a lock resolved today (and the result is only partial)."""
        from envbuild.envs.registry import lock_files_backend
        from envbuild.lock.request import LockRequest
        from envbuild.lock.select import LockChoice, select_lock

        if self.shared:
            step.message = f"the shared environment {self.shared} is used as it is (no lock)"
            return
        assert self.options.kind is not None
        locker = lock_files_backend(self.options.kind)
        files = locker.lock_files(self.model) if locker is not None else ()
        names = " and ".join(f.name for f in files) or "lock"
        self.progress(f"lock: checking the model's {names}")
        if locker is not None and any(f.is_file() for f in files):
            outcome = locker.lock(self.model, self.env, LockRequest(), check=True)
            self.choice = LockChoice(outcome.pip_lock, "given")
            step.details["lock"] = str(outcome.pip_lock.path)
            step.details["files"] = [str(f) for f in files]
            step.details["source"] = "model"
        else:
            backend = get_backend(self.options.kind)
            plan = backend.plan(self.env, self.options)
            assert plan.target is not None
            self.choice = select_lock(self.model, self.env, plan.target)
            step.details["lock"] = str(self.choice.lock.path)
            step.details["source"] = "resolved"
            self.report.partial.append(f"the model has no {names}: its lock was resolved today")
            advice = (
                f"run `envbuild lock {self.model.path} --kind {self.options.kind}` and commit "
                "the lock files"
                if self.report.source is None or self.report.source.is_local
                else "log the model with its lock: `envbuild capture --write` where it is logged"
            )
            self.report.warnings.append(
                f"the model has no {names}: envbuild resolved one today, so this result is "
                f"not reproducible from the model alone ({advice})"
            )
        lk = self.choice.lock
        step.details.update(digest=lk.digest, python=lk.python, packages=len(lk.packages))

    def build(self, step: Step) -> None:
        """The environment of the chosen kind, from exactly that lock."""
        from envbuild.envs import build

        self.progress("build: materializing the environment")
        self.environment = build(
            self.model, self.env, self.choice, self.options, on_progress=self.progress
        )
        step.details.update(
            path=str(self.environment.path),
            reused=not self.environment.built,
            python=self.environment.interpreter_version,
        )

    def verify(self, step: Step) -> None:
        """The installed distributions are exactly the lock's, on the model's Python X.Y; in a
        shared environment, its verdict for the model."""
        assert self.environment is not None
        if self.shared:
            self.verify_shared(step)
            return
        assert self.choice is not None
        self.progress("verify: listing installed distributions")
        info = self.environment.info(self.model)
        base = self.environment.verify_base()
        owned = base.distributions if base is not None else frozenset()
        self.installed = {
            name: version
            for name, version in (info.get("distributions") or {}).items()
            if _distribution_key(name) not in owned
        }
        found = verify_installed(
            self.choice.lock.document,
            {**info, "distributions": self.installed},
            self.env.python.version if self.env.python else None,
        )
        step.details.update(found)
        problems = []
        if base is not None:
            step.details[base.name] = base.to_dict()
            problems.extend(base.problems())
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

    def verify_shared(self, step: Step) -> None:
        """The shared environment's verdict (``envbuild check``): every row in the details;
        not satisfied fails the step with exit 8 unless mismatches are allowed."""
        from envbuild.shared.names import parse_ref
        from envbuild.shared.store import Registry
        from envbuild.shared.use import unsuitable, verdict_for

        assert self.environment is not None and self.shared is not None
        self.progress("verify: judging the shared environment")
        ref = parse_ref(str(self.environment.details.get("shared", self.shared)))
        record = Registry.default().get(ref)
        verdict, installed = verdict_for(self.env, record, self.environment.kind)
        self.installed = {d.name: d.version for d in installed.distributions.values()}
        step.details["verdict"] = verdict.to_dict()
        self.report.warnings.extend(w for w in verdict.warnings if w not in self.report.warnings)
        if verdict.satisfied:
            return
        if not self.allow_mismatch:
            raise unsuitable(verdict, self.model.path)
        step.status = PASSED
        step.message = f"{record.ref} does not satisfy the model (--allow-mismatch): " + (
            verdict.summary()
        )

    def predict(self, step: Step) -> None:
        """The model's input example through the runner."""
        from envbuild.files import temporary_directory
        from envbuild.inputs import default_input

        assert self.environment is not None
        self.progress("predict: scoring the input example")
        with default_input(self.model) as data, temporary_directory("reproduce") as folder:
            output = folder / "predictions.json"
            self.environment.predict_to_file(self.model, data, output)
            self.predictions = json.loads(output.read_text(encoding="utf-8"))
            step.details["input"] = str(data.path)

    def compare(self, step: Step) -> None:
        """With ``envbuild_expected_output.json``: floats within the tolerance, the rest
        exactly."""
        expected_path = self.model.path / EXPECTED_OUTPUT
        try:
            expected = json.loads(expected_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise PredictionMismatch(f"cannot read {EXPECTED_OUTPUT}: {exc}") from None
        actual = self.predictions
        diffs = compare_predictions(
            expected.get("predictions") if isinstance(expected, dict) else expected,
            actual.get("predictions") if isinstance(actual, dict) else actual,
            self.rtol,
        )
        step.details["differences"] = diffs
        step.details["rtol"] = self.rtol
        if diffs:
            raise PredictionMismatch(
                f"predictions differ from {EXPECTED_OUTPUT}: " + "; ".join(diffs[:3]),
                hint="see the drift report for the packages that changed; if the new "
                "predictions are right, record them again with `envbuild capture --write`",
            )

    # -- running them ---------------------------------------------------------------------
    def run(self) -> Report:
        report = self.report
        lock_step = report.step("lock")
        _timed(lock_step, lambda: self.lock(lock_step))
        if lock_step.status == FAILED:
            # the model's lock is stale or unreadable: a build from it would prove nothing
            for name in ("build", "verify", "predict", "compare"):
                with_reason(report, name, "the lock step failed")
            report.drift = drift_report(self.env, _document_of(self.model), None)
            return report
        assert self.choice is not None or self.shared
        build_step = report.step("build")
        _timed(build_step, lambda: self.build(build_step))
        if build_step.status == FAILED:
            build_step.exit_code = int(BuildError.exit_code)
            for name in ("verify", "predict", "compare"):
                with_reason(report, name, "the build step failed")
            report.drift = drift_report(self.env, self._lock_document(), None)
            return report
        verify_step = report.step("verify")
        _timed(verify_step, lambda: self.verify(verify_step))
        predict_step = report.step("predict")
        from envbuild.inputs import has_example

        if not has_example(self.model):
            with_reason(report, "predict", "the model has no saved input example")
            report.partial.append("the model has no input example: nothing was predicted")
        else:
            _timed(predict_step, lambda: self.predict(predict_step))
            if predict_step.status == FAILED:
                predict_step.exit_code = int(ModelRunError.exit_code)
        compare_step = report.step("compare")
        if predict_step.status != PASSED:
            with_reason(report, "compare", f"the predict step {predict_step.status}")
        elif not (self.model.path / EXPECTED_OUTPUT).is_file():
            with_reason(
                report,
                "compare",
                f"the model has no recorded {EXPECTED_OUTPUT} (run `envbuild capture MODEL "
                "--write` where the model was logged)",
            )
            report.partial.append(f"the model has no {EXPECTED_OUTPUT}: nothing was compared")
        else:
            _timed(compare_step, lambda: self.compare(compare_step))
        if compare_step.status == FAILED or verify_step.status == FAILED:
            report.drift = drift_report(self.env, self._lock_document(), self.installed)
        return report

    def _lock_document(self) -> dict[str, Any] | None:
        """The lock the environment was built from (the model's own in a shared one)."""
        if self.choice is not None:
            return self.choice.lock.document
        return _document_of(self.model)


def reproduce(
    model: ModelSpec,
    env: EnvSpec | None = None,
    *,
    kind: str | None = None,
    rtol: float = 1e-6,
    python: str | None = None,
    allow_partial: bool = False,
    environment: str | None = None,
    allow_mismatch: bool = False,
    on_progress: Callable[[str], None] | None = None,
    source: Provenance | None = None,
) -> Report:
    """Run the five steps on ``model``; never raises for the model's own problems (see Report).

    ``source``: where a model given as a URI came from; the report names it (not the folder it
    was downloaded to) and carries its provenance.
    ``environment`` (NAME[:VERSION]) runs them in a shared environment: no lock, the verify
    step is its verdict for the model (exit 8 when not satisfied, unless ``allow_mismatch``),
    predict and compare run there."""
    if env is None:
        from envbuild.envspec import read_env

        env = read_env(model)
    return Reproduction(
        model,
        env,
        kind=kind,
        rtol=rtol,
        python=python,
        allow_partial=allow_partial,
        environment=environment,
        allow_mismatch=allow_mismatch,
        on_progress=on_progress,
        source=source,
    ).run()


def with_reason(report: Report, name: str, reason: str) -> None:
    step = report.step(name)
    step.status = SKIPPED
    step.message = reason


def _document_of(spec: ModelSpec) -> dict[str, Any] | None:
    """The model's own lock as TOML data, when it can be read at all (for the drift report)."""
    from envbuild.lock import PYLOCK_NAME, read_lock

    try:
        return read_lock(spec.path / PYLOCK_NAME).document
    except EnvbuildError:
        return None

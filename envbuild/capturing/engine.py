"""Capture, host side: run the probe in the logging interpreter and turn its facts into pins.

The probe (``envbuild/runtime/capture_probe.py``) runs in a subprocess of the interpreter the model
was logged with (never in envbuild's process), loads the model, predicts on its input example and
reports every module imported, the file each came from, the distributions that list that file,
every installed distribution (version, ``Requires-Dist``, ``direct_url.json``), the model code's
static imports and the predictions. This module decides, with ``packaging``:

* **which distribution provides each module**: the one whose RECORD lists the loaded file; when
  several do (``mlflow``, ``mlflow-skinny`` and ``mlflow-tracing`` ship the same files), the ones
  whose RECORD hash matches the file on disk, then the one that depends on the others (the
  package the user installed), so a module is never attributed to two distributions;
* **the direct requirements**: every distribution something was imported from, plus those the
  model's code imports statically, minus envbuild itself; each pinned ``==`` its installed
  version with local labels kept (``torch==2.1.0+cu118``), or to the URL it was installed from;
* **the roots**, what ``requirements.txt`` lists: the direct requirements that no other captured
  distribution requires (``mlflow`` and ``torch``, not the ``numpy`` both require); the lock pins
  the rest, so the file stays readable and the environment exact;
* **the closure**: the direct requirements and their ``Requires-Dist`` among the installed
  distributions, with markers evaluated for the logging interpreter (the lock pins all of them
  at their installed versions: the environment the model was logged in, not a fresh resolution);
* **what cannot be reproduced from an index**: labelled builds (the index they need is recorded),
  local builds (installed from a folder or a local file), modules no distribution provides;
* **what is installed but broken**: a direct requirement the model never imported at run time,
  or an installed torch-family package, that fails to import in the logging interpreter
  (``import_check.py``, run there) is reported, and left out unless another package needs it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement
from packaging.requirements import Requirement as PkgRequirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from envbuild import proc
from envbuild.envspec import EnvSpec
from envbuild.errors import InputDataError, ModelError, ModelRunError, UsageError
from envbuild.inputs import default_input, has_example
from envbuild.model import ModelSpec

PROBE = Path(__file__).resolve().parent.parent / "runtime" / "capture_probe.py"
IMPORT_CHECK = Path(__file__).resolve().parent / "import_check.py"
PROBE_EXIT_BAD_INPUT = 2
PROBE_EXIT_MODEL = 5

# Never a requirement of a model, even when the model imports it.
EXCLUDED = frozenset({"envbuild"})
# Installed with the interpreter's environment; recorded for python_env.yaml's build_dependencies.
BUILD_TOOLS = ("pip", "setuptools", "wheel")

# Local version labels that name a build published on a known extra index.
LABELLED_INDEXES: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(r"^(cpu|cu\d{2,3}|rocm\d+(\.\d+)*|xpu)$"),
        "https://download.pytorch.org/whl/{label}",
    ),
)


# ---------------------------------------------------------------------------------------------
# The result


@dataclass(frozen=True)
class CapturedPackage:
    """One installed distribution the capture pins."""

    name: str  # as its metadata spells it ("PyYAML")
    version: str  # as installed, local label kept ("2.1.0+cu118")
    requirement: str  # PEP 508: "PyYAML==6.0.2" or "pkg @ https://..." for URL installs
    modules: tuple[str, ...] = ()  # the modules it was imported as (direct requirements)
    found_by: tuple[str, ...] = ()  # "import" and/or "static" (direct requirements)
    phase: str | None = None  # "load" or "predict": when it was first imported
    index: str | None = None  # the extra index a labelled build comes from
    source: str | None = None  # the URL it was installed from (direct_url.json), if any
    local: bool = False  # installed from a local folder or file: on no index
    root: bool = False  # a direct requirement no other captured distribution requires
    broken: str | None = None  # why it fails to import in the logging environment

    @property
    def key(self) -> str:
        return canonicalize_name(self.name)

    @property
    def label(self) -> str | None:
        """The local version label (``cu118`` of ``2.1.0+cu118``), if any."""
        try:
            return Version(self.version).local
        except InvalidVersion:
            return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "requirement": self.requirement,
            "modules": list(self.modules),
            "found_by": list(self.found_by),
            "phase": self.phase,
            "index": self.index,
            "source": proc.redact(self.source) if self.source else None,
            "local": self.local,
            "root": self.root,
            "broken": self.broken,
        }


@dataclass(frozen=True)
class UnmappedModule:
    """A module the model imports that no installed distribution provides."""

    module: str
    found_by: str  # "import" or "static"
    where: str  # the file it was loaded from, or the model file:line importing it

    def __str__(self) -> str:
        how = "imported from" if self.found_by == "import" else "imported by"
        return f"{self.module} ({how} {self.where})"


@dataclass(frozen=True)
class Capture:
    """What a model really needs, as captured in the environment it was logged in. Immutable."""

    model_path: Path
    python: str  # the logging interpreter
    python_version: str  # exact: "3.11.7"
    implementation: str  # "CPython"
    backend: str | None  # "mlflow" (loaded with mlflow.pyfunc) or "plain"
    packages: tuple[CapturedPackage, ...]  # the direct requirements, sorted by name
    closure: tuple[CapturedPackage, ...]  # direct + transitive, what the lock pins
    unmapped: tuple[UnmappedModule, ...] = ()
    build_tools: tuple[str, ...] = ()  # "pip==24.0", ... as installed (python_env.yaml)
    expected_output: str | None = None  # the runner's predictions on the input example
    input_path: str | None = None
    warnings: tuple[str, ...] = ()
    excluded: Mapping[str, int] = field(default_factory=dict)
    timings: Mapping[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    required_by: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # key -> closure keys
    broken: tuple[CapturedPackage, ...] = ()  # installed, failing to import, left out

    @property
    def roots(self) -> tuple[CapturedPackage, ...]:
        """The direct requirements no other captured distribution requires."""
        return tuple(p for p in self.packages if p.root)

    @property
    def requirements(self) -> list[str]:
        """The roots as PEP 508 strings: ``requirements.txt`` (and MLflow's ``pip_requirements``);
        the lock pins the whole closure."""
        return [p.requirement for p in self.roots]

    @property
    def unmapped_modules(self) -> list[str]:
        return sorted({u.module for u in self.unmapped})

    @property
    def extra_index_urls(self) -> list[str]:
        """Indexes the labelled builds of the closure come from (sorted, unique)."""
        return sorted({p.index for p in self.closure if p.index})

    @property
    def local_builds(self) -> list[CapturedPackage]:
        return [p for p in self.closure if p.local]

    def requirement_lines(self, *, roots_only: bool = True) -> list[str]:
        """requirements.txt's lines: the extra indexes the pins need, then the pins (the roots;
        ``roots_only=False``: every direct requirement, for a file no lock goes with)."""
        pins = self.requirements if roots_only else [p.requirement for p in self.packages]
        return [f"--extra-index-url {url}" for url in self.extra_index_urls] + pins

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": str(self.model_path),
            "python": self.python,
            "python_version": self.python_version,
            "implementation": self.implementation,
            "backend": self.backend,
            "requirements": self.requirements,
            "roots": [p.name for p in self.roots],
            "packages": [p.to_dict() for p in self.packages],
            "broken": [p.to_dict() for p in self.broken],
            "closure": [p.requirement for p in self.closure],
            "extra_index_urls": self.extra_index_urls,
            "local_builds": [
                {"name": p.name, "version": p.version, "source": proc.redact(p.source or "")}
                for p in self.local_builds
            ],
            "unmapped_modules": self.unmapped_modules,
            "unmapped": [
                {"module": u.module, "found_by": u.found_by, "where": u.where}
                for u in self.unmapped
            ],
            "build_tools": list(self.build_tools),
            "predicted": self.expected_output is not None,
            "input": self.input_path,
            "excluded_modules": dict(self.excluded),
            "warnings": list(self.warnings),
            "timings": dict(self.timings),
            "seconds": round(self.seconds, 3),
        }


# ---------------------------------------------------------------------------------------------
# How the capture differs from the model's current files


@dataclass(frozen=True)
class Changes:
    """Captured requirements against the model's current ones (by distribution name)."""

    source: str | None  # the file the current requirements were read from
    added: tuple[str, ...]
    removed: tuple[str, ...]
    repinned: tuple[tuple[str, str], ...]  # (current text, captured text)
    unchanged: tuple[str, ...]
    python_before: str | None
    python_after: str

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed or self.repinned) or (
            self.python_before != self.python_after
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "added": list(self.added),
            "removed": list(self.removed),
            "repinned": [{"from": a, "to": b} for a, b in self.repinned],
            "unchanged": list(self.unchanged),
            "python": {"from": self.python_before, "to": self.python_after},
            "changed": self.changed,
        }


def compare(capture: Capture, env: EnvSpec | None) -> Changes:
    """What ``--write`` would change in the model's requirements (``env``: its current files)."""
    current: dict[str, list[str]] = {}
    for req in env.requirements if env is not None else ():
        current.setdefault(req.name, []).append(req.text)
    captured = {p.key: p.requirement for p in capture.roots}
    added = [captured[k] for k in sorted(set(captured) - set(current))]
    removed = [t for k in sorted(set(current) - set(captured)) for t in current[k]]
    repinned = []
    unchanged = []
    for key in sorted(set(current) & set(captured)):
        if current[key] == [captured[key]]:
            unchanged.append(captured[key])
        else:
            repinned.append((", ".join(current[key]), captured[key]))
    before = env.python.text if env is not None and env.python is not None else None
    return Changes(
        source=env.source if env is not None else None,
        added=tuple(added),
        removed=tuple(removed),
        repinned=tuple(repinned),
        unchanged=tuple(unchanged),
        python_before=before,
        python_after=capture.python_version,
    )


# ---------------------------------------------------------------------------------------------
# Running the probe


def interpreter_path(python: str | os.PathLike[str] | None) -> str:
    """The logging interpreter: ``python`` (a path, or a command on PATH), else envbuild's own."""
    if python is None:
        return sys.executable
    text = os.fspath(python)
    found = text if os.sep in text or (os.altsep and os.altsep in text) else shutil.which(text)
    if not found or not Path(found).is_file() or not os.access(found, os.X_OK):
        raise UsageError(
            f"no such interpreter: {text}",
            field="--python",
            hint="pass the path of the Python the model was logged with (its environment's "
            "bin/python)",
        )
    return str(Path(found).absolute())


def run_probe(
    model: ModelSpec, python: str, input_path: Path | None
) -> tuple[dict[str, Any], float]:
    """Run the probe; its JSON document, or ModelRunError (exit 5) with the model's own error."""
    args: list[str] = [python, str(PROBE), "--model", str(model.path)]
    if input_path is not None:
        args += ["--input", str(input_path)]
    if model.pyfunc is not None and model.pyfunc.code:
        args += ["--code", model.pyfunc.code]
    # No PYTHONPATH: the model must load from what is installed, as it will where it is served.
    # Bytecode is written as the user's environment says, except into the model folder (the
    # probe sees to that): forcing PYTHONDONTWRITEBYTECODE would recompile mlflow every time.
    env = proc.base_env()
    done = proc.run(
        args,
        what="capturing the model's imports",
        error=ModelRunError,
        env=env,
        check=False,
    )
    doc = _document(done.stdout)
    if doc is not None and doc.get("error"):
        message = str(doc["error"].get("message") or "the model failed")
        if done.returncode == PROBE_EXIT_BAD_INPUT:
            raise InputDataError(
                f"the model's input example: {message}",
                path=input_path,
                hint="fix or remove the input example, or capture without one",
                log_path=done.log_path,
            )
        raise ModelRunError(
            message,
            path=model.path,
            hint="capture needs the model to load and predict in the environment it is logged "
            f"from ({python})",
            log_path=done.log_path,
        )
    if done.returncode != 0 or doc is None:
        tail = " ".join(proc.redact(done.tail(3)).split())
        raise ModelRunError(
            f"the capture probe failed in {python} (exit {done.returncode})"
            + (f": {tail}" if tail else ""),
            hint="the interpreter must be Python 3.8 or newer; run with --debug and see the log",
            log_path=done.log_path,
        )
    return doc, done.seconds


def _document(stdout: str) -> dict[str, Any] | None:
    for line in reversed(stdout.strip().splitlines()):
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if isinstance(doc, dict) and "probe_version" in doc:
            return doc
    return None


def capture_model(
    spec: ModelSpec,
    *,
    python: str | os.PathLike[str] | None = None,
    on_progress: Callable[[str], None] | None = None,
) -> Capture:
    """Load the model in ``python`` (default: the interpreter running envbuild), predict on its
    input example and return what it really imports, pinned to the installed versions."""
    if spec.pyfunc is None:
        raise ModelError(
            f"no python_function flavor (flavors: {', '.join(spec.flavor_names)}); capture "
            "loads Python models only",
            path=spec.mlmodel_path,
            field="flavors",
        )
    exe = interpreter_path(python)
    started = time.monotonic()
    shown_input = None
    with contextlib.ExitStack() as stack:
        input_path = None
        if has_example(spec):
            data = stack.enter_context(default_input(spec))
            input_path = data.path
            inside = spec.path in data.path.parents
            shown_input = os.path.relpath(data.path, spec.path) if inside else "input_example.json"
        if on_progress is not None:
            on_progress(f"loading the model in {exe}" + (" and predicting" if input_path else ""))
        doc, _ = run_probe(spec, exe, input_path)
    result = interpret(doc, model_path=spec.path, python=exe, input_path=shown_input)
    candidates = import_candidates(result)
    if candidates and on_progress is not None:
        on_progress(f"checking that {len(candidates)} package(s) import")
    result = mark_broken(result, check_imports(exe, candidates))
    return replace(result, seconds=time.monotonic() - started)


# ---------------------------------------------------------------------------------------------
# Interpreting the probe's facts (pure: unit tests feed it documents)


@dataclass
class _Pick:
    index: int
    modules: set[str] = field(default_factory=set)
    found_by: set[str] = field(default_factory=set)
    phases: set[str] = field(default_factory=set)


class _Installed:
    """The logging environment's distributions, by canonical name, with their requirements."""

    def __init__(self, dists: Sequence[Mapping[str, Any]], markers: Mapping[str, str]) -> None:
        self.dists = dists
        self.markers = dict(markers)
        self.by_key: dict[str, int] = {}
        for index, info in enumerate(dists):
            self.by_key.setdefault(canonicalize_name(str(info["name"])), index)
        self.warnings: list[str] = []
        self._deps: dict[tuple[str, frozenset[str]], list[tuple[str, frozenset[str]]]] = {}

    def key(self, index: int) -> str:
        return canonicalize_name(str(self.dists[index]["name"]))

    def requirements_of(self, key: str, extras: frozenset[str]) -> list[tuple[str, frozenset[str]]]:
        """``(name, extras)`` of the requirements of ``key[extras]`` that apply here."""
        cached = self._deps.get((key, extras))
        if cached is not None:
            return cached
        out: list[tuple[str, frozenset[str]]] = []
        info = self.dists[self.by_key[key]]
        for text in info.get("requires") or ():
            try:
                req = PkgRequirement(text)
            except InvalidRequirement:
                self.warnings.append(f"{info['name']}: unreadable Requires-Dist {text!r} ignored")
                continue
            if req.marker is not None:
                try:
                    applies = any(
                        req.marker.evaluate({**self.markers, "extra": extra})
                        for extra in (sorted(extras) or [""])
                    )
                except Exception:  # an undefined marker variable: keep the requirement
                    applies = True
                if not applies:
                    continue
            out.append(
                (canonicalize_name(req.name), frozenset(canonicalize_name(e) for e in req.extras))
            )
        self._deps[(key, extras)] = out
        return out

    def closure(self, roots: Iterable[str], *, warn: bool = True) -> list[str]:
        """Canonical names of ``roots`` and everything they require that is installed."""
        extras_seen: dict[str, set[frozenset[str]]] = {}
        order: list[str] = []
        queue: list[tuple[str, frozenset[str]]] = [(key, frozenset()) for key in roots]
        while queue:
            key, extras = queue.pop(0)
            if key not in self.by_key:
                continue
            seen = extras_seen.setdefault(key, set())
            if extras in seen:
                continue
            if not seen:
                order.append(key)
            seen.add(extras)
            for dep, dep_extras in self.requirements_of(key, extras):
                if dep not in self.by_key:
                    if not warn:
                        continue
                    self.warnings.append(
                        f"{self.dists[self.by_key[key]]['name']} requires {dep}, which is not "
                        "installed in the logging environment; the lock resolves it"
                    )
                    continue
                queue.append((dep, dep_extras))
        return order


def _source(info: Mapping[str, Any]) -> tuple[str | None, str | None, bool]:
    """(requirement for a URL install, the URL, installed from a local folder/file)."""
    direct = info.get("direct_url")
    if not isinstance(direct, Mapping):
        return None, None, False
    url = str(direct.get("url") or "")
    name = str(info["name"])
    if "dir_info" in direct or url.startswith("file:"):
        return None, url, True
    vcs = direct.get("vcs_info")
    if isinstance(vcs, Mapping) and vcs.get("vcs"):
        ref = vcs.get("commit_id") or vcs.get("requested_revision")
        text = f"{name} @ {vcs['vcs']}+{url}" + (f"@{ref}" if ref else "")
        if direct.get("subdirectory"):
            text += f"#subdirectory={direct['subdirectory']}"
        return text, url, False
    if url:
        return f"{name} @ {url}", url, False
    return None, None, False


def _roots(names: Iterable[str]) -> tuple[str, ...]:
    """The outermost of ``names`` (``sklearn`` for all of ``sklearn.*``); several under one
    namespace package are shown as ``opentelemetry.*``."""
    ordered = sorted(names)
    roots = [n for n in ordered if not any(n.startswith(m + ".") for m in ordered)]
    by_top: dict[str, list[str]] = {}
    for name in roots:
        by_top.setdefault(name.split(".")[0], []).append(name)
    out = []
    for top, group in by_top.items():
        out.extend(group if len(group) <= 2 else [f"{top}.*"])
    return tuple(out)


def labelled_index(version: str) -> str | None:
    """The index a build with a local version label comes from (PyTorch's ``+cpu``, ``+cu118``)."""
    try:
        label = Version(version).local
    except InvalidVersion:
        return None
    if not label:
        return None
    for pattern, template in LABELLED_INDEXES:
        if pattern.match(label):
            return template.format(label=label)
    return None


def _package(installed: _Installed, index: int, pick: _Pick | None = None) -> CapturedPackage:
    info = installed.dists[index]
    name, version = str(info["name"]), str(info["version"])
    url_requirement, url, local = _source(info)
    requirement = url_requirement or f"{name}=={version}"
    requirement = str(PkgRequirement(requirement))  # the text read_env will normalize it to
    modules: tuple[str, ...] = ()
    if pick is not None:
        modules = _roots(pick.modules)
    phase = None
    if pick is not None and pick.phases:
        phase = "load" if "load" in pick.phases else sorted(pick.phases)[0]
    return CapturedPackage(
        name=name,
        version=version,
        requirement=requirement,
        modules=modules,
        found_by=tuple(sorted(pick.found_by)) if pick is not None else (),
        phase=phase,
        index=labelled_index(version) if not url_requirement and not local else None,
        source=url,
        local=local,
    )


def _choose(installed: _Installed, candidates: list[int], chosen: Mapping[str, _Pick]) -> int:
    """One distribution among several listing the same file: one already captured, else the
    one that requires the others (mlflow over mlflow-skinny), else the first by name."""
    keys = {installed.key(i): i for i in candidates}
    already = [k for k in sorted(keys) if k in chosen]
    pool = already or sorted(keys)
    if len(pool) == 1:
        return keys[pool[0]]
    tops = [k for k in pool if set(pool) - {k} <= set(installed.closure([k], warn=False))]
    if len(tops) == 1:
        return keys[tops[0]]
    installed.warnings.append(
        f"the same files are provided by {', '.join(installed.dists[keys[k]]['name'] for k in pool)}; "
        f"captured {installed.dists[keys[pool[0]]]['name']}"
    )
    return keys[pool[0]]


def interpret(
    doc: Mapping[str, Any],
    *,
    model_path: Path,
    python: str,
    input_path: str | None = None,
    seconds: float = 0.0,
) -> Capture:
    """The probe's document -> :class:`Capture` (direct pins, closure, unmapped modules)."""
    py = doc.get("python") or {}
    installed = _Installed(doc.get("distributions") or [], py.get("markers") or {})
    warnings: list[str] = []
    chosen: dict[str, _Pick] = {}
    unmapped: list[UnmappedModule] = []

    def pick(index: int) -> _Pick:  # the copy whose files were loaded, when there are two
        key = installed.key(index)
        if key not in chosen:
            chosen[key] = _Pick(index)
        return chosen[key]

    ambiguous: list[tuple[Mapping[str, Any], list[int]]] = []
    for module in doc.get("modules") or ():
        kind = module.get("kind")
        if kind == "model":
            continue
        if kind == "unmapped" or not module.get("owners"):
            top = str(module["name"]).split(".")[0]
            if not any(u.module == top and u.found_by == "import" for u in unmapped):
                unmapped.append(UnmappedModule(top, "import", str(module.get("file"))))
            continue
        owners = [(int(i), match) for i, match in module["owners"]]
        candidates = [i for i, match in owners if match is not False] or [i for i, _ in owners]
        candidates = list({installed.key(i): i for i in candidates}.values())
        if len(candidates) == 1:
            target = pick(candidates[0])
            target.modules.add(str(module["name"]))
            target.found_by.add("import")
            target.phases.add(str(module.get("phase") or "load"))
        else:
            ambiguous.append((module, candidates))
    for module, candidates in ambiguous:
        target = pick(_choose(installed, candidates, chosen))
        target.modules.add(str(module["name"]))
        target.found_by.add("import")
        target.phases.add(str(module.get("phase") or "load"))

    for item in doc.get("static_imports") or ():
        static_owners = [int(i) for i in item.get("owners") or ()]
        where = f"{item.get('file')}:{item.get('line')}"
        if not static_owners:
            top = str(item["module"]).split(".")[0]
            if item.get("optional"):
                continue  # `try: import x / except ImportError` for a package not installed
            if not any(u.module == top for u in unmapped):
                unmapped.append(UnmappedModule(top, "static", where))
            continue
        candidates = list({installed.key(i): i for i in static_owners}.values())
        target = pick(
            candidates[0] if len(candidates) == 1 else _choose(installed, candidates, chosen)
        )
        target.modules.add(str(item["module"]))
        target.found_by.add("static")

    for key in EXCLUDED:
        chosen.pop(key, None)
    direct = {key: _package(installed, p.index, p) for key, p in chosen.items()}
    closure_keys = installed.closure(sorted(direct))
    closure = [
        direct.get(key) or _package(installed, installed.by_key[key]) for key in closure_keys
    ]
    closure = [p for p in closure if p.key not in EXCLUDED]
    closure.sort(key=lambda p: p.key)
    keys = {p.key for p in closure}
    required_by: dict[str, set[str]] = {key: set() for key in keys}
    for key in keys:
        for dep, _ in installed.requirements_of(key, frozenset()):
            if dep in required_by and dep != key:
                required_by[dep].add(key)
    frozen_by = {k: tuple(sorted(v)) for k, v in sorted(required_by.items())}
    direct = {p.key: p for p in mark_roots(list(direct.values()), frozen_by)}
    closure = [direct.get(p.key, p) for p in closure]

    for package in closure:
        if package.local:
            warnings.append(
                f"{package.name} {package.version} was installed from {proc.redact(package.source or '')} "
                "(a local build): no index has it, so the lock cannot pin it"
            )
        elif package.label and not package.index:
            warnings.append(
                f"{package.name}=={package.version} is a labelled build (+{package.label}) from no "
                "known index: pass the index it comes from with --extra-index-url"
            )
    for u in unmapped:
        warnings.append(f"no installed distribution provides module {u}")
    warnings.extend(doc.get("parse_errors") or ())
    if doc.get("input") is None:
        warnings.append(
            "the model has no input example: predict was not run, so packages it imports only "
            "while predicting are missed and no expected output is recorded"
        )
    warnings.extend(dict.fromkeys(installed.warnings))

    tools = []
    for name in BUILD_TOOLS:
        index = installed.by_key.get(name)
        if index is not None:
            tools.append(f"{name}=={installed.dists[index]['version']}")
    return Capture(
        model_path=model_path,
        python=python,
        python_version=str(py.get("version") or ""),
        implementation=str(py.get("implementation") or ""),
        backend=doc.get("backend"),
        packages=tuple(sorted(direct.values(), key=lambda p: p.key)),
        closure=tuple(closure),
        unmapped=tuple(unmapped),
        build_tools=tuple(tools),
        expected_output=doc.get("expected_output"),
        input_path=input_path,
        warnings=tuple(warnings),
        excluded=dict(doc.get("excluded") or {}),
        timings=dict(doc.get("timings") or {}),
        seconds=seconds,
        required_by=frozen_by,
    )


def mark_roots(
    packages: Sequence[CapturedPackage], required_by: Mapping[str, Sequence[str]]
) -> list[CapturedPackage]:
    """``packages`` with ``root`` set: required by no captured distribution outside what the
    package itself requires (so that a requirement cycle does not hide both of its members)."""
    requires: dict[str, set[str]] = {}
    for dep, requirers in required_by.items():
        for requirer in requirers:
            requires.setdefault(requirer, set()).add(dep)

    def reach(key: str) -> set[str]:
        seen, todo = {key}, [key]
        while todo:
            for dep in requires.get(todo.pop(), ()):
                if dep not in seen:
                    seen.add(dep)
                    todo.append(dep)
        return seen

    out = []
    for package in packages:
        mine = reach(package.key)
        root = not any(other not in mine for other in required_by.get(package.key, ()))
        out.append(replace(package, root=root))
    return out


def import_candidates(capture: Capture) -> list[str]:
    """Distributions whose import is unproven: direct requirements never imported at run time
    (static imports only) and torch-family packages of the closure nothing imported."""
    from envbuild.accelerator import TORCH_FAMILY

    names = {p.name for p in capture.packages if "import" not in p.found_by}
    names |= {p.name for p in capture.closure if p.key in TORCH_FAMILY and not p.modules}
    return sorted(names)


def check_imports(python: str, names: Sequence[str]) -> dict[str, str | None]:
    """``{name: None | why it fails to import}`` in the logging interpreter (a subprocess)."""
    if not names:
        return {}
    from envbuild.files import temporary_directory

    env = proc.base_env({"PYTHONDONTWRITEBYTECODE": "1"})
    with temporary_directory("imports") as tmp:
        output = tmp / "imports.json"
        proc.run(
            [python, str(IMPORT_CHECK), str(output), *names],
            what="checking that the captured packages import",
            error=ModelRunError,
            env=env,
            check=False,
        )
        try:
            found = json.loads(output.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}  # the check itself failed: nothing is known broken
    if not isinstance(found, dict):
        return {}
    return {str(k): (str(v) if v else None) for k, v in found.items()}


def mark_broken(capture: Capture, errors: Mapping[str, str | None]) -> Capture:
    """Report the packages that fail to import; leave out those nothing else needs."""
    broken: dict[str, str] = {str(canonicalize_name(n)): e for n, e in errors.items() if e}
    if not broken:
        return capture
    warnings = list(capture.warnings)
    dropped: set[str] = set()
    for package in capture.closure:
        error = broken.get(package.key)
        if error is None:
            continue
        needed = [k for k in capture.required_by.get(package.key, ()) if k not in broken]
        shown = f"{package.name} {package.version} is installed but fails to import ({error})"
        if needed:
            warnings.append(f"{shown}; kept because {', '.join(needed)} require(s) it")
        else:
            dropped.add(package.key)
            warnings.append(f"{shown}: left out of the requirements and the lock")
    keep_by = {
        k: tuple(r for r in v if r not in dropped)
        for k, v in capture.required_by.items()
        if k not in dropped
    }
    # a broken package is no reason to keep a working one out of requirements.txt
    working_by = {k: tuple(r for r in v if r not in broken) for k, v in keep_by.items()}
    packages = mark_roots([p for p in capture.packages if p.key not in dropped], working_by)
    by_key = {p.key: p for p in packages}
    return replace(
        capture,
        packages=tuple(packages),
        closure=tuple(by_key.get(p.key, p) for p in capture.closure if p.key not in dropped),
        broken=tuple(replace(p, broken=broken[p.key]) for p in capture.closure if p.key in broken),
        required_by=keep_by,
        warnings=tuple(warnings),
    )

"""The verdict: does an environment satisfy a model? One row per requirement, then conflicts.

Rules (every row says which applied, with the model's ``file:line``):

* ``python``: the model's Python (``python_env.yaml``, ``conda.yaml`` or MLmodel) against the
  environment's. A different ``X.Y`` fails (compiled wheels and pickles are per minor version);
  the same ``X.Y`` with another patch passes, noted as not exact.
* per requirement, in this order: ``marker`` when its marker is false for the *environment's*
  Python and platform (a ``; python_version < "3.9"`` line does not apply to a 3.11
  environment: it passes); ``missing`` when nothing of that name is installed; ``local-label``
  when the public version matches but the build label differs (``torch==2.3.1+cu121`` wanted,
  ``2.3.1+cpu`` installed, or no label at all); ``version`` when the installed version is not in
  the specifier (PEP 440, pre-releases allowed as installed); else ``ok``. A direct URL
  requirement is ``ok`` when the name is installed (the URL cannot be compared). Constraint
  lines (``-c``) apply only to what is installed, as pip applies them.
* ``conflict``: what ``pip check`` reports, restricted to the model's packages: for every
  installed distribution the model needs (its requirements and, through ``Requires-Dist``,
  what they need, extras the model asks for included), each of its requirements whose marker
  holds in the environment must be installed at a version its specifier allows.

``ok`` and ``marker`` rows are satisfied; any other row is not, and the environment does not
satisfy the model (``check`` exits 8). Rows are ordered by how much they matter: python,
missing, version, local-label, conflict, then marker and ok; direct requirements before
transitive ones.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from packaging.markers import InvalidMarker, Marker, UndefinedComparison, UndefinedEnvironmentName
from packaging.requirements import InvalidRequirement
from packaging.requirements import Requirement as Pep508
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from envbuild.requirements import Requirement
from envbuild.shared.record import Installed
from envbuild.shared.wanted import ModelRequirements

OK, MARKER, MISSING, VERSION, LOCAL_LABEL, PYTHON, CONFLICT = (
    "ok",
    "marker",
    "missing",
    "version",
    "local-label",
    "python",
    "conflict",
)
ORDER = (PYTHON, MISSING, VERSION, LOCAL_LABEL, CONFLICT, MARKER, OK)
SATISFIED = frozenset({OK, MARKER})


@dataclass(frozen=True)
class Row:
    """One line of a verdict."""

    status: str
    name: str  # the package (canonical), or "python"
    wanted: str  # the requirement as the model writes it (or the Python it asks for)
    installed: str | None  # the installed version (None: not installed / not applicable)
    origin: str | None  # the model's file:line, or the distribution that requires it
    message: str
    direct: bool = True

    @property
    def satisfied(self) -> bool:
        return self.status in SATISFIED

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "satisfied": self.satisfied,
            "name": self.name,
            "wanted": self.wanted,
            "installed": self.installed,
            "origin": self.origin,
            "direct": self.direct,
            "message": self.message,
        }


@dataclass(frozen=True)
class Verdict:
    """Every row for one model in one environment."""

    model: str
    environment: str  # NAME:VERSION
    source: str  # what the model's rows were read from
    python: str  # the environment's Python
    platform: str
    rows: tuple[Row, ...]
    warnings: tuple[str, ...] = field(default=())

    @property
    def satisfied(self) -> bool:
        return all(row.satisfied for row in self.rows)

    @property
    def problems(self) -> tuple[Row, ...]:
        return tuple(row for row in self.rows if not row.satisfied)

    def counts(self) -> dict[str, int]:
        out = {status: 0 for status in ORDER}
        for row in self.rows:
            out[row.status] += 1
        return {status: n for status, n in out.items() if n}

    def summary(self, limit: int = 3) -> str:
        """The failing rows in one line (``check`` shows them all)."""
        if self.satisfied:
            return "satisfied"
        shown = [
            f"{row.message}" + (f" ({row.origin})" if row.origin else "")
            for row in self.problems[:limit]
        ]
        more = len(self.problems) - limit
        return "; ".join(shown) + (f"; and {more} more" if more > 0 else "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "environment": self.environment,
            "satisfied": self.satisfied,
            "source": self.source,
            "python": self.python,
            "platform": self.platform,
            "counts": self.counts(),
            "rows": [row.to_dict() for row in self.rows],
            "warnings": list(self.warnings),
        }


def _marker_holds(
    marker: Marker | None, markers: Mapping[str, str], extras: Iterable[str] = ()
) -> bool:
    """``marker`` for the environment's values (``extra`` is each requested extra, or empty)."""
    if marker is None:
        return True
    for extra in [*extras, ""]:
        try:
            if marker.evaluate({**markers, "extra": extra}):
                return True
        except (UndefinedComparison, UndefinedEnvironmentName, InvalidMarker):
            return True  # a marker this environment cannot decide: not a reason to skip it
    return False


def _python_row(wanted: ModelRequirements, installed: Installed) -> Row | None:
    request = wanted.python
    have = installed.python_version
    if request is None:
        return None
    origin = str(request.origin)
    if request.admits(have):
        return Row(
            OK, "python", request.text, have, origin, f"Python {have} satisfies {request.text}"
        )
    if request.minor == installed.python_minor:
        return Row(
            OK,
            "python",
            request.text,
            have,
            origin,
            f"Python {have}, not exactly {request.text} (same {installed.python_minor}: wheels "
            "and pickles fit)",
        )
    return Row(
        PYTHON,
        "python",
        request.text,
        have,
        origin,
        f"the model asks for Python {request.text}, the environment has {have}",
    )


def _local(version: Version) -> str:
    return f"+{version.local}" if version.local else "no local label"


def _requirement_row(
    req: Requirement, installed: Installed, *, direct: bool, constraint: bool = False
) -> Row | None:
    parsed = req.parsed
    origin = str(req.origin)
    shown = req.text
    if not _marker_holds(parsed.marker, installed.markers):
        return Row(
            MARKER,
            req.name,
            shown,
            installed.version_of(req.name),
            origin,
            f"{shown}: does not apply here (marker false for Python {installed.python_version} "
            f"on {installed.markers.get('sys_platform', '?')})",
            direct,
        )
    have = installed.version_of(req.name)
    if have is None:
        if constraint:
            return None
        return Row(MISSING, req.name, shown, None, origin, f"{req.name} is not installed", direct)
    if parsed.url:
        return Row(
            OK,
            req.name,
            shown,
            have,
            origin,
            f"{req.name} {have} is installed (a direct URL requirement: its source is not "
            "compared)",
            direct,
        )
    try:
        version = Version(have)
    except InvalidVersion:
        return Row(
            VERSION,
            req.name,
            shown,
            have,
            origin,
            f"{req.name} {have} is not a valid version, so it cannot satisfy {parsed.specifier}",
            direct,
        )
    if not parsed.specifier or parsed.specifier.contains(version, prereleases=True):
        return Row(
            OK, req.name, shown, have, origin, f"{req.name} {have} satisfies {shown}", direct
        )
    for spec in parsed.specifier:
        if spec.operator not in ("==", "===") or "*" in spec.version:
            continue
        try:
            pinned = Version(spec.version)
        except InvalidVersion:
            continue
        if pinned.public == version.public and pinned.local != version.local:
            return Row(
                LOCAL_LABEL,
                req.name,
                shown,
                have,
                origin,
                f"{req.name} {pinned.public}: {_local(pinned)} wanted, {_local(version)} "
                f"installed ({have})",
                direct,
            )
    return Row(
        VERSION,
        req.name,
        shown,
        have,
        origin,
        f"{req.name} {have} is installed, the model needs {parsed.specifier}",
        direct,
    )


def _closure(requirements: Iterable[Requirement], installed: Installed) -> dict[str, set[str]]:
    """The installed distributions the model needs, each with the extras asked of it."""
    wanted: dict[str, set[str]] = {}
    todo: list[tuple[str, frozenset[str]]] = []
    for req in requirements:
        parsed = req.parsed
        if _marker_holds(parsed.marker, installed.markers) and req.name in installed.distributions:
            todo.append((req.name, frozenset(parsed.extras)))
    while todo:
        name, extras = todo.pop()
        known = wanted.get(name)
        if known is not None and extras <= known:
            continue
        wanted.setdefault(name, set()).update(extras)
        for text in installed.distributions[name].requires:
            try:
                dep = Pep508(text)
            except InvalidRequirement:
                continue
            key = canonicalize_name(dep.name)
            if key in installed.distributions and _marker_holds(
                dep.marker, installed.markers, extras
            ):
                todo.append((key, frozenset(dep.extras)))
    return wanted


def _conflict_rows(wanted: ModelRequirements, installed: Installed) -> list[Row]:
    rows: dict[tuple[str, str], Row] = {}
    for name, extras in sorted(_closure(wanted.requirements, installed).items()):
        dist = installed.distributions[name]
        for text in dist.requires:
            try:
                dep = Pep508(text)
            except InvalidRequirement:
                continue
            if not _marker_holds(dep.marker, installed.markers, sorted(extras)):
                continue
            key = canonicalize_name(dep.name)
            have = installed.version_of(key)
            wanted_text = f"{dep.name}{dep.specifier}" if dep.specifier else dep.name
            where = f"{dist.name} {dist.version}"
            if have is None:
                message = f"{where} requires {wanted_text}, which is not installed"
            else:
                try:
                    fits = not dep.specifier or dep.specifier.contains(
                        Version(have), prereleases=True
                    )
                except InvalidVersion:
                    fits = False
                if fits:
                    continue
                message = f"{where} requires {wanted_text}, but {have} is installed"
            rows.setdefault(
                (name, key),
                Row(
                    CONFLICT,
                    key,
                    wanted_text,
                    have,
                    f"Requires-Dist of {where}",
                    message,
                    name in wanted.direct,
                ),
            )
    return list(rows.values())


def judge(
    wanted: ModelRequirements,
    installed: Installed,
    *,
    model: str,
    environment: str,
    warnings: Iterable[str] = (),
) -> Verdict:
    """The verdict of ``installed`` for ``wanted`` (see the module docstring)."""
    rows: list[Row] = []
    python = _python_row(wanted, installed)
    if python is not None:
        rows.append(python)
    seen: dict[tuple[str, str], Row] = {}
    for req in wanted.requirements:
        row = _requirement_row(
            req, installed, direct=req.name in wanted.direct or not wanted.from_lock
        )
        if row is not None:
            seen.setdefault((req.name, req.text), row)
    for req in wanted.constraints:
        row = _requirement_row(req, installed, direct=False, constraint=True)
        if row is not None and not row.satisfied:
            seen.setdefault((req.name, req.text), row)
    rows.extend(seen.values())
    rows.extend(_conflict_rows(wanted, installed))
    rows.sort(key=lambda r: (ORDER.index(r.status), not r.direct, r.name, r.wanted))
    return Verdict(
        model=model,
        environment=environment,
        source=wanted.source,
        python=installed.python_version,
        platform=installed.platform,
        rows=tuple(rows),
        warnings=tuple(dict.fromkeys([*wanted.warnings, *warnings])),
    )

"""Stage 3: :class:`EnvSpec` -> :class:`Lock`, a PEP 751 ``pylock.toml`` for explicit targets.

A model's env files pin the top-level packages at best. Rebuilding its environment exactly needs
every transitive package pinned, with hashes, for the Python version and platform where it will
run, which is often not the machine running envbuild. So:

* uv resolves (``uv pip compile --format pylock.toml``) once per target platform, for the target
  Python version (no interpreter of that version is needed), optionally limited to the releases
  that existed at a date (``--as-of``; uv's ``--exclude-newer``);
* envbuild merges the per-platform results into one file (a package that differs between the
  targets carries a ``marker``; ``environments`` lists the targets, so installing the lock
  anywhere else fails loudly instead of installing wrong wheels) and writes it in one canonical
  form: same inputs and date, same bytes. The file's sha256 (:attr:`Lock.digest`) is its identity
  and the cache key of the environments built from it;
* envbuild's own facts (target Python and platforms, the digest of the model's requirements, the
  as-of date, the indexes) go under ``[tool.envbuild]``; ``check_lock`` compares that digest with
  the model's current files without resolving again.

uv's ``upload-time`` of every file is kept: it is a recorded fact of the index (deterministic) and
lets anyone audit an ``--as-of`` lock. uv's header comment (it holds temporary paths) is dropped.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
import tempfile
import types
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, time, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from envbuild import proc
from envbuild.cache import atomic_write
from envbuild.envspec import EnvSpec, read_env
from envbuild.errors import LockMismatchError, ModelError, ResolutionError, UsageError
from envbuild.indexes import IndexConfig, configure
from envbuild.model import ModelSpec, load_model
from envbuild.requirements import Requirement
from envbuild.targets import Platform, parse_python, python_minor, resolve_platforms

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, from PyPI
    import tomli as tomllib  # type: ignore[no-redef]

UTC = timezone.utc

PYLOCK_NAME = "pylock.toml"
LOCK_VERSION = "1.0"
CREATED_BY = "envbuild"

# uv settings that would change a resolution without the lock saying so. Index variables are
# set again from the gathered settings (indexes.py); UV_EXCLUDE_NEWER becomes the recorded as-of.
_UV_HIDDEN_INPUTS = (
    "UV_CONSTRAINT",
    "UV_OVERRIDE",
    "UV_EXCLUDE",
    "UV_RESOLUTION",
    "UV_PRERELEASE",
    "UV_EXCLUDE_NEWER",
    "UV_PYTHON_PLATFORM",
    "UV_NO_BINARY",
    "UV_ONLY_BINARY",
)


# ---------------------------------------------------------------------------------------------
# The lock value


@dataclass(frozen=True)
class LockedPackage:
    """One ``[[packages]]`` entry, as the environment builders need it."""

    name: str
    version: str
    marker: str | None = None
    wheels: tuple[str, ...] = ()  # file names
    sdist: str | None = None  # file name

    @property
    def pin(self) -> str:
        """``name==version`` (``; marker`` when the package is for some targets only)."""
        return f"{self.name}=={self.version}" + (f"; {self.marker}" if self.marker else "")


@dataclass(frozen=True)
class Lock:
    """A PEP 751 lock written by envbuild. Immutable; ``digest`` (of ``text``) is its identity.

    Builders install it with ``uv pip sync --require-hashes PATH`` (or ``uv pip install -r PATH``)
    where PATH is :attr:`path`, or a copy of :attr:`text` named ``pylock.toml``.
    """

    text: str  # the canonical file content
    digest: str  # "sha256:<hex of text's UTF-8 bytes>"
    python: str  # target Python version ("3.11.7" or "3.10")
    platforms: tuple[str, ...]  # canonical target names ("linux/amd64", ...)
    packages: tuple[LockedPackage, ...]
    input_digest: str  # EnvSpec.digest() of the model when locked
    as_of: str | None  # RFC 3339 UTC ("2024-05-01T00:00:00Z") or None
    requires_python: str
    environments: tuple[str, ...]
    indexes: Mapping[str, Any] = field(default_factory=dict, compare=False)
    path: Path | None = field(default=None, compare=False)
    warnings: tuple[str, ...] = field(default=(), compare=False)
    changed: bool | None = field(default=None, compare=False)  # lock(): did the file change?

    @property
    def python_minor(self) -> str:
        return python_minor(self.python)

    @property
    def document(self) -> dict[str, Any]:
        """The parsed TOML (a fresh copy each time: the Lock itself stays immutable)."""
        return tomllib.loads(self.text)

    def requirements(self) -> list[str]:
        """``name==version[; marker]`` for every package (for display, not for installing)."""
        return [p.pin for p in self.packages]

    def requirements_txt(self) -> str:
        """The lock as a pip requirements file with hashes (for installers without PEP 751).

        ``pip install --require-hashes --no-deps -r`` of it installs the same versions; each line
        lists the hashes of every file of that version, of which pip checks the one it picks.
        """
        lines = []
        for entry in self.document.get("packages", []):
            files = [*entry.get("wheels", []), *([entry["sdist"]] if entry.get("sdist") else [])]
            hashes = sorted(
                {
                    f"--hash={alg}:{value}"
                    for f in files
                    for alg, value in f.get("hashes", {}).items()
                    if alg == "sha256"
                }
            )
            line = f"{entry['name']}=={entry['version']}"
            if entry.get("marker"):
                line += f" ; {entry['marker']}"
            lines.append(" \\\n    ".join([line, *hashes]))
        return "".join(f"{line}\n" for line in lines)

    def write(self, path: str | os.PathLike[str]) -> Lock:
        """Write the lock to ``path`` atomically; returns the lock with ``path`` set."""
        target = Path(path)
        _check_file_name(target)
        atomic_write(target, self.text.encode("utf-8"))
        return _replace(self, path=target)

    def to_dict(self) -> dict[str, Any]:
        """What ``lock --json`` prints."""
        return {
            "path": str(self.path) if self.path else None,
            "digest": self.digest,
            "python": self.python,
            "requires_python": self.requires_python,
            "platforms": list(self.platforms),
            "environments": list(self.environments),
            "as_of": self.as_of,
            "input_digest": self.input_digest,
            "indexes": dict(self.indexes),
            "package_count": len(self.packages),
            "packages": self.requirements(),
            "changed": self.changed,
            "warnings": list(self.warnings),
        }


def _replace(lk: Lock, **changes: Any) -> Lock:
    from dataclasses import replace

    return replace(lk, **changes)


def _check_file_name(path: Path) -> None:
    """PEP 751 names: ``pylock.toml`` or ``pylock.NAME.toml`` (uv refuses other names)."""
    name = path.name
    if name == PYLOCK_NAME:
        return
    middle = name[len("pylock.") : -len(".toml")] if name.startswith("pylock.") else ""
    if not (name.endswith(".toml") and middle and "." not in middle):
        raise UsageError(
            f"{name}: a lock file must be named pylock.toml or pylock.NAME.toml (PEP 751)",
            field="-o",
        )


def digest_text(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def lock_from_text(text: str, *, path: Path | None = None, warnings: Sequence[str] = ()) -> Lock:
    """Parse a ``pylock.toml`` written by envbuild into a :class:`Lock`."""
    shown = path or Path(PYLOCK_NAME)
    hint = "run `envbuild lock MODEL` to write it again"
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise LockMismatchError(f"not a valid TOML file: {exc}", path=shown, hint=hint) from None
    if str(doc.get("lock-version", "")).split(".")[0] != LOCK_VERSION.split(".")[0]:
        raise LockMismatchError(
            f"unsupported lock-version {doc.get('lock-version')!r} (expected {LOCK_VERSION})",
            path=shown,
            field="lock-version",
            hint=hint,
        )
    tool = doc.get("tool", {}).get("envbuild")
    if not isinstance(tool, dict):
        raise LockMismatchError(
            "not written by envbuild (no [tool.envbuild] table)",
            path=shown,
            field="tool.envbuild",
            hint=hint,
        )
    packages = []
    for entry in doc.get("packages", []):
        wheels = tuple(_file_name(w) for w in entry.get("wheels", []))
        sdist = entry.get("sdist")
        packages.append(
            LockedPackage(
                name=str(entry.get("name")),
                version=str(entry.get("version", "")),
                marker=entry.get("marker"),
                wheels=wheels,
                sdist=_file_name(sdist) if isinstance(sdist, dict) else None,
            )
        )
    indexes = {k: tool[k] for k in ("index-url", "extra-index-urls", "find-links") if k in tool}
    return Lock(
        text=text,
        digest=digest_text(text),
        python=str(tool.get("python", "")),
        platforms=tuple(tool.get("platforms", ())),
        packages=tuple(packages),
        input_digest=str(tool.get("input-digest", "")),
        as_of=tool.get("as-of"),
        requires_python=str(doc.get("requires-python", "")),
        environments=tuple(doc.get("environments", ())),
        indexes=indexes,
        path=path,
        warnings=tuple(warnings),
    )


def read_lock(path: str | os.PathLike[str]) -> Lock:
    """Read a lock file written by envbuild (LockMismatchError when absent or not envbuild's)."""
    target = Path(path)
    try:
        text = target.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise LockMismatchError(
            "no lock file", path=target, hint="run `envbuild lock MODEL` to create it"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise LockMismatchError(f"cannot read the lock: {exc}", path=target) from None
    return lock_from_text(text, path=target)


def _file_name(entry: Mapping[str, Any]) -> str:
    if entry.get("name"):
        return str(entry["name"])
    location = str(entry.get("url") or entry.get("path") or "")
    return location.rstrip("/").rsplit("/", 1)[-1]


# ---------------------------------------------------------------------------------------------
# --as-of


def parse_as_of(value: str | date | datetime | None, model: ModelSpec | None = None) -> str | None:
    """``model`` / ``YYYY-MM-DD`` / an RFC 3339 time -> RFC 3339 UTC string (seconds), or None.

    A date means midnight UTC at its start (uv's ``--exclude-newer`` semantics, made independent
    of the local time zone so that the same command gives the same lock everywhere). ``model``
    uses ``utc_time_created`` from MLmodel: the releases that existed when the model was logged.
    """
    if value is None:
        return None
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
    elif isinstance(value, date):
        moment = datetime.combine(value, time(0), tzinfo=UTC)
    else:
        text = value.strip()
        if text.lower() == "model":
            created = model.utc_time_created if model is not None else None
            if not created:
                raise ModelError(
                    "--as-of model: MLmodel has no utc_time_created",
                    path=model.mlmodel_path if model is not None else None,
                    field="utc_time_created",
                    hint="pass the date the model was logged: --as-of YYYY-MM-DD",
                )
            moment = _parse_moment(created, field_name="utc_time_created", model=model)
        else:
            moment = _parse_moment(text, field_name="--as-of", model=None)
    moment = moment.astimezone(UTC).replace(microsecond=0)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_moment(text: str, *, field_name: str, model: ModelSpec | None) -> datetime:
    raw = text.strip()
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", raw):
            return datetime.combine(date.fromisoformat(raw), time(0), tzinfo=UTC)
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        if model is not None:
            raise ModelError(
                f"not a date and time: {raw!r}", path=model.mlmodel_path, field=field_name
            ) from None
        raise UsageError(
            f"invalid date {raw!r}",
            field=field_name,
            hint="write YYYY-MM-DD, an RFC 3339 time (2024-05-01T12:00:00Z), or 'model'",
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# ---------------------------------------------------------------------------------------------
# Canonical TOML (the subset PEP 751 files use): fixed key order, sorted arrays, no comments

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_PACKAGE_KEYS = (
    "name",
    "version",
    "marker",
    "requires-python",
    "dependencies",
    "index",
    "vcs",
    "directory",
    "archive",
    "sdist",
    "wheels",
    "attestation-identities",
    "tool",
)
_FILE_KEYS = ("name", "url", "path", "upload-time", "size", "hashes")
_TOP_KEYS = (
    "lock-version",
    "environments",
    "requires-python",
    "extras",
    "dependency-groups",
    "default-groups",
    "created-by",
)


def _key(name: str) -> str:
    return name if _BARE_KEY.match(name) else _string(name)


def _string(value: str) -> str:
    out = []
    for ch in value:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _ordered(table: Mapping[str, Any], order: Sequence[str] = ()) -> list[tuple[str, Any]]:
    known = [(k, table[k]) for k in order if k in table]
    rest = sorted((k, v) for k, v in table.items() if k not in order)
    return known + rest


def _value(value: Any, order: Sequence[str] = ()) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, datetime):
        if value.tzinfo is not None and value.utcoffset() is not None:
            text = value.astimezone(UTC).isoformat()
            return text.replace("+00:00", "Z")
        return value.isoformat()
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, Mapping):
        if not value:
            return "{}"
        items = ", ".join(f"{_key(k)} = {_value(v, order)}" for k, v in _ordered(value, order))
        return "{ " + items + " }"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v, order) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def _assign(key: str, value: Any, order: Sequence[str] = ()) -> str:
    """``key = value``; arrays of tables or long arrays get one element per line."""
    if isinstance(value, list | tuple) and value:
        one_line = f"{_key(key)} = {_value(value, order)}"
        if len(one_line) > 100 or any(isinstance(v, Mapping) for v in value):
            body = "".join(f"    {_value(v, order)},\n" for v in value)
            return f"{_key(key)} = [\n{body}]"
        return one_line
    return f"{_key(key)} = {_value(value, order)}"


def render(doc: Mapping[str, Any]) -> str:
    """Write a pylock document in envbuild's canonical form (deterministic for equal input)."""
    lines = [_assign(k, v) for k, v in _ordered(doc, _TOP_KEYS) if k not in ("packages", "tool")]
    for package in doc.get("packages", []):
        lines.append("")
        lines.append("[[packages]]")
        for key, value in _ordered(package, _PACKAGE_KEYS):
            lines.append(_assign(key, value, _FILE_KEYS))
    tools = doc.get("tool", {})
    for tool_name in sorted(tools):
        lines.append("")
        lines.append(f"[tool.{_key(tool_name)}]")
        for key, value in tools[tool_name].items():  # insertion order: set by the writer
            lines.append(_assign(key, value))
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# Resolution


@dataclass(frozen=True)
class _Job:
    """Everything one ``lock()`` call resolves: shared by the per-platform uv runs."""

    env: EnvSpec
    python: str
    python_from_model: bool
    platforms: tuple[Platform, ...]
    as_of: str | None
    offline: bool
    indexes: IndexConfig
    workdir: Path
    uv: str  # found once: uv's finder is not thread-safe (sysconfig's lazy init)


def _uv_command(job: _Job, target: Platform, out_dir: Path) -> list[str]:
    args = [
        job.uv,
        "pip",
        "compile",
        str(job.workdir / "requirements.in"),
        "--format",
        "pylock.toml",
        "--output-file",
        str(out_dir / PYLOCK_NAME),
        "--python-version",
        job.python,
        "--python-platform",
        target.uv_platform,
        # the interpreter uv may use to build an sdist's metadata; never searched for or
        # downloaded (the target version need not be installed)
        "--python",
        sys.executable,
        "--no-header",
        "--quiet",
        "--color",
        "never",
        "--no-progress",
    ]
    if job.env.constraints:
        args += ["--constraints", str(job.workdir / "constraints.txt")]
    if job.as_of:
        args += ["--exclude-newer", job.as_of]
    if job.offline:
        args.append("--offline")
    return args


def _child_env(job: _Job) -> dict[str, str]:
    env = job.indexes.child_env(proc.base_env())
    for name in _UV_HIDDEN_INPUTS:
        env.pop(name, None)
    return env


def _resolve_one(job: _Job, target: Platform) -> dict[str, Any]:
    """Run uv for one platform; its parsed pylock document, or a ResolutionError explaining."""
    out_dir = Path(tempfile.mkdtemp(prefix="out-", dir=job.workdir))
    done = proc.run(
        _uv_command(job, target, out_dir),
        what=f"resolving for {target.name} python {job.python}",
        error=ResolutionError,
        cwd=job.workdir,  # so that no project's pyproject.toml / uv.toml is picked up
        env=_child_env(job),
        check=False,
    )
    if done.returncode != 0:
        raise explain_failure(
            done.stderr,
            env=job.env,
            python=job.python,
            python_from_model=job.python_from_model,
            platform=target if len(job.platforms) > 1 else None,
            as_of=job.as_of,
            offline=job.offline,
            index=str(job.indexes.record().get("index-url")),
            log_path=done.log_path,
        )
    text = (out_dir / PYLOCK_NAME).read_text(encoding="utf-8")
    return tomllib.loads(text)


def _strip_credentials(url: str) -> str:
    """File URLs in a lock carry no credentials: installers get them from netrc/keyring/env."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if not (parts.username or parts.password):
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def _clean_file(entry: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(entry)
    if isinstance(out.get("url"), str):
        out["url"] = _strip_credentials(out["url"])
    if isinstance(out.get("hashes"), Mapping):
        out["hashes"] = dict(sorted(out["hashes"].items()))
    return out


def _version_key(version: str) -> tuple[int, Any]:
    try:
        return (0, Version(version))
    except InvalidVersion:
        return (1, version)


def _or_markers(markers: Sequence[str]) -> str:
    if len(markers) == 1:
        return markers[0]
    return " or ".join(f"({m})" for m in markers)


def merge(
    results: Sequence[tuple[Platform, Mapping[str, Any]]],
) -> list[dict[str, Any]]:
    """Combine per-platform resolutions into one package list.

    A (name, version) chosen for every target needs no marker, and its wheels are the union of
    each target's; one chosen for some targets only gets the marker of those targets, so that an
    installer on any target picks exactly what uv resolved for it.
    """
    all_names = [platform.name for platform, _ in results]
    groups: dict[tuple[str, str, str], dict[str, Any]] = {}
    seen_on: dict[tuple[str, str, str], list[Platform]] = {}
    for platform, doc in results:
        for package in doc.get("packages", []):
            key = (
                canonicalize_name(str(package["name"])),
                str(package.get("version", "")),
                str(package.get("marker", "")),
            )
            seen_on.setdefault(key, []).append(platform)
            merged = groups.get(key)
            if merged is None:
                merged = {k: v for k, v in package.items() if k not in ("wheels", "marker")}
                for single in ("sdist", "archive"):
                    if isinstance(merged.get(single), Mapping):
                        merged[single] = _clean_file(merged[single])
                merged["wheels"] = {}
                if package.get("marker"):
                    merged["marker"] = package["marker"]
                groups[key] = merged
            for wheel in package.get("wheels", []):
                clean = _clean_file(wheel)
                merged["wheels"].setdefault(_file_name(clean), clean)
    packages = []
    for key, merged in groups.items():
        wheels = [merged["wheels"][name] for name in sorted(merged["wheels"])]
        merged["wheels"] = wheels
        if not wheels:
            del merged["wheels"]
        platforms = sorted({p.name: p for p in seen_on[key]}.values())
        if [p.name for p in platforms] != sorted(all_names):
            where = _or_markers([p.marker for p in platforms])
            own = merged.get("marker")
            merged["marker"] = f"({own}) and ({where})" if own else where
        packages.append(merged)
    packages.sort(
        key=lambda p: (p["name"], _version_key(p.get("version", "")), p.get("marker", ""))
    )
    return packages


def _document(job: _Job, packages: list[dict[str, Any]]) -> dict[str, Any]:
    env = job.env
    tool: dict[str, Any] = {
        "python": job.python,
        "platforms": [p.name for p in job.platforms],
    }
    if env.python is not None:
        tool["model-python"] = env.python.specifier
    if job.as_of:
        tool["as-of"] = job.as_of
    tool["input-digest"] = env.digest()
    tool.update(job.indexes.record())
    tool["requirements"] = sorted(r.text for r in env.requirements)
    if env.constraints:
        tool["constraints"] = sorted(r.text for r in env.constraints)
    return {
        "lock-version": LOCK_VERSION,
        "environments": [p.marker for p in job.platforms],
        "requires-python": f"=={python_minor(job.python)}.*",
        "created-by": CREATED_BY,
        "packages": packages,
        "tool": {"envbuild": tool},
    }


def _lock_warnings(job: _Job, results: Sequence[tuple[Platform, Mapping[str, Any]]]) -> list[str]:
    out: list[str] = []
    for platform, doc in results:
        for package in doc.get("packages", []):
            if not package.get("wheels") and package.get("sdist"):
                out.append(
                    f"{package['name']}=={package.get('version')} has no wheel for {platform.name}"
                    f" (Python {job.python}): it will be built from source at install time"
                )
    local = sorted(
        {
            str(p["name"])
            for _, doc in results
            for p in doc.get("packages", [])
            for f in [*p.get("wheels", []), p.get("sdist") or {}, p.get("archive") or {}]
            if str(f.get("url", "")).startswith("file:") or "path" in f
        }
    )
    if local:
        shown = ", ".join(local[:5]) + (f" and {len(local) - 5} more" if len(local) > 5 else "")
        advice = job.indexes.local_advice()
        out.append(
            f"the lock refers to local files for {shown}: it will not install on another machine "
            "or in a Docker image" + (f" ({advice})" if advice else "")
        )
    missing = sorted(
        {
            str(p["name"])
            for _, doc in results
            for p in doc.get("packages", [])
            for f in [*p.get("wheels", []), p.get("sdist") or {}]
            if f and not f.get("hashes")
        }
    )
    if missing:
        out.append(
            f"no hash recorded for files of {', '.join(missing)}: "
            "`uv pip sync --require-hashes` will refuse them"
        )
    return list(dict.fromkeys(out))


def _load(
    model: ModelSpec | str | os.PathLike[str], env: EnvSpec | None
) -> tuple[ModelSpec, EnvSpec]:
    spec = model if isinstance(model, ModelSpec) else load_model(model)
    return spec, env if env is not None else read_env(spec)


def _target_python(env: EnvSpec, python: str | None) -> tuple[str, bool]:
    if python:
        return parse_python(python), False
    if env.python is None:
        raise ModelError(
            "the model does not say which Python it needs",
            path=env.model_path,
            hint="pass the Python to lock for: --python X.Y",
        )
    try:
        return parse_python(env.python.version), True
    except UsageError:
        raise ModelError(
            f"cannot lock for Python {env.python.text!r}",
            path=env.model_path / env.python.origin.file,
            line=env.python.origin.line,
            hint="pass the Python 3 version to lock for: --python X.Y",
        ) from None


def default_lock_path(model: ModelSpec) -> Path:
    return model.path / PYLOCK_NAME


def lock(
    model: ModelSpec | str | os.PathLike[str],
    *,
    output: str | os.PathLike[str] | None = None,
    python: str | None = None,
    platforms: Iterable[str] | None = None,
    as_of: str | date | datetime | None = None,
    offline: bool = False,
    index_url: str | None = None,
    extra_index_urls: Sequence[str] = (),
    find_links: Sequence[str] = (),
    trust_model_indexes: bool = False,
    write: bool = True,
    env: EnvSpec | None = None,
    on_progress: Callable[[str], None] | None = None,
) -> Lock:
    """Resolve the model's requirements into a PEP 751 lock for its Python on the targets.

    ``python`` (``X.Y[.Z]``) overrides the model's Python; ``platforms`` are names such as
    ``linux/amd64`` (the default), ``linux/arm64``, ``macos``, ``windows``, ``+P`` adding to the
    default. ``as_of`` is ``"model"``, a date or an RFC 3339 time. ``write=False`` returns the
    lock without writing it (``Lock.path`` is then None). Raises ResolutionError (exit 3) with a
    one-line explanation when uv cannot resolve; an existing lock file is then left untouched.
    """
    spec, env = _load(model, env)
    target_python, from_model = _target_python(env, python)
    targets = resolve_platforms(platforms)
    if as_of is None and os.environ.get("UV_EXCLUDE_NEWER"):
        as_of = os.environ["UV_EXCLUDE_NEWER"]  # honour uv's setting, but record it
    as_of_text = parse_as_of(as_of, spec)
    out_path = Path(output) if output is not None else default_lock_path(spec)
    _check_file_name(out_path)
    indexes = configure(
        index_url=index_url,
        extra_index_urls=extra_index_urls,
        find_links=find_links,
        model_options=env.index_options,
        trust_model_indexes=trust_model_indexes,
    )
    with tempfile.TemporaryDirectory(prefix="envbuild-lock-") as tmp:
        workdir = Path(tmp)
        (workdir / "requirements.in").write_text(
            "".join(f"{r.text}\n" for r in env.requirements), encoding="utf-8"
        )
        if env.constraints:
            (workdir / "constraints.txt").write_text(
                "".join(f"{r.text}\n" for r in env.constraints), encoding="utf-8"
            )
        job = _Job(
            env=env,
            python=target_python,
            python_from_model=from_model,
            platforms=targets,
            as_of=as_of_text,
            offline=offline,
            indexes=indexes,
            workdir=workdir,
            uv=proc.uv_bin(),
        )
        if on_progress is not None:
            names = ", ".join(p.name for p in targets)
            on_progress(
                f"resolving {len(env.requirements)} requirement(s) for Python {target_python} "
                f"on {names}" + (f" as of {as_of_text}" if as_of_text else "")
            )
        if len(targets) == 1:
            results = [(targets[0], _resolve_one(job, targets[0]))]
        else:
            with ThreadPoolExecutor(max_workers=len(targets)) as pool:
                futures = [(t, pool.submit(_resolve_one, job, t)) for t in targets]
                results = [(t, f.result()) for t, f in futures]
        text = render(_document(job, merge(results)))
        warnings = _lock_warnings(job, results)
    result = lock_from_text(text, warnings=warnings)
    if not write:
        return result
    try:
        previous = out_path.read_bytes()
    except OSError:
        previous = None
    changed = previous != text.encode("utf-8")
    if changed:
        atomic_write(out_path, text.encode("utf-8"))
    return _replace(result, path=out_path, changed=changed)


# ---------------------------------------------------------------------------------------------
# --check


def check_lock(
    model: ModelSpec | str | os.PathLike[str],
    path: str | os.PathLike[str] | None = None,
    *,
    python: str | None = None,
    platforms: Iterable[str] | None = None,
    env: EnvSpec | None = None,
) -> Lock:
    """Verify, without resolving, that the lock still matches the model; return it.

    Raises LockMismatchError (exit 3) when the lock is missing, unreadable, made from other
    requirements (input digest), or for another Python (or other platforms, when given) than
    asked.
    """
    spec, env = _load(model, env)
    target = Path(path) if path is not None else default_lock_path(spec)
    shown_model = _shown(spec.path)
    regenerate = f"run `envbuild lock {shown_model}` to update it"
    if not target.is_file():
        raise LockMismatchError(
            "no lock file", path=target, hint=f"run `envbuild lock {shown_model}` to create it"
        )
    lk = read_lock(target)
    current = env.digest()
    if lk.input_digest != current:
        raise LockMismatchError(
            "out of date: " + _describe_change(lk, env, current), path=target, hint=regenerate
        )
    if python:
        wanted = parse_python(python)
        ok = lk.python == wanted or (wanted.count(".") == 1 and lk.python_minor == wanted)
        if not ok:
            raise LockMismatchError(
                f"locked for Python {lk.python}, not {wanted}", path=target, hint=regenerate
            )
    elif env.python is not None and not (
        lk.python == env.python.version or env.python.admits(lk.python)
    ):
        raise LockMismatchError(
            f"locked for Python {lk.python} but the model asks for {env.python.text} "
            f"({env.python.origin})",
            path=target,
            hint=f"{regenerate}, or pass --python {lk.python} if that Python was intended",
        )
    if platforms is not None:
        wanted_platforms = [p.name for p in resolve_platforms(platforms)]
        if sorted(lk.platforms) != sorted(wanted_platforms):
            raise LockMismatchError(
                f"locked for {', '.join(lk.platforms)}, not {', '.join(wanted_platforms)}",
                path=target,
                hint=regenerate,
            )
    return lk


def _shown(path: Path) -> str:
    """A folder as the user would type it in the hint's command: relative unless that climbs."""
    rel = os.path.relpath(path)
    return str(path) if rel.startswith("..") else rel


def _describe_change(lk: Lock, env: EnvSpec, current: str) -> str:
    """What changed since the lock, from the requirement lists it records (one line)."""
    tool = lk.document.get("tool", {}).get("envbuild", {})
    parts: list[str] = []
    for key, reqs in (("requirements", env.requirements), ("constraints", env.constraints)):
        before = set(tool.get(key, []))
        now = {r.text: r for r in reqs}
        label = "" if key == "requirements" else "constraint "
        for text in sorted(set(now) - before):
            parts.append(f"{now[text].origin} adds {label}{text}")
        for text in sorted(before - set(now)):
            parts.append(f"{label}{text} was removed")
    model_python = env.python.specifier if env.python else None
    if tool.get("model-python") != model_python:
        parts.append(
            f"the model's Python changed from {tool.get('model-python')} to {model_python}"
        )
    if not parts:
        parts.append("the model's index options changed")
    shown = "; ".join(parts[:6]) + (f"; and {len(parts) - 6} more" if len(parts) > 6 else "")
    return f"{shown} (input digest {lk.input_digest[:19]}…, now {current[:19]}…)"


# ---------------------------------------------------------------------------------------------
# Turning uv's failures into one line


_NETWORK_SIGNS = (
    "Failed to fetch",
    "error sending request",
    "Could not connect",
    "dns error",
    "tcp connect error",
    "Connection refused",
    "operation timed out",
    "Request failed after",
    "failed to lookup address",
    "certificate",
)
_NAME_TOKEN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?")


def _paragraphs(stderr: str) -> tuple[str, list[str], list[str]]:
    """uv's stderr -> (first error line, cause lines, hint paragraphs), whitespace collapsed."""
    head = ""
    causes: list[str] = []
    hints: list[str] = []
    current: list[str] | None = None
    for raw in stderr.splitlines():
        line = raw.strip()
        if not line:
            current = None
            continue
        if line.startswith("error:") and not head:
            head = line[len("error:") :].strip()
            current = None
        elif line.startswith("cause:"):
            causes.append(line[len("cause:") :].strip())
            current = causes
        elif line.startswith("hint:"):
            hints.append(line[len("hint:") :].strip())
            current = hints
        elif current is not None and current:
            current[-1] += " " + line
    return head, causes, hints


def _mentioned(text: str, env: EnvSpec) -> list[Requirement]:
    """The model's requirements named in ``text``, in order of first mention."""
    by_name: dict[str, list[Requirement]] = {}
    for req in (*env.requirements, *env.constraints):
        by_name.setdefault(req.name, []).append(req)
    found: list[Requirement] = []
    for token in _NAME_TOKEN.findall(text):
        for req in by_name.pop(canonicalize_name(token), []):
            found.append(req)
    return found


def _host(url: str) -> str:
    parts = urlsplit(url)
    if not parts.hostname:
        return url
    return parts.hostname + (f":{parts.port}" if parts.port else "")


def _cut(text: str, limit: int = 400) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:] if text[:2] != text[:2].upper() else text


def explain_failure(
    stderr: str,
    *,
    env: EnvSpec,
    python: str,
    python_from_model: bool = True,
    platform: Platform | None = None,
    as_of: str | None = None,
    offline: bool = False,
    index: str = "https://pypi.org/simple",
    log_path: Path | None = None,
) -> ResolutionError:
    """One line (and a hint) a user can act on, from uv's failed ``pip compile`` output.

    Names the package and, from the requirement origins, the file:line(s) of the model that
    asked for it. Credentials in URLs are redacted before anything is kept.
    """
    stderr = proc.redact(stderr)
    head, causes, hints = _paragraphs(stderr)
    reason = _cut(" ".join(causes) or head or "uv failed without a message")
    where = f" for {platform.name}" if platform is not None else ""
    everything = " ".join([head, *causes, *hints])
    involved = _mentioned(" ".join(causes) or head, env)
    first = involved[0] if involved else None
    location: dict[str, Any] = {"log_path": log_path}
    if first is not None:
        location.update(path=env.model_path / first.origin.file, line=first.origin.line)

    def error(message: str, hint: str | None) -> ResolutionError:
        return ResolutionError(message, hint=hint, **location)

    missing = re.search(r"Because (\S+) was not found in the package registry", everything)
    if missing:
        name = missing.group(1)
        return error(
            f"{first.text if first else name}: no package named {name!r} on {index}{where}",
            "check the name; a private package needs --index-url or --extra-index-url",
        )
    cache_miss = re.search(r"Because (\S+) was not found in the cache", everything)
    if cache_miss or (offline and "network was disabled" in everything):
        name = cache_miss.group(1) if cache_miss else "a package"
        return error(
            f"--offline: {name} is not in uv's cache{where}",
            "run the same lock once with network access (it fills uv's cache), or drop --offline",
        )
    if any(sign in everything for sign in _NETWORK_SIGNS) and "No solution found" not in head:
        url = re.search(r"Failed to fetch:? `?(\S+?)`?(?:\s|$)", everything)
        host = _host(url.group(1) if url else index)
        last = _cut(causes[-1] if causes else head, 160)
        return ResolutionError(
            f"cannot reach the package index {host}{where}: {last}",
            hint="check the network and proxy (HTTPS_PROXY, SSL_CERT_FILE); without network, "
            "--offline resolves from uv's cache when it holds every package",
            log_path=log_path,
        )
    if "exclude-newer" in everything or (as_of and "there is no version of" in everything):
        published = re.search(r"published at (\S+?)\.?(?:\s|$)", everything)
        after = f" (published {published.group(1)[:10]})" if published else ""
        subject = first.text if first else "a requirement"
        return error(
            f"{subject}: no matching release before the as-of date {as_of}{after}{where}",
            "use a later --as-of, or drop --as-of to resolve with today's releases",
        )
    python_sign = re.search(r"depends on Python([<>=!~][^\s,]*)", everything)
    if python_sign or "requested Python version" in everything:
        needs = f" (it needs Python{python_sign.group(1).rstrip('.')})" if python_sign else ""
        subject = first.text if first else "the requirements"
        if python_from_model and env.python is not None:
            hint = (
                f"the model asks for Python {env.python.text} ({env.python.origin}); lock for "
                "another Python with --python X.Y, or relax the pin"
            )
        else:
            hint = "choose another --python, or relax the pin"
        return error(f"{subject} does not support Python {python}{needs}{where}", hint)
    if "No solution found" in head:
        if len(involved) >= 2:
            others = ", ".join(f"{r.text} ({r.origin})" for r in involved[1:])
            message = f"{involved[0].text} conflicts with {others}{where}: {_lower_first(reason)}"
        elif first is not None:
            message = f"{first.text} cannot be installed{where}: {_lower_first(reason)}"
        else:
            message = f"the requirements cannot be resolved{where}: {_lower_first(reason)}"
        uv_hint = _cut(hints[0], 300) if hints else None
        return error(
            message, uv_hint or "relax or remove one of these pins in the model's requirements"
        )
    return error(
        f"uv could not resolve the requirements{where}: {_cut(head or reason, 300)}",
        "see the log for uv's full output",
    )


# ---------------------------------------------------------------------------------------------
# ``envbuild.lock`` names both this module and the function ``lock`` (the public API the issue
# asks for). Python binds the package attribute to whichever it meets first: the submodule, when
# something imports ``envbuild.lock`` before anyone calls ``envbuild.lock(...)``, else the lazily
# exported function. Making the module callable keeps ``envbuild.lock(spec)`` working either way.


class _CallableModule(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> Lock:
        return lock(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

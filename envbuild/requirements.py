"""Requirement lines from a model's files, each with the file and line it came from.

Parsing is pip-requirements-parser's and packaging's (pip's own grammar), never a hand-made regex.
One shortcut: a text whose every line is blank, a comment, a plain ``-r``/``-c FILE`` or a
requirement made only of a name, extras and version specifiers (what ``mlflow`` writes) is
parsed by packaging directly, which is what pip-requirements-parser does with such lines; the
pattern only decides that no other grammar is involved. pip-requirements-parser (20 ms of
imports, and a temporary file per text) is loaded for anything else.
What this module adds is policy, because a model's requirement files are untrusted:

* ``-r``/``-c`` includes are followed only inside the model folder;
* index options (``--index-url``, ``--extra-index-url``, ``--find-links``, ``--trusted-host``) are
  recorded, never obeyed here (``lock --trust-model-indexes`` decides);
* per-requirement options that run code at install (``--install-option``, ``--global-option``) and
  editable installs are refused; anything that is not a requirement is a one-line error.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from packaging.requirements import InvalidRequirement
from packaging.requirements import Requirement as PkgRequirement
from packaging.utils import canonicalize_name

from envbuild.errors import RequirementError
from envbuild.files import temporary_directory
from envbuild.paths import inside
from envbuild.redact import redact_url

if TYPE_CHECKING:
    import pip_requirements_parser as prp

INDEX_OPTIONS = {
    "index_url": "--index-url",
    "extra_index_urls": "--extra-index-url",
    "find_links": "--find-links",
    "trusted_hosts": "--trusted-host",
}


@dataclass(frozen=True, order=True)
class Origin:
    """Where a requirement was written: a file relative to the model folder, and a 1-based line."""

    file: str
    line: int | None = None

    def __str__(self) -> str:
        return f"{self.file}:{self.line}" if self.line is not None else self.file


@dataclass(frozen=True)
class Requirement:
    """One PEP 508 requirement as envbuild will install it, with its origin."""

    text: str  # normalized PEP 508 string
    name: str  # canonical project name
    origin: Origin
    hashes: tuple[str, ...] = ()

    @property
    def parsed(self) -> PkgRequirement:
        return PkgRequirement(self.text)

    @property
    def pinned_version(self) -> str | None:
        """The version when the requirement is an exact ``==`` pin, else None."""
        specs = list(self.parsed.specifier)
        if len(specs) == 1 and specs[0].operator in ("==", "===") and "*" not in specs[0].version:
            return specs[0].version
        return None


@dataclass(frozen=True)
class IndexOption:
    """An index option found in a model file: recorded and reported, not obeyed by default."""

    option: str  # --index-url, --extra-index-url, --find-links, --trusted-host
    value: str  # as written (may contain credentials: never print it, use .redacted)
    origin: Origin

    @property
    def redacted(self) -> str:
        return redact_url(self.value)

    def __str__(self) -> str:
        return f"{self.option} {self.redacted}"


@dataclass
class ParsedRequirements:
    """What one requirements source yields (mutable while parsing, frozen into EnvSpec later)."""

    requirements: list[Requirement]
    constraints: list[Requirement]
    index_options: list[IndexOption]
    ignored_options: list[tuple[str, Origin]]
    files: list[str]


class MissingInclude(RequirementError):
    """A ``-r``/``-c`` include names a file the model folder does not have."""


def _first_line(message: str) -> str:
    return " ".join(str(message).strip().splitlines()[:1]) or "invalid requirement"


def make_requirement(
    line: str, origin: Origin, *, root: Path, shown: str | Path, hashes: tuple[str, ...] = ()
) -> Requirement:
    """Validate one PEP 508 string and normalize it; file URLs must stay in the model folder."""
    try:
        req = PkgRequirement(line)
    except InvalidRequirement as exc:
        raise RequirementError(
            f"invalid requirement {line!r}: {_first_line(str(exc))}", path=shown, line=origin.line
        ) from None
    if req.url:
        scheme = urlsplit(req.url).scheme.lower()
        if scheme == "file":
            local = unquote(urlsplit(req.url).path)
            if os.name == "nt" and local.startswith("/"):
                local = local[1:]
            inside(root, os.path.relpath(local, root), path=shown, field=req.name, line=origin.line)
        elif scheme not in ("https", "http") and not scheme.startswith("git+"):
            raise RequirementError(
                f"unsupported URL scheme {scheme!r} in {line!r}", path=shown, line=origin.line
            )
    return Requirement(
        text=str(req), name=canonicalize_name(req.name), origin=origin, hashes=hashes
    )


def _parse_text(text: str) -> prp.RequirementsFile | _Simple:
    """pip-requirements-parser reads files (its ``from_string`` is broken in 32.0.1)."""
    simple = _parse_simple(text)
    if simple is not None:
        return simple
    import pip_requirements_parser as prp

    with temporary_directory("req") as tmp:
        path = tmp / "requirements.txt"
        path.write_text(text, encoding="utf-8")
        return prp.RequirementsFile.from_file(str(path), include_nested=False)


_SPECIFIER = r"(?:===|==|!=|~=|<=|>=|<|>)\s*[A-Za-z0-9.*+!_-]+"
_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?"
_SIMPLE_REQUIREMENT = re.compile(
    rf"{_NAME}\s*(?:\[\s*{_NAME}(?:\s*,\s*{_NAME})*\s*\])?"
    rf"\s*(?:{_SPECIFIER}(?:\s*,\s*{_SPECIFIER})*)?"
)
_SIMPLE_INCLUDE = re.compile(r"(-r|-c|--requirement|--constraint)(?:\s+|=)([A-Za-z0-9._/+-]+)")
_INCLUDE_KEYS = {"-r": "requirements", "--requirement": "requirements"}


@dataclass(frozen=True)
class _SimpleOption:
    """A ``-r``/``-c FILE`` line, shaped like pip-requirements-parser's option lines."""

    line: str
    line_number: int
    options: dict[str, list[str]]


@dataclass(frozen=True)
class _SimpleLine:
    """A plain requirement line, shaped like pip-requirements-parser's requirement lines."""

    line: str
    line_number: int
    req: PkgRequirement
    is_editable: bool = False
    is_constraint: bool = False
    install_options: tuple[str, ...] = ()
    global_options: tuple[str, ...] = ()
    invalid_options: dict[str, Any] = field(default_factory=dict)
    hash_options: tuple[str, ...] = ()
    marker: None = None
    link: None = None


@dataclass(frozen=True)
class _Simple:
    options: list[_SimpleOption]
    requirements: list[_SimpleLine]
    invalid_lines: tuple[Any, ...] = ()


def _parse_simple(text: str) -> _Simple | None:
    """The lines of ``text``, when each is blank, a comment, ``-r``/``-c FILE`` or a requirement
    of only a name, extras and specifiers (parsed by packaging); None when any line needs pip's
    full grammar (markers, URLs, hashes, other options, trailing comments, continuations)."""
    options: list[_SimpleOption] = []
    requirements: list[_SimpleLine] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        include = _SIMPLE_INCLUDE.fullmatch(line)
        if include is not None:
            key = _INCLUDE_KEYS.get(include.group(1), "constraints")
            options.append(_SimpleOption(line, number, {key: [include.group(2)]}))
            continue
        if not _SIMPLE_REQUIREMENT.fullmatch(line):
            return None
        try:
            requirements.append(_SimpleLine(line, number, PkgRequirement(line)))
        except InvalidRequirement:
            return None  # pip-requirements-parser says what is wrong with it
    return _Simple(options, requirements)


class RequirementsReader:
    """Reads pip requirement lines (files or single strings) under the model folder's rules."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.result = ParsedRequirements([], [], [], [], [])
        self._seen: set[Path] = set()

    def _shown(self, path: Path) -> Path:
        return path

    def read_file(
        self, path: Path, *, constraint: bool = False, included_from: Origin | None = None
    ) -> None:
        """Parse a requirements file and the files it includes (inside the model folder only)."""
        rel = os.path.relpath(path, self.root)
        real = path.resolve()
        if real in self._seen:
            return
        self._seen.add(real)
        if not path.is_file():
            where = included_from or Origin(rel)
            raise MissingInclude(
                f"included file {rel} does not exist" if included_from else "file not found",
                path=self.root / where.file,
                line=where.line,
            )
        self.result.files.append(rel)
        try:
            text = path.read_bytes().decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise RequirementError(f"not UTF-8 text (byte {exc.start})", path=path) from None
        self._read_lines(text, rel, path, first_line=1, constraint=constraint)

    def read_line(
        self, text: str, origin: Origin, shown: Path, *, base: Path | None = None
    ) -> None:
        """Parse one line given inside a YAML file (conda ``pip:`` list, python_env dependencies)."""
        if "\n" in text.strip():
            raise RequirementError(
                "a requirement entry must be a single line", path=shown, line=origin.line
            )
        self._read_lines(
            text,
            origin.file,
            shown,
            first_line=origin.line or 1,
            constraint=False,
            base=base,
            single=True,
        )

    def _read_lines(
        self,
        text: str,
        rel: str,
        shown: Path,
        *,
        first_line: int,
        constraint: bool,
        base: Path | None = None,
        single: bool = False,
    ) -> None:
        try:
            parsed = _parse_text(text)
        except Exception as exc:  # the parser raises several unrelated types
            raise RequirementError(
                f"cannot parse requirements: {_first_line(str(exc))}", path=shown
            ) from None

        def at(line_number: int | None) -> int | None:
            if single:
                return first_line
            return line_number

        for bad in parsed.invalid_lines:
            raise RequirementError(
                f"invalid requirement {bad.line.strip()!r}: {_first_line(bad.error_message)}",
                path=shown,
                line=at(bad.line_number),
            )
        folder = base or (self.root / rel).parent
        for opt in parsed.options:
            origin = Origin(rel, at(opt.line_number))
            for key, value in opt.options.items():
                if key in ("requirements", "constraints"):
                    for include in value:
                        if "://" in include:
                            raise RequirementError(
                                f"remote include {include!r} is refused: only files inside the "
                                "model folder are read",
                                path=shown,
                                line=origin.line,
                            )
                        target = inside(
                            self.root,
                            os.path.relpath(folder / include, self.root),
                            path=shown,
                            field=f"-{'r' if key == 'requirements' else 'c'} {include}",
                            line=origin.line,
                        )
                        self.read_file(
                            target,
                            constraint=constraint or key == "constraints",
                            included_from=origin,
                        )
                elif key in INDEX_OPTIONS:
                    values = value if isinstance(value, list) else [value]
                    for item in values:
                        self.result.index_options.append(
                            IndexOption(INDEX_OPTIONS[key], str(item), origin)
                        )
                else:
                    self.result.ignored_options.append((opt.line.strip(), origin))
        for item in parsed.requirements:
            origin = Origin(rel, at(item.line_number))
            line = item.line.strip()
            if item.is_editable:
                raise RequirementError(
                    f"editable requirement {line!r} cannot be reproduced",
                    path=shown,
                    line=origin.line,
                    hint="pin a released version or a wheel file inside the model folder",
                )
            if (
                item.install_options
                or item.global_options
                or getattr(item, "invalid_options", None)
            ):
                raise RequirementError(
                    f"per-requirement options are refused in {line!r} (they run arbitrary build "
                    "commands)",
                    path=shown,
                    line=origin.line,
                )
            if item.req is None:
                raise RequirementError(
                    f"{line!r} is not a named requirement",
                    path=shown,
                    line=origin.line,
                    hint="write it as 'name @ URL' or 'name==version'",
                )
            text_req = str(item.req)
            if item.marker is not None and item.req.marker is None:
                text_req = f"{text_req}; {item.marker}"
            if item.link is not None and item.req.url is None:
                text_req = f"{item.req.name} @ {item.link.url}"
            req = make_requirement(
                text_req, origin, root=self.root, shown=shown, hashes=tuple(item.hash_options)
            )
            (
                self.result.constraints
                if constraint or item.is_constraint
                else self.result.requirements
            ).append(req)

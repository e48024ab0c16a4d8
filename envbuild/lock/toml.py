"""envbuild's canonical TOML writer for PEP 751 files: fixed key order, sorted arrays, no comments.

Why not a TOML library: the lock's bytes are its identity (the cache key and what ``--check``
and code review compare), so the same document must always be written the same way, whatever
order uv printed it in; the subset of TOML a ``pylock.toml`` uses is small enough to write here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import date, datetime, time, timezone
from typing import Any

UTC = timezone.utc
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


def toml_string(value: str) -> str:
    """A TOML basic string holding exactly ``value``."""
    return _string(value)


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

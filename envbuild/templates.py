"""envbuild's templates (``templates/``: the Dockerfile, the CI jobs) and their tiny language.

Text a user reads and reviews (a Dockerfile, a CI job) lives in a template file, not in Python
strings. The language is deliberately tiny (no Jinja dependency for a few files): ``{{ name }}``
substitutes a value and whole-line ``{% if name %}`` / ``{% else %}`` / ``{% endif %}`` keep or
drop lines. Every name a template uses must be given.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path

from envbuild.errors import BuildError

_VAR = re.compile(r"\{\{\s*([a-z_][a-z0-9_]*)\s*\}\}")
_DIRECTIVE = re.compile(r"^\s*\{%\s*(if|else|endif)\s*([a-z_][a-z0-9_]*)?\s*%\}\s*$")
_MARKER = "Dockerfile.tmpl"


def templates_dir() -> Path:
    """The folder holding envbuild's templates, in a wheel or in a source checkout.

    A wheel ships them as ``envbuild/templates`` (hatch force-include); an editable install or a
    checkout has them at the repository's top level, next to the ``envbuild`` package.
    """
    package = Path(__file__).resolve().parent
    for candidate in (package / "templates", package.parent / "templates"):
        if (candidate / _MARKER).is_file():
            return candidate
    raise BuildError(
        f"envbuild's templates are missing (looked in {package / 'templates'} and "
        f"{package.parent / 'templates'})",
        hint="reinstall envbuild",
    )


def render(template: str, values: Mapping[str, str | bool], *, name: str = "template") -> str:
    """Render ``template`` with ``values`` (strings for ``{{ }}``, anything truthy for ``if``)."""
    out: list[str] = []
    stack: list[tuple[bool, bool]] = []  # (this block's condition, enclosing blocks all true)
    for number, line in enumerate(template.splitlines(), start=1):
        directive = _DIRECTIVE.match(line)
        active = all(cond for cond, _ in stack)
        if directive:
            word, condition = directive.groups()
            if word == "if":
                if condition is None or condition not in values:
                    raise BuildError(f"{name}:{number}: unknown condition {condition!r}")
                stack.append((bool(values[condition]), active))
            elif not stack:
                raise BuildError(f"{name}:{number}: {word} without if")
            elif word == "else":
                cond, outer = stack.pop()
                stack.append((not cond, outer))
            else:
                stack.pop()
            continue
        if active:
            out.append(_VAR.sub(_substitute(values, number, name), line))
    if stack:
        raise BuildError(f"{name}: an if block is not closed")
    return "\n".join(out) + "\n"


def _substitute(
    values: Mapping[str, str | bool], number: int, name: str
) -> Callable[[re.Match[str]], str]:
    def substitute(match: re.Match[str]) -> str:
        return _value(values, match.group(1), number, name)

    return substitute


def _value(values: Mapping[str, str | bool], key: str, number: int, name: str) -> str:
    if key not in values:
        raise BuildError(f"{name}:{number}: no value for {{{{ {key} }}}}")
    return str(values[key])


def read_template(relative: str) -> str:
    """The text of ``templates/RELATIVE``."""
    return (templates_dir() / relative).read_text(encoding="utf-8")

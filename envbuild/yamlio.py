"""Safe YAML reading that remembers where every value came from.

Why not plain ``yaml.safe_load``: envbuild's messages name the file *and line* of a bad value, and
``python_version: 3.10`` must stay "3.10" (safe_load turns it into the float 3.1). The loader here
is a ``SafeLoader`` (no arbitrary objects) whose mappings and sequences keep the line of each item
and whose floats keep their source text.
"""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path
from typing import Any

import yaml

from envbuild.errors import ModelError


class YamlMap(dict):
    """A mapping that knows the 1-based line of each key."""

    lines: dict[Any, int]
    line: int


class YamlList(list):
    """A sequence that knows the 1-based line of each item."""

    lines: list[int]
    line: int


class YamlFloat(float):
    """A float that keeps the text it was written as (``3.10`` stays ``"3.10"``)."""

    text: str


# A model file is untrusted: anchors and aliases let a few lines describe a document of billions
# of values (an "alias bomb"). Composing keeps aliases as shared nodes; what would be built from
# them is counted first, and a document that would exceed this many values is refused.
MAX_EXPANDED_VALUES = 200_000


class _TooLarge(Exception):
    pass


def _expanded_size(root: yaml.Node) -> int:
    """How many values constructing ``root`` builds, aliases counted at each use (linear time:
    a shared node's size is computed once). Raises _TooLarge for a recursive alias or past the
    limit."""
    sizes: dict[int, int] = {}
    active: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            active.discard(key)
            children: list[yaml.Node] = []
            if isinstance(node, yaml.SequenceNode):
                children = list(node.value)
            elif isinstance(node, yaml.MappingNode):
                children = [item for pair in node.value for item in pair]
            total = 1 + sum(sizes[id(child)] for child in children)
            if total > MAX_EXPANDED_VALUES:
                raise _TooLarge(f"its aliases expand to more than {MAX_EXPANDED_VALUES:,} values")
            sizes[key] = total
            continue
        if key in sizes:
            continue
        if key in active:
            raise _TooLarge("an alias refers to a value that contains it")
        active.add(key)
        stack.append((node, True))
        if isinstance(node, yaml.SequenceNode):
            stack.extend((child, False) for child in node.value if id(child) not in sizes)
        elif isinstance(node, yaml.MappingNode):
            stack.extend(
                (item, False) for pair in node.value for item in pair if id(item) not in sizes
            )
    return sizes[id(root)]


class _Loader(yaml.SafeLoader):
    """SafeLoader keeping source positions; never constructs arbitrary Python objects, nor a
    document too large to hold (see MAX_EXPANDED_VALUES)."""

    def compose_document(self) -> yaml.Node | None:
        node = super().compose_document()
        if node is not None:
            _expanded_size(node)
        return node

    def construct_yaml_map(self, node: yaml.MappingNode) -> Generator[dict[Any, Any], None, None]:
        data = YamlMap()
        data.lines = {}
        data.line = node.start_mark.line + 1
        yield data
        self.flatten_mapping(node)
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, str | int | float | bool) and key is not None:
                raise yaml.constructor.ConstructorError(
                    None, None, "found an unhashable key", key_node.start_mark
                )
            data[key] = self.construct_object(value_node, deep=True)
            data.lines[key] = key_node.start_mark.line + 1

    def construct_yaml_seq(self, node: yaml.SequenceNode) -> Generator[list[Any], None, None]:
        data = YamlList()
        data.line = node.start_mark.line + 1
        data.lines = [child.start_mark.line + 1 for child in node.value]
        yield data
        data.extend(self.construct_object(child, deep=True) for child in node.value)

    def construct_yaml_float(self, node: yaml.ScalarNode) -> YamlFloat:
        value = YamlFloat(super().construct_yaml_float(node))
        value.text = str(node.value)
        return value


_Loader.add_constructor("tag:yaml.org,2002:map", _Loader.construct_yaml_map)
_Loader.add_constructor("tag:yaml.org,2002:seq", _Loader.construct_yaml_seq)
_Loader.add_constructor("tag:yaml.org,2002:float", _Loader.construct_yaml_float)


def read_text(path: Path) -> str:
    """Read a model file as text, with a one-line error naming it when that is impossible."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ModelError("file not found", path=path) from None
    except IsADirectoryError:
        raise ModelError("is a directory, expected a file", path=path) from None
    except OSError as exc:
        raise ModelError(f"cannot read: {exc.strerror}", path=path) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ModelError(f"not UTF-8 text (byte {exc.start})", path=path) from None


def load_yaml(path: Path, *, display: str | Path | None = None) -> Any:
    """Parse a YAML file safely; a syntax error becomes a one-line ModelError with its line.

    ``display`` is how the file is named in messages (relative to the model folder, usually).
    """
    text = read_text(path)
    shown = display if display is not None else path
    try:
        return yaml.load(text, Loader=_Loader)
    except _TooLarge as exc:
        raise ModelError(f"refused YAML: {exc}", path=shown) from None
    except RecursionError:
        raise ModelError("invalid YAML: nested too deeply", path=shown) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        if exc.context and exc.problem:
            problem = f"{exc.context}: {exc.problem}"
        raise ModelError(
            f"invalid YAML: {problem}",
            path=shown,
            line=mark.line + 1 if mark else None,
        ) from None
    except yaml.YAMLError as exc:
        raise ModelError(f"invalid YAML: {exc}", path=shown) from None


def line_of(container: Any, key: Any) -> int | None:
    """Line of ``key`` in a YamlMap, or of index ``key`` in a YamlList, when known."""
    if isinstance(container, YamlMap):
        return container.lines.get(key)
    if isinstance(container, YamlList) and isinstance(key, int) and 0 <= key < len(container.lines):
        return container.lines[key]
    return None


def scalar_text(value: Any) -> str | None:
    """A YAML scalar as the text the author wrote (floats keep ``3.10``), or None."""
    if value is None:
        return None
    if isinstance(value, YamlFloat):
        return value.text
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str | int | float):
        return str(value)
    return None


def kind_of(value: Any) -> str:
    """A YAML value's kind as a person would name it in an error message."""
    if value is None:
        return "nothing"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "a string"

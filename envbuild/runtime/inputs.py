"""Input bytes to text, and where in an input file a problem is (line, column, field).

Decoding follows what MLflow's scoring server accepts: JSON bodies are decoded the way
``json.loads`` decodes bytes (UTF-8 with or without a byte-order mark, UTF-16, UTF-32), CSV bodies
as UTF-8 (a byte-order mark is dropped, as pandas does). The finders below run only after a
failure, to say where it is: they cost nothing on the path that succeeds.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from typing import IO, Any, Dict, Iterator, Optional, Tuple, Union

from .errors import BadInput, one_line

CsvSource = Union[str, IO[str]]
# What parsing a request gives: (data for predict, params, whether the unified LLM format was used)
Parsed = Tuple[Any, Optional[Dict[str, Any]], bool]

_NUMBER_TYPES = {"double": float, "float": float, "long": int, "integer": int}
# JSON tokens that hold a number Python's json accepts but no model can take as a finite value:
# strings are matched (and skipped) so that a "NaN" inside one is not reported.
_JSON_TOKENS = re.compile(
    r'"(?:[^"\\]|\\.)*"|(-?(?:NaN|Infinity))|(-?\d+(?:\.\d+(?:[eE][+-]?\d+)?|[eE][+-]?\d+))'
)


def decode_json(raw: bytes) -> str:
    """The text of a JSON body, decoded as ``json.loads(bytes)`` decodes it (BOM dropped)."""
    try:
        return raw.decode(json.detect_encoding(raw), "surrogatepass")
    except UnicodeDecodeError as exc:
        raise BadInput(
            "Invalid input. Ensure that input is a valid JSON formatted string. Error: the input "
            "is not valid UTF-8 (%s)" % exc.reason,
            field="byte %d" % exc.start,
        ) from None


def decode_csv(raw: bytes) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BadInput(
            "Ensure that input is a valid UTF-8 encoded string. Error: %s" % exc.reason,
            field="byte %d" % exc.start,
        ) from None


def position(text: str, offset: int) -> tuple[int, int]:
    """(line, column), both from 1, of a character offset in ``text``."""
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


def json_syntax_error(exc: json.JSONDecodeError) -> BadInput:
    return BadInput(
        "Invalid input. Ensure that input is a valid JSON formatted string. Error: %s" % exc.msg
    ).at(exc.lineno, exc.colno)


def too_deep(exc: RecursionError) -> BadInput:
    return BadInput(
        "the input nests deeper than this Python can parse (%s); flatten it" % one_line(exc)
        if str(exc)
        else "the input nests deeper than this Python can parse; flatten it"
    )


def load_json(text: str) -> Any:
    """``json.loads`` with MLflow's message for bad syntax, and one for absurd nesting."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise json_syntax_error(exc) from None
    except RecursionError as exc:
        raise too_deep(exc) from None


def bad_json_number(text: str) -> tuple[int, int, str] | None:
    """(line, column, token) of the first NaN, Infinity or overflowing number in a JSON text."""
    for match in _JSON_TOKENS.finditer(text):
        token = match.group(1)
        if token is None and match.group(2) is not None and math.isinf(float(match.group(2))):
            token = match.group(2)
        if token is not None:
            line, column = position(text, match.start())
            return line, column, token
    return None


def _rows(source: CsvSource) -> Iterator[tuple[int, list[str], list[str]]]:
    """(line number, header, row) of each CSV row; a path is opened, a stream read from the start."""
    if isinstance(source, str):
        with open(source, newline="", encoding="utf-8-sig") as handle:
            yield from _rows(handle)
        return
    if isinstance(source, io.StringIO):
        source.seek(0)
    reader = csv.reader(source)
    header = next(reader, None)
    if header is None:
        return
    for row in reader:
        yield reader.line_num, header, row


def bad_csv_cell(source: CsvSource, types: dict[str, Any]) -> tuple[int, str, str, str] | None:
    """(line, column, value, type) of the first cell a numeric column of the signature cannot
    hold; empty cells are missing values, not errors."""
    wanted = {name: kind for name, kind in types.items() if kind in _NUMBER_TYPES}
    if not wanted:
        return None
    for line, header, row in _rows(source):
        for name, value in zip(header, row):
            kind = wanted.get(name)
            if kind is None or value.strip() == "":
                continue
            try:
                _NUMBER_TYPES[kind](value)
            except ValueError:
                return line, name, value, kind
    return None


def bad_csv_number(source: CsvSource) -> tuple[int, str, str] | None:
    """(line, column, value) of the first cell holding NaN, inf or a number too large for a float."""
    for line, header, row in _rows(source):
        for name, value in zip(header, row):
            text = value.strip()
            if not text or not (text[-1].isdigit() or text[-1] in "fFnN"):
                continue
            try:
                number = float(text)
            except ValueError:
                continue
            if not math.isfinite(number):
                return line, name, value
    return None

"""Does each named distribution import in this interpreter? Run by path in the logging interpreter
(standard library only, Python 3.8+, never imported by envbuild), so that a package installed
there but broken (a torchvision built for another torch: ``operator torchvision::nms does not
exist``) is reported by capture instead of pinned as if it worked.

Usage: ``python import_check.py OUTPUT NAME ...``; writes one JSON object to the file OUTPUT:
``{NAME: null | "error"}`` (a file, not standard output, which the packages imported may write
to).
"""

from __future__ import annotations

import importlib
import json
import sys
from importlib import metadata


def top_level(name: str) -> list[str]:
    """The top-level modules a distribution installs (``top_level.txt``, else its RECORD)."""
    try:
        dist = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return []
    text = dist.read_text("top_level.txt")
    if text:
        return sorted({line.strip() for line in text.splitlines() if line.strip()})
    found = set()
    for item in dist.files or ():
        parts = item.parts
        if not parts or parts[0].endswith((".dist-info", ".data")) or parts[0] == "..":
            continue
        if len(parts) == 1 and parts[0].endswith(".py"):
            found.add(parts[0][:-3])
        elif len(parts) > 1 and parts[-1] == "__init__.py" and len(parts) == 2:
            found.add(parts[0])
    return sorted(found)


def check(name: str) -> str | None:
    for module in top_level(name):
        if module.startswith("_") or not module.isidentifier():
            continue
        try:
            importlib.import_module(module)
        except BaseException as exc:
            first = (str(exc).strip().splitlines() or [""])[0]
            return f"import {module}: {type(exc).__name__}: {first}"[:300]
    return None


def main(output: str, names: list[str]) -> int:
    result = {name: check(name) for name in names}
    with open(output, "w", encoding="utf-8") as handle:
        json.dump(result, handle)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2:]))

"""Relocate an unpacked conda archive (``envbuild pack --kind conda``): write the folder it is in
over the prefix placeholders of the files that hold one. Shipped in the archive as
``envbuild/unpack.py`` and run with the packed interpreter alone (standard library only, Python
3.6+)::

    mkdir env && tar -xzf env.tar.gz -C env && env/bin/python env/envbuild/unpack.py

The files come from ``envbuild/prefixes.json``: for each, its path, its placeholder and how it
holds it. Text files get every occurrence replaced; binary files get conda's C-string
replacement (each string holding the placeholder is rewritten with the new path and padded with
NUL bytes to its old length; a path longer than the placeholder is refused, before any file is
changed). A ``.py`` file that changed gets its shipped bytecode compiled again (hash-based, like
the rest), so the ``.pyc`` never holds the placeholder.

Idempotent: the prefix the files now hold is recorded in ``envbuild/prefix.txt`` once every file
is rewritten; a second run in the same place changes nothing, and a run after the folder was
moved rewrites from the recorded prefix to the new one. Concurrent runs (several Python workers
on one Spark executor) wait for each other on a lock file. An interrupted run: extract again.
"""

import fcntl
import json
import os
import re
import sys

PREFIXES = "envbuild/prefixes.json"
STATE = "envbuild/prefix.txt"
LOCK = "envbuild/.unpack.lock"


SHEBANG_MAX = 127  # Linux reads 128 bytes of a script's first line (with "#!")
# conda's (and rattler's) form of a shebang too long for the kernel: the file runs as a shell
# script that executes Python on itself, and Python reads those two lines as a string
_LONG_SHEBANG = re.compile(rb"""\A#!/bin/sh\n'''exec' "([^"\n]+)"([^\n]*?) "\$0" "\$@" #'''\n""")


class RelocationError(Exception):
    pass


def short_shebang(data):
    """A script in the long-shebang form back in the ``#!PYTHON ARGS`` form."""
    found = _LONG_SHEBANG.match(data)
    if found is None:
        return data
    return b"#!" + found.group(1) + found.group(2) + b"\n" + data[found.end() :]


def long_shebang(data):
    """A Python script whose ``#!`` line is too long for the kernel, in the long form."""
    if not data.startswith(b"#!/"):
        return data
    end = data.find(b"\n")
    if end < 0 or end <= SHEBANG_MAX:
        return data
    exe, _, args = data[2:end].partition(b" ")
    if not os.path.basename(exe).startswith(b"python"):
        return data
    head = b"#!/bin/sh\n'''exec' \"" + exe + b'"' + (b" " + args if args else b"")
    return head + b' "$0" "$@" #' + b"'''\n" + data[end + 1 :]


def replace_binary(data, old, new, slot):
    """``data`` with every C string holding ``old`` rewritten to hold ``new``, the strings keeping
    their length; ``slot`` is the length of the placeholder the file was built with (the room
    each occurrence has)."""
    if len(new) > slot:
        raise RelocationError(
            "the path {!r} is {} bytes, longer than the {} the binary files have room for".format(
                new.decode("utf-8", "replace"), len(new), slot
            )
        )
    out = []
    pos = 0
    while True:
        start = data.find(old, pos)
        if start < 0:
            break
        end = data.find(b"\0", start)
        if end < 0:
            end = len(data)
        segment = data[start:end]
        count = segment.count(old)
        padding = count * (slot - len(old))
        if data[end : end + padding] != b"\0" * padding:
            raise RelocationError("a string holding the prefix is not NUL-padded as expected")
        out.append(data[pos:start])
        out.append(segment.replace(old, new) + b"\0" * (count * (slot - len(new))))
        pos = end + padding
    out.append(data[pos:])
    return b"".join(out)


def _write(path, data):
    tmp = f"{path}.envbuild-unpack.{os.getpid()}"
    with open(tmp, "wb") as handle:
        handle.write(data)
    os.chmod(tmp, os.stat(path).st_mode & 0o7777)
    os.replace(tmp, path)


def _recompile(prefix, rel):
    import importlib.util
    import py_compile

    source = os.path.join(prefix, rel)
    cached = importlib.util.cache_from_source(source)
    if not os.path.exists(cached):
        return
    kwargs = {}  # type: dict
    mode = getattr(py_compile, "PycInvalidationMode", None)
    if mode is not None:
        kwargs["invalidation_mode"] = mode.UNCHECKED_HASH
    py_compile.compile(source, cfile=cached, dfile=rel, doraise=True, **kwargs)


def relocate(prefix):
    """Rewrite ``prefix``'s files for it; returns how many changed."""
    with open(os.path.join(prefix, PREFIXES), encoding="utf-8") as handle:
        records = json.load(handle)["files"]
    try:
        with open(os.path.join(prefix, STATE), encoding="utf-8") as handle:
            current = handle.read().rstrip("\n")
    except FileNotFoundError:
        current = None
    if current == prefix:
        return 0
    new = prefix.encode("utf-8")
    for record in records:  # refused before any file changes
        room = len(record["placeholder"].encode("utf-8"))
        if record["mode"] == "binary" and len(new) > room:
            raise RelocationError(
                "the path {!r} is {} bytes, longer than the {} that {} has room for".format(
                    prefix, len(new), room, record["path"]
                )
            )
    changed = 0
    for record in records:
        rel, placeholder = record["path"], record["placeholder"].encode("utf-8")
        old = current.encode("utf-8") if current is not None else placeholder
        path = os.path.join(prefix, rel)
        with open(path, "rb") as handle:
            data = handle.read()
        if record["mode"] == "binary":
            rewritten = replace_binary(data, old, new, len(placeholder))
        else:
            rewritten = long_shebang(short_shebang(data).replace(old, new))
        if rewritten != data:
            _write(path, rewritten)
            changed += 1
            if rel.endswith(".py"):
                _recompile(prefix, rel)
    _write_state(prefix)
    return changed


def _write_state(prefix):
    path = os.path.join(prefix, STATE)
    tmp = f"{path}.{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(prefix + "\n")
    os.replace(tmp, path)


def main(argv=None):
    here = os.path.dirname(os.path.abspath(__file__))
    prefix = os.path.dirname(here)
    with open(os.path.join(prefix, LOCK), "a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            changed = relocate(prefix)
        except (RelocationError, OSError, ValueError, KeyError) as exc:
            sys.stderr.write(f"envbuild-unpack: error: {exc}\n")
            return 1
    sys.stdout.write(f"envbuild-unpack: {prefix}: {changed} files rewritten\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

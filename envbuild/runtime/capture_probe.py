"""Find out what a model really imports, inside the environment it was logged in.

Executed by path (``python capture_probe.py --model DIR [--input FILE] [--code DIR ...]``) with the
*logging* environment's interpreter by ``envbuild capture`` and the ``log_model`` hook, never
inside envbuild's own process. Like the runner it uses only the standard library, keeps Python
3.8 syntax and never imports ``envbuild``; it may import the model's libraries and mlflow, because
loading the model is the point.

What it does:

1. installs an import recorder at the front of ``sys.meta_path`` (it finds each module's spec
   with the other finders, in their order, and notes when it was first asked for: while loading
   or while predicting), and snapshots ``sys.modules``; what is in ``sys.modules`` afterwards and
   was not before is what the model imported;
2. loads the model and predicts on its input example with the runner's own functions
   (``runner.py`` loaded by path: the same backend, parsing and JSON output as
   ``envbuild predict``), so that packages imported lazily in ``predict`` are seen too, and the
   predictions are recorded byte for byte;
3. maps every module that was imported to the installed distribution whose ``RECORD`` lists the
   file really loaded (a file listed by several distributions is checked against each RECORD's
   sha256). Files no RECORD lists fall back to module names, from the same sources importlib's
   ``packages_distributions()`` uses (RECORD and ``top_level.txt``, so it works on 3.8/3.9 too)
   but indexed by full dotted name, which keeps namespace packages (``google.protobuf`` vs
   ``google.auth``) apart;
4. statically scans the model's own Python files (its ``code`` folders, and the ``*.py`` at the
   top of the model folder: models from code) for imports (AST), and maps those module names
   without importing them.

It prints one JSON document on standard output (model noise printed while loading goes to
standard error). Deciding which distributions are direct requirements, their dependency closure
and the pins is left to the host side, which has ``packaging``: this file reports facts.

Exit codes: 0 success, 2 bad input, 5 the model failed to load or predict (the JSON document is
printed in every case it can be, with ``error`` set).
"""

from __future__ import annotations

import argparse
import ast
import base64
import csv
import gc
import hashlib
import importlib.machinery
import importlib.util
import json
import os
import platform
import sys
import sysconfig
import time
import traceback
from typing import Any

PROBE_VERSION = "1"

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2
EXIT_MODEL = 5

_HERE = os.path.dirname(os.path.abspath(__file__))
_PRIVATE_PREFIX = "_envbuild_"
# Compiled-module suffixes, longest first, so that "x.cpython-311-x86_64-linux-gnu.so" -> "x".
_SUFFIXES = sorted(
    set(importlib.machinery.all_suffixes()) | {".py", ".pyc", ".pyd", ".so"}, key=len, reverse=True
)


def _norm(path: str) -> str:
    return os.path.normcase(os.path.normpath(os.path.abspath(path)))


def _real(path: str) -> str:
    return os.path.normcase(os.path.realpath(path))


class RealPaths:
    """``_real`` for many files in few folders: each folder is resolved once (``realpath`` walks
    every component of every path, the most expensive step of mapping 2,000 modules)."""

    def __init__(self) -> None:
        self.folders: dict[str, str] = {}

    def __call__(self, path: str) -> str:
        folder, name = os.path.split(path)
        if not os.path.isabs(path) or name in ("", ".", "..") or os.path.islink(path):
            return _real(path)
        real = self.folders.get(folder)
        if real is None:
            real = self.folders[folder] = _real(folder)
        return os.path.join(real, os.path.normcase(name))


def _under(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


# --------------------------------------------------------------------------------------------
# Recording imports


class ImportRecorder:
    """A meta path finder that notes, for every module found, its origin and the phase (load
    or predict) that first asked for it.

    It does the import system's own search (the other finders, in order) and returns the spec
    found, so nothing changes for the importer. Being asked is not being imported
    (``importlib.util.find_spec("x")`` probes for optional packages), so what counts as imported
    is what ``sys.modules`` holds afterwards; the record adds when each module came.
    """

    def __init__(self) -> None:
        self.found: dict[str, tuple[str | None, str]] = {}  # fullname -> (origin, phase)
        self.phase = "load"

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        for finder in list(sys.meta_path):
            if finder is self:
                continue
            find = getattr(finder, "find_spec", None)
            try:
                if find is not None:
                    spec = find(fullname, path, target)
                else:  # a legacy finder (Python < 3.12): what the import system does for it
                    loader = finder.find_module(fullname, path)  # type: ignore[attr-defined]
                    spec = importlib.util.spec_from_loader(fullname, loader) if loader else None
            except Exception:
                return None  # let the import system meet (and report) the same failure itself
            if spec is not None:
                if fullname not in self.found:
                    origin = spec.origin if spec.has_location else None
                    self.found[fullname] = (origin, self.phase)
                return spec
        return None


def _module_file(module: Any) -> str | None:
    """The file a module was loaded from, without triggering lazy modules' ``__getattr__``."""
    try:
        namespace = object.__getattribute__(module, "__dict__")
    except Exception:
        return None
    file = namespace.get("__file__")
    if isinstance(file, str):
        return file
    spec = namespace.get("__spec__")
    origin = getattr(spec, "origin", None) if spec is not None else None
    if isinstance(origin, str) and getattr(spec, "has_location", False):
        return origin
    return None


# --------------------------------------------------------------------------------------------
# The standard library


class Stdlib:
    """Is a module part of the running interpreter's standard library?"""

    def __init__(self) -> None:
        names = getattr(sys, "stdlib_module_names", None)  # Python 3.10+
        self.names = set(names) if names else None
        self.builtins = set(sys.builtin_module_names)
        paths = sysconfig.get_paths()
        self.dirs = sorted(
            {_real(paths[key]) for key in ("stdlib", "platstdlib") if paths.get(key)}, key=len
        )
        self.site_dirs = site_dirs()

    def contains(self, name: str, real: str | None) -> bool:
        """``real``: the module's file, already through ``_real`` (None when it has none)."""
        top = name.split(".")[0]
        if top in self.builtins:
            return True
        in_site = real is not None and (
            any(_under(real, d) for d in self.site_dirs)
            or any(part in ("site-packages", "dist-packages") for part in real.split(os.sep))
        )
        if self.names is not None:
            return top in self.names and not in_site
        # Python 3.8/3.9: anything under the interpreter's lib folder but not in site-packages
        if real is None:
            return False
        return any(_under(real, d) for d in self.dirs) and not in_site

    def contains_name(self, name: str) -> bool:
        """For a module that was not imported (static scan): find it without importing it."""
        top = name.split(".")[0]
        if self.names is not None or top in self.builtins:
            return self.contains(top, None)
        try:
            spec = importlib.util.find_spec(top)  # a top-level name: nothing is imported
        except Exception:
            return False
        if spec is None:
            return False
        if spec.origin in ("built-in", "frozen"):
            return True
        origin = spec.origin if spec.has_location else None
        return self.contains(top, _real(origin) if origin else None)


def site_dirs() -> list[str]:
    """Folders distributions are installed in (site-packages, user site, sys.path entries)."""
    out = set()
    paths = sysconfig.get_paths()
    for key in ("purelib", "platlib"):
        if paths.get(key):
            out.add(_real(paths[key]))
    try:
        import site

        for folder in [*site.getsitepackages(), site.getusersitepackages()]:
            out.add(_real(folder))
    except Exception:
        pass
    for entry in sys.path:
        if entry and os.path.basename(entry.rstrip(os.sep)) in ("site-packages", "dist-packages"):
            out.add(_real(entry))
    return sorted(out, key=len)


# --------------------------------------------------------------------------------------------
# Installed distributions


def _record_hash(path_entry: str) -> str | None:
    info = getattr(path_entry, "hash", None)
    if info is None or getattr(info, "mode", None) != "sha256":
        return None
    return info.value


def _file_hash(path: str, cache: dict[str, str | None]) -> str | None:
    if path not in cache:
        try:
            with open(path, "rb") as handle:
                digest = hashlib.sha256(handle.read()).digest()
            cache[path] = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
        except OSError:
            cache[path] = None
    return cache[path]


def _module_name(relative: str) -> str | None:
    """``pkg/sub/__init__.py`` -> ``pkg.sub``; ``mod.cpython-311-x86_64-linux-gnu.so`` ->
    ``mod``; None for anything that is not an importable module file."""
    parts = relative.replace("\\", "/").split("/")
    if not parts or parts[0] in ("..", "") or ".dist-info" in parts[0] or ".egg-info" in parts[0]:
        return None
    last = parts[-1]
    if last.endswith(".py"):
        stem = last[:-3]
    elif last.endswith((".so", ".pyd")):
        for suffix in _SUFFIXES:
            if last.endswith(suffix):
                stem = last[: -len(suffix)]
                break
    else:
        return None
    if "__pycache__" in parts or not stem:
        return None
    names = parts[:-1] + ([] if stem == "__init__" else [stem])
    if not names or not all(n.isidentifier() for n in names):
        return None
    return ".".join(names)


def _headers(text: str) -> dict[str, list[str]]:
    """The header fields of a core metadata file (``METADATA``, ``PKG-INFO``), lower-cased
    names -> values in order. What ``email``'s parser reads for the few fields used here, at a
    fraction of its cost (it is the slowest part of reading a hundred distributions)."""
    fields: dict[str, list[str]] = {}
    last: list[str] | None = None
    for line in text.splitlines():
        if not line:
            break  # the body (the long description) follows the first empty line
        if line[0] in " \t":
            if last:
                last[-1] += " " + line.strip()  # a folded value
            continue
        name, sep, value = line.partition(":")
        if not sep:
            last = None
            continue
        last = fields.setdefault(name.strip().lower(), [])
        last.append(value.strip())
    return fields


def _record_rows(text: str) -> list[tuple[str, str | None]]:
    """(path, sha256 in RECORD's urlsafe base64, or None) of each line of a ``RECORD`` file,
    read directly: ``Distribution.files`` builds a path object and checks every listed file
    exists, which costs more than everything else the probe does once the model is loaded."""
    rows = []
    for row in csv.reader(text.splitlines()):
        if not row or not row[0]:
            continue
        digest = row[1] if len(row) > 1 else ""
        mode, _, value = digest.partition("=")
        rows.append((row[0], value if mode == "sha256" and value else None))
    return rows


def _files(dist: Any) -> list[tuple[str, str | None]]:
    """The files a distribution lists, relative to its location, with RECORD's hashes."""
    record = _text_or_none(dist, "RECORD")
    if record is not None:
        return _record_rows(record)
    try:  # egg-info: installed-files.txt or SOURCES.txt, as importlib reads them
        files = dist.files
    except Exception:
        files = None
    return [(str(entry), _record_hash(entry)) for entry in files or ()]


class Installed:
    """Every distribution importlib.metadata sees, and which files and modules each provides."""

    def __init__(self) -> None:
        from importlib import metadata

        self.dists: list[dict[str, Any]] = []  # index -> dict (JSON-able)
        # normalized absolute path -> [(index, record hash)]
        self.by_file: dict[str, list[tuple[int, str | None]]] = {}
        self.by_module: dict[str, set[int]] = {}  # dotted module name -> set(index)
        # top-level name -> set(index), from top_level.txt / inference
        self.by_top: dict[str, set[int]] = {}
        seen = set()
        for dist in metadata.distributions():
            text = _text_or_none(dist, "METADATA")
            dist_info = text is not None
            if text is None:
                text = _text_or_none(dist, "PKG-INFO")
            try:
                if text is not None:
                    fields = _headers(text)
                else:
                    meta = dist.metadata
                    fields = {
                        key.lower(): list(meta.get_all(key) or [])
                        for key in ("Name", "Version", "Requires-Dist")
                    }
            except Exception:
                continue
            name = (fields.get("name") or [""])[0]
            if not name:
                continue
            key = name.lower().replace("_", "-").replace(".", "-")
            index = len(self.dists)
            try:
                location = str(dist.locate_file(""))
            except Exception:
                location = None
            requires: list[str] | None = fields.get("requires-dist")
            if requires is None and not dist_info:  # egg-info: requires.txt
                try:
                    requires = dist.requires
                except Exception:
                    requires = None
            info = {
                "name": name,
                "version": next(iter(fields.get("version") or ()), None),
                "requires": list(requires or []),
                "direct_url": _json_or_none(dist, "direct_url.json"),
                "installer": (_text_or_none(dist, "INSTALLER") or "").strip() or None,
                "location": location,
                "shadowed": key in seen,  # a second copy further down sys.path
            }
            seen.add(key)
            self.dists.append(info)
            base = _norm(location) if location else None
            for rel, digest in _files(dist):
                if base is not None:
                    full = os.path.normcase(os.path.normpath(os.path.join(base, rel)))
                    self.by_file.setdefault(full, []).append((index, digest))
                module = _module_name(rel)
                if module is not None:
                    self.by_module.setdefault(module, set()).add(index)
                    self.by_top.setdefault(module.split(".")[0], set()).add(index)
            top_level = _text_or_none(dist, "top_level.txt")
            for line in (top_level or "").splitlines():
                if line.strip():
                    self.by_top.setdefault(line.strip().replace("/", "."), set()).add(index)

    def owners_of_file(self, file: str, hashes: dict[str, str | None]) -> list[list[Any]]:
        """[(dist index, hash matches: True/False/None)] of the distributions listing ``file``."""
        candidates = self.by_file.get(_norm(file))
        if candidates is None:
            real = _real(file)
            candidates = self.by_file.get(real, [])
        out = []
        for index, expected in candidates:
            match = None
            if len(candidates) > 1 and expected is not None:
                match = _file_hash(file, hashes) == expected
            out.append([index, match])
        return out

    def owners_of_name(self, dotted: str) -> list[int]:
        """Distributions providing module ``dotted`` (longest known prefix), for names whose file
        no RECORD lists, and for static imports (which are never imported here)."""
        parts = dotted.split(".")
        for size in range(len(parts), 0, -1):
            found = self.by_module.get(".".join(parts[:size]))
            if found:
                return sorted(found)
        return sorted(self.by_top.get(parts[0], ()))


def _text_or_none(dist: Any, name: str) -> str | None:
    try:
        return dist.read_text(name)
    except Exception:
        return None


def _json_or_none(dist: Any, name: str) -> Any:
    text = _text_or_none(dist, name)
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def marker_environment() -> dict[str, str]:
    """PEP 508 marker values of this interpreter (what ``packaging.markers`` would compute)."""
    info = sys.implementation.version
    version = "%d.%d.%d" % (info.major, info.minor, info.micro)
    if info.releaselevel != "final":
        version += info.releaselevel[0] + str(info.serial)
    return {
        "implementation_name": sys.implementation.name,
        "implementation_version": version,
        "os_name": os.name,
        "platform_machine": platform.machine(),
        "platform_release": platform.release(),
        "platform_system": platform.system(),
        "platform_version": platform.version(),
        "python_full_version": platform.python_version(),
        "platform_python_implementation": platform.python_implementation(),
        "python_version": ".".join(platform.python_version_tuple()[:2]),
        "sys_platform": sys.platform,
    }


# --------------------------------------------------------------------------------------------
# Static scan of the model's own code


def _catches_import_error(handler: ast.ExceptHandler) -> bool:
    names = []
    kind = handler.type
    if kind is None:
        return True
    for node in kind.elts if isinstance(kind, ast.Tuple) else [kind]:
        if isinstance(node, ast.Name):
            names.append(node.id)
        elif isinstance(node, ast.Attribute):
            names.append(node.attr)
    return any(n in ("ImportError", "ModuleNotFoundError", "Exception") for n in names)


class _ImportVisitor(ast.NodeVisitor):
    def __init__(self) -> None:
        self.found: list[tuple[str, int, bool]] = []  # (module, line, optional)
        self._optional = 0

    def visit_Try(self, node: ast.Try) -> None:
        optional = any(_catches_import_error(h) for h in node.handlers)
        self._optional += optional
        for statement in node.body:
            self.visit(statement)
        self._optional -= optional
        children: list[ast.AST] = [*node.handlers, *node.orelse, *node.finalbody]
        for child in children:
            self.visit(child)

    visit_TryStar = visit_Try  # type: ignore[assignment, unused-ignore]

    def visit_If(self, node: ast.If) -> None:
        test = node.test
        type_checking = (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
            isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
        )
        self._optional += type_checking
        for child in node.body:
            self.visit(child)
        self._optional -= type_checking
        for child in node.orelse:
            self.visit(child)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.found.append((alias.name, node.lineno, bool(self._optional)))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level == 0 and node.module:
            self.found.append((node.module, node.lineno, bool(self._optional)))


def python_files(model_dir: str, code_dirs: list[str]) -> list[str]:
    """The model's own Python files: everything under its code folders, and the ``*.py`` at the
    top of the model folder (models from code). Data and artifact folders are not code."""
    candidates = []
    for code in code_dirs:
        root = os.path.join(model_dir, code)
        if os.path.isfile(root):
            candidates.append(root)
            continue
        for folder, subdirs, files in os.walk(root):
            subdirs[:] = sorted(d for d in subdirs if d != "__pycache__")
            candidates += [os.path.join(folder, f) for f in sorted(files) if f.endswith(".py")]
    top = [os.path.join(model_dir, f) for f in sorted(os.listdir(model_dir)) if f.endswith(".py")]
    seen = set()
    out = []
    for path in candidates + [p for p in top if os.path.isfile(p)]:
        key = _real(path)
        if key not in seen:
            seen.add(key)
            out.append(path)
    return out


def local_module_names(model_dir: str, code_dirs: list[str]) -> set[str]:
    """Top-level names the model's own code provides (its code folders are put on sys.path)."""
    names = set()
    for code in code_dirs:
        folder = os.path.join(model_dir, code)
        if os.path.isfile(folder):
            names.add(os.path.splitext(os.path.basename(folder))[0])
            continue
        if not os.path.isdir(folder):
            continue
        for entry in os.listdir(folder):
            path = os.path.join(folder, entry)
            if entry.endswith(".py"):
                names.add(entry[:-3])
            elif os.path.isdir(path) and entry.isidentifier():
                names.add(entry)
    for entry in os.listdir(model_dir):
        if entry.endswith(".py"):
            names.add(entry[:-3])
    return names


def static_imports(
    model_dir: str, code_dirs: list[str]
) -> tuple[list[tuple[str, str, int, bool]], list[str]]:
    """[(module, relative file, line, optional)] of absolute imports in the model's code, and
    files that could not be parsed."""
    imports = []
    errors = []
    for path in python_files(model_dir, code_dirs):
        rel = os.path.relpath(path, model_dir)
        try:
            with open(path, "rb") as handle:
                tree = ast.parse(handle.read(), filename=rel)
        except (SyntaxError, ValueError, OSError) as exc:
            errors.append("%s: cannot parse: %s" % (rel, _one_line(exc)))
            continue
        visitor = _ImportVisitor()
        visitor.visit(tree)
        for module, line, optional in visitor.found:
            imports.append((module, rel, line, optional))
    return imports, errors


# --------------------------------------------------------------------------------------------
# The run


def keep_bytecode_out_of(folder: str) -> None:
    """Write no ``.pyc`` under ``folder`` (the model's: its code is imported from there, and it
    may be read-only or about to be logged), and write them as usual everywhere else.

    Python's own switch (``PYTHONDONTWRITEBYTECODE``) is all or nothing: with it, every capture
    in an environment installed without bytecode (uv's default) compiles mlflow and its
    dependencies from source again, which doubles the load. Bytecode is written (or not, when
    the user set the variable) as it would be by the user's own ``import`` in that environment.
    """
    folders = {_norm(folder), _real(folder)}
    loader = importlib.machinery.SourceFileLoader
    write = loader.set_data

    def set_data(self: Any, path: str, data: bytes, *, _mode: int = 0o666) -> None:
        target = _norm(path)
        if any(_under(target, f) for f in folders):
            return
        write(self, path, data, _mode=_mode)

    loader.set_data = set_data  # type: ignore[method-assign, assignment]


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


class Runtime:
    """The runner's modules (backends, errors, inputs, output), loaded by path through
    ``runner.py``'s private package, as ``envbuild predict`` runs them."""

    def __init__(self) -> None:
        key = _PRIVATE_PREFIX + "runtime_runner"
        runner = sys.modules.get(key)
        if runner is None:
            saved = sys.dont_write_bytecode
            sys.dont_write_bytecode = True  # nothing is written into the runtime folder
            try:
                path = os.path.join(_HERE, "runner.py")
                spec = importlib.util.spec_from_file_location(key, path)
                assert spec is not None and spec.loader is not None
                runner = importlib.util.module_from_spec(spec)
                sys.modules[key] = runner
                spec.loader.exec_module(runner)
            finally:
                sys.dont_write_bytecode = saved
        self.backends: Any = runner.runtime_module("backends")
        self.errors: Any = runner.runtime_module("errors")
        self.inputs: Any = runner.runtime_module("inputs")
        self.output: Any = runner.runtime_module("output")


def run_model(
    runtime: Runtime,
    model_dir: str,
    input_path: str | None,
    recorder: ImportRecorder,
    timings: dict[str, float],
) -> tuple[str, str | None]:
    """Load the model and predict on ``input_path``; returns (backend name, output text)."""
    started = time.monotonic()
    backend = runtime.backends.load_backend(model_dir)
    timings["load"] = round(time.monotonic() - started, 3)
    name = "mlflow" if isinstance(backend, runtime.backends.MlflowBackend) else "plain"
    if input_path is None:
        return name, None
    recorder.phase = "predict"
    started = time.monotonic()
    with open(input_path, "rb") as handle:
        text = runtime.inputs.decode_json(handle.read())
    data, params, unwrapped = backend.parse_json(text)
    raw = backend.predict(data, params)
    output = backend.to_json(raw, unwrapped)
    timings["predict"] = round(time.monotonic() - started, 3)
    return name, output


def collect_modules(
    before: set[str],
    recorder: ImportRecorder,
    stdlib: Stdlib,
    model_dir: str,
    installed: Installed,
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Every module imported since ``before``, classified and mapped to distributions."""
    model_real = _real(model_dir)
    phase_of = {name: phase for name, (_, phase) in recorder.found.items()}
    files = {}
    for name, module in list(sys.modules.items()):
        if name in before or module is None:
            continue
        try:
            own = object.__getattribute__(module, "__dict__").get("__name__")
        except Exception:
            own = None
        if isinstance(own, str) and own != name and own in sys.modules:
            continue  # an alias (requests.packages.urllib3 is urllib3): counted under its name
        files[name] = _module_file(module)
    hashes: dict[str, str | None] = {}
    modules: list[dict[str, Any]] = []
    counts = {"stdlib": 0, "model": 0, "runtime": 0, "namespace": 0}
    here = _real(_HERE)
    real_path = RealPaths()
    for name in sorted(files):
        file = files[name]
        real = real_path(file) if file is not None else None
        top = name.split(".")[0]
        if name == "__main__" or top.startswith(_PRIVATE_PREFIX) or top == "envbuild":
            counts["runtime"] += 1
            continue
        if real is not None and _under(real, here):
            counts["runtime"] += 1
            continue
        if stdlib.contains(name, real):
            counts["stdlib"] += 1
            continue
        if file is None:
            counts["namespace"] += 1  # namespace packages, six.moves-style virtual modules
            continue
        if real is not None and _under(real, model_real):
            counts["model"] += 1
            modules.append({"name": name, "file": file, "kind": "model", "owners": []})
            continue
        owners = installed.owners_of_file(file, hashes)
        kind = "record"
        if not owners:
            owners = [[index, None] for index in installed.owners_of_name(name)]
            kind = "name" if owners else "unmapped"
        modules.append(
            {
                "name": name,
                "file": file,
                "kind": kind,
                "phase": phase_of.get(name, "load"),
                "owners": owners,
            }
        )
    return modules, counts


def probe(args: argparse.Namespace) -> tuple[int, dict[str, Any]]:
    timings: dict[str, float] = {}
    started = time.monotonic()
    model_dir = os.path.abspath(args.model)
    runtime = Runtime()
    stdlib = Stdlib()
    recorder = ImportRecorder()
    sys.meta_path.insert(0, recorder)
    before = set(sys.modules)
    error = None
    backend = None
    output = None
    exit_code = EXIT_OK
    try:
        backend, output = run_model(runtime, model_dir, args.input, recorder, timings)
    except runtime.errors.RunnerError as exc:
        error = {"kind": "input" if isinstance(exc, runtime.errors.BadInput) else "model"}
        error["message"] = _one_line(exc)
        exit_code = exc.exit_code
    except Exception as exc:  # a model raising something the runner did not wrap
        error = {"kind": "model", "message": runtime.errors.describe_exception(exc)}
        exit_code = EXIT_MODEL
    finally:
        if recorder in sys.meta_path:
            sys.meta_path.remove(recorder)
    # What the model loaded stays alive: keep the collector from walking it again and again
    # while the mapping below makes its many small objects.
    gc.freeze()
    mapping_started = time.monotonic()
    installed = Installed()
    modules, counts = collect_modules(before, recorder, stdlib, model_dir, installed)
    local_names = local_module_names(model_dir, args.code)
    imports, parse_errors = static_imports(model_dir, args.code)
    static = []
    for module, rel, line, optional in imports:
        top = module.split(".")[0]
        if top in local_names or top == "__future__" or stdlib.contains_name(module):
            continue
        static.append(
            {
                "module": module,
                "file": rel,
                "line": line,
                "optional": optional,
                "owners": installed.owners_of_name(module),
            }
        )
    timings["map"] = round(time.monotonic() - mapping_started, 3)
    timings["total"] = round(time.monotonic() - started, 3)
    return exit_code, {
        "probe_version": PROBE_VERSION,
        "python": {
            "version": platform.python_version(),
            "implementation": platform.python_implementation(),
            "executable": sys.executable,
            "prefix": sys.prefix,
            "markers": marker_environment(),
        },
        "model": model_dir,
        "input": args.input,
        "backend": backend,
        "error": error,
        "expected_output": output,
        "modules": modules,
        "excluded": counts,
        "static_imports": static,
        "parse_errors": parse_errors,
        "distributions": installed.dists,
        "timings": timings,
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="capture_probe.py")
    parser.add_argument("--model", required=True, help="the model folder (holds MLmodel)")
    parser.add_argument("--input", default=None, help="a JSON scoring request to predict on")
    parser.add_argument(
        "--code", action="append", default=[], help="the model's code folder(s), relative"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    # Run by path, this folder is sys.path[0]: take it off, as the runner does.
    if sys.path and os.path.abspath(sys.path[0] or os.curdir) == _HERE:
        del sys.path[0]
    args = build_parser().parse_args(argv)
    keep_bytecode_out_of(os.path.abspath(args.model))
    runtime = Runtime()
    stdout_fd = runtime.output.claim_stdout()
    try:
        code, document = probe(args)
    except Exception as exc:
        if os.environ.get("ENVBUILD_DEBUG") == "1":
            traceback.print_exc()
        sys.stderr.write(
            "error: capture probe failed: %s\n" % runtime.errors.describe_exception(exc)
        )
        return EXIT_FAILURE
    with open(stdout_fd, "w", encoding="utf-8", closefd=False) as out:
        json.dump(document, out)
        out.write("\n")
    if document.get("error"):
        sys.stderr.write("error: %s\n" % document["error"]["message"])
    sys.stderr.flush()
    return code


if __name__ == "__main__":
    sys.exit(main())

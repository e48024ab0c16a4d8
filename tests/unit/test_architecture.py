"""The package's one-home rules, checked on its source: no import circle, one subprocess home,
one printer, no kind-name comparisons outside the registry, a runtime that never imports envbuild.

These walk the source with ``ast`` (imports inside functions count too, ``TYPE_CHECKING`` blocks
do not: they are for the type checker only), so a rule broken anywhere fails here with the
module and line.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "envbuild"
RUNTIME = PACKAGE / "runtime"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def sources(*, runtime: bool = False) -> Iterator[tuple[str, Path, ast.Module]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        if (RUNTIME in path.parents) != runtime:
            continue
        yield module_name(path), path, ast.parse(path.read_text(encoding="utf-8"))


def _type_checking_nodes(tree: ast.Module) -> set[int]:
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                skipped.update(id(n) for n in ast.walk(child))
    return skipped


def imports(name: str, tree: ast.Module) -> Iterator[tuple[str, int]]:
    """(imported envbuild module, line) for every import outside TYPE_CHECKING blocks."""
    skipped = _type_checking_nodes(tree)
    package = (
        name
        if (PACKAGE.parent / name.replace(".", "/") / "__init__.py").exists()
        else (name.rpartition(".")[0])
    )
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, *([node.module] if node.module else [])])
            yield base, node.lineno
            for alias in node.names:  # `from envbuild.envs import docker` imports a module
                yield f"{base}.{alias.name}", node.lineno


def test_no_import_circle() -> None:
    modules = {name: tree for name, _, tree in sources()}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, tree in modules.items():
        for target, _line in imports(name, tree):
            if target in modules and target != name and not name.startswith(target + "."):
                graph[name].add(target)
    # a package importing its own submodules (re-exports) is not a circle with them
    for name in graph:
        graph[name] = {t for t in graph[name] if not t.startswith(name + ".")}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not cycles, "import circles:\n" + "\n".join(" -> ".join(c) for c in cycles[:10])


def test_subprocesses_only_in_proc() -> None:
    found = [
        f"{path.relative_to(PACKAGE)}:{line}"
        for name, path, tree in sources()
        for target, line in imports(name, tree)
        if target == "subprocess" and name != "envbuild.proc"
    ]
    assert not found, found


def test_only_the_cli_prints() -> None:
    found = []
    for name, path, tree in sources():
        # envbuild.pack.unpack is a script shipped inside conda archives and run there with the
        # packed Python (its main() reports to the terminal); envbuild imports only its functions
        if name.startswith("envbuild.cli") or name == "envbuild.pack.unpack":
            continue
        for node in ast.walk(tree):
            text = ast.unparse(node) if isinstance(node, ast.Call) else ""
            if isinstance(node, ast.Call) and (
                (isinstance(node.func, ast.Name) and node.func.id == "print")
                or text.startswith(("sys.stdout.write", "sys.stderr.write", "os.write("))
            ):
                found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: {text[:60]}")
    assert not found, found


def test_kind_names_are_compared_only_in_the_registry() -> None:
    from envbuild.envs.registry import KINDS

    found = []
    for name, path, tree in sources():
        if name == "envbuild.envs.registry":
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Compare):
                values = [node.left, *node.comparators]
                names = {v.value for v in values if isinstance(v, ast.Constant)}
                subjects = " ".join(ast.unparse(v) for v in values)
                if names & set(KINDS) and "kind" in subjects:
                    found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: {ast.unparse(node)}")
    assert not found, found


def test_the_runtime_never_imports_envbuild() -> None:
    found = [
        f"{path.relative_to(PACKAGE)}:{line}: {target}"
        for name, path, tree in sources(runtime=True)
        for target, line in imports(name, tree)
        # relative imports of its own siblings resolve to envbuild.runtime.*: those are fine
        if target.split(".")[0] == "envbuild" and not target.startswith("envbuild.runtime")
    ]
    assert not found, found

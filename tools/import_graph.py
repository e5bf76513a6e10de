"""The import graph of seqkit's own modules, imports inside functions included.

    python tools/import_graph.py          # cycles, then every import inside a function

Prints the import cycles between seqkit modules (strongly connected components of the graph
whose edges are ``import``/``from ... import`` statements anywhere in a module, function bodies
included) and the imports of seqkit modules made inside functions, each with the comment that
says why (on its line or the line above). ``tests/test_imports.py`` holds the limits.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "seqkit"


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, dotted
    target: str  # the seqkit module imported, dotted
    line: int
    in_function: bool
    comment: str  # the comment on the import's line or the line above ("" if none)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def known_modules() -> set[str]:
    return {module_name(p) for p in PACKAGE.rglob("*.py")}


def _targets(node: ast.Import | ast.ImportFrom, here: str, is_package: bool, modules: set[str]) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name in modules]
    base = node.module or ""
    if node.level:  # relative: resolve against this module's package
        package = here.split(".") if is_package else here.split(".")[:-1]
        package = package[: len(package) - node.level + 1]
        base = ".".join([*package, base] if base else package)
    found = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in modules]  # submodules
    if base in modules and len(found) < len(node.names):
        found.append(base)
    return found


def _comment(lines: list[str], line: int) -> str:
    for text in (lines[line - 1], lines[line - 2] if line >= 2 else ""):
        if "#" in text:
            return text.split("#", 1)[1].strip()
    return ""


def imports() -> list[Import]:
    modules, found = known_modules(), []
    for path in sorted(PACKAGE.rglob("*.py")):
        here, text = module_name(path), path.read_text(encoding="utf-8")
        lines = text.splitlines()
        tree = ast.parse(text)
        in_function: set[int] = set()
        for fn in ast.walk(tree):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                in_function |= {id(n) for n in ast.walk(fn) if isinstance(n, (ast.Import, ast.ImportFrom))}
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            for target in _targets(node, here, path.name == "__init__.py", modules):
                if target != here:
                    found.append(Import(here, target, node.lineno, id(node) in in_function,
                                        _comment(lines, node.lineno)))
    return found


def cycles(edges: list[Import]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm)."""
    graph: dict[str, set[str]] = {}
    for e in edges:
        graph.setdefault(e.module, set()).add(e.target)
        graph.setdefault(e.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def main() -> None:
    found = imports()
    loops = cycles(found)
    print(f"import cycles: {len(loops)}")
    for loop in loops:
        print("  " + " <-> ".join(loop))
    inside = [i for i in found if i.in_function]
    print(f"imports of seqkit modules inside functions: {len(inside)}")
    for i in inside:
        print(f"  {i.module}:{i.line} -> {i.target}  # {i.comment or '(no comment)'}")


if __name__ == "__main__":
    main()

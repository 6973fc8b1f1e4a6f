"""No import cycles among the modules of `runtime/` and `imagetool/`.

The graph is read with `ast`, not by importing anything: an edge A -> B for every
`import B` / `from B import x` (relative imports resolved; `from P import m` names the module
P.m when m is a module) that runs when A is imported. Excluded on purpose:

- lazy imports inside functions and methods (they run later, after both modules are
  initialised; that is how a heavy dependency is deferred; test_no_cycles_even_lazily
  counts them too, so a cycle cannot hide there either), and
- imports under `if TYPE_CHECKING:` (they never run).

Importing P.m also initialises the package P; such parent-package edges are not counted, so
a package's `__init__` may re-export its own submodules. A cycle is reported as the modules of
one strongly connected component.
"""

from __future__ import annotations

import ast
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("runtime", "imagetool")


def modules() -> dict[str, str]:
    """Dotted module name -> file path for every .py file of PACKAGES."""
    out: dict[str, str] = {}
    for pkg in PACKAGES:
        for dirpath, dirnames, filenames in os.walk(os.path.join(ROOT, pkg)):
            dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
            for f in filenames:
                if not f.endswith(".py"):
                    continue
                rel = os.path.relpath(os.path.join(dirpath, f), ROOT)[:-3].split(os.sep)
                if rel[-1] == "__init__":
                    rel = rel[:-1]
                out[".".join(rel)] = os.path.join(dirpath, f)
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _top_level_imports(tree: ast.Module, lazy: bool = False
                       ) -> list[ast.Import | ast.ImportFrom]:
    """Import statements that run at import time: module level, also inside if/try/with
    (with `lazy`, every import statement but TYPE_CHECKING ones, functions' included)."""
    found: list[ast.Import | ast.ImportFrom] = []
    stack: list[ast.stmt] = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        elif isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                stack.extend(node.body)
            stack.extend(node.orelse)
        elif isinstance(node, (ast.Try, ast.With)):
            stack.extend(node.body)
            for h in getattr(node, "handlers", []):
                stack.extend(h.body)
            stack.extend(getattr(node, "orelse", []))
            stack.extend(getattr(node, "finalbody", []))
        elif isinstance(node, ast.ClassDef):
            stack.extend(node.body)  # a class body runs at import time too
        elif lazy and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            stack.extend(n for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom)))
    return found


def graph(lazy: bool = False) -> dict[str, set[str]]:
    """Module -> the modules of PACKAGES it imports at import time (with `lazy`, also in
    functions)."""
    mods = modules()
    edges: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        is_pkg = path.endswith("__init__.py")
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), path)
        for node in _top_level_imports(tree, lazy):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                base = node.module or ""
                if node.level:
                    parts = name.split(".")
                    keep = len(parts) - node.level + (1 if is_pkg else 0)
                    base = ".".join(parts[:keep] + ([base] if base else []))
                for a in node.names:
                    sub = f"{base}.{a.name}"
                    targets.append(sub if sub in mods else base)
            for t in targets:
                while t and t not in mods:  # `import a.b.c` of a name inside a module
                    t = t.rpartition(".")[0]
                if t and t != name:
                    edges[name].add(t)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, it = work[-1]
            nxt = next(it, None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(edges[nxt]))))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    comp.append(m)
                    if m == node:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_the_checker_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_sees_relative_and_absolute_imports():
    edges = graph()
    assert "imagetool.builder.dockerfile.lexer" in edges["imagetool.builder.dockerfile.parser"]
    assert "runtime.signals" in edges["imagetool.builder.dockerfile.values"]


def test_no_import_cycles():
    found = cycles(graph())
    if found:
        pytest.fail("import cycles (top-level imports; lazy ones excluded):\n" +
                    "\n".join("  " + " <-> ".join(c) for c in found))


def test_the_lazy_graph_sees_imports_inside_functions():
    # runtime/cgroups/manager.py imports its version modules inside new_manager/load_manager
    assert "runtime.cgroups.v2" in graph(lazy=True)["runtime.cgroups.manager"]
    assert "runtime.cgroups.v2" not in graph()["runtime.cgroups.manager"]


def test_no_cycles_even_lazily():
    """Not even a deferred cycle: counting the imports inside functions too, the modules
    still form layers (issue 18 broke the last ones: cgroups' manager <-> versions, run's
    network <-> usernet, lifecycle <-> monitor <-> restart, cli <-> run's verbs)."""
    found = cycles(graph(lazy=True))
    if found:
        pytest.fail("import cycles (lazy imports inside functions included):\n" +
                    "\n".join("  " + " <-> ".join(c) for c in found))


if __name__ == "__main__":
    # `python tests/test_import_graph.py [--lazy]`: list the cycles (--lazy: counting imports
    # inside functions too, the cycles deferred rather than removed)
    for c in cycles(graph(lazy="--lazy" in sys.argv)):
        print(" <-> ".join(c))

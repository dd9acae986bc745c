"""No import cycles inside the package (static: the source is parsed with `ast`, nothing is imported).

What counts as an import of module A by module B: every `import` / `from ... import` statement in B's
source, at module level AND inside functions or methods (a function-level import only delays the
cycle to the first call; it still means A and B cannot be understood, tested or moved apart), except
those under `if TYPE_CHECKING:` (never executed). `importlib.import_module(...)` calls are not seen.

How names resolve: the modules are the .py files under the folders setup.py's PACKAGE_DIR maps
(`keras_ebnn/`, `exporters/` as keras_ebnn.exporters, ...). `from P import N` is an import of P.N
when that is a module, else of P; `import P.Q` is an import of P.Q. Importing P.Q also runs the
`__init__` of P: that counts too, unless P is a package of the importing module itself (its own
package is already running). Imports of anything outside the package (numpy, tensorflow) are ignored.
"""
import ast
from pathlib import Path

import pytest

from helpers.venvs import ROOT, package_dirs


def modules(dirs):
    """{module name: (path, is_package)} of every .py file under the mapped folders."""
    found = {}
    for pkg, folder in dirs.items():
        for path in sorted(Path(folder).rglob("*.py")):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            is_pkg = parts[-1] == "__init__"
            if is_pkg:
                parts.pop()
            name = ".".join([pkg] + parts)
            if name in found and found[name][0] != path:
                continue  # a folder mapped twice (a sub-package's own mapping wins only if first)
            found[name] = (path, is_pkg)
    return found


def _type_checking_bodies(tree):
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            test = node.test
            name = test.id if isinstance(test, ast.Name) else getattr(test, "attr", None)
            if name == "TYPE_CHECKING":
                for sub in node.body:
                    skip.update(id(n) for n in ast.walk(sub))
    return skip


def imports(name, path, is_pkg, known):
    """[(imported module, line)] of one module (see the module docstring for the rules)."""
    tree = ast.parse(Path(path).read_text(encoding="utf-8"), filename=str(path))
    skip = _type_checking_bodies(tree)
    package = name if is_pkg else name.rpartition(".")[0]
    own = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 2)}
    found = []

    def add(target, line):
        parts = target.split(".")
        for i in range(1, len(parts)):  # the parent packages' __init__ run first
            parent = ".".join(parts[:i])
            if parent in known and parent not in own:
                found.append((parent, line))
        if target in known:
            found.append((target, line))

    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                if node.level > 1:
                    base = base[:-(node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module
            for alias in node.names:
                sub = f"{mod}.{alias.name}"
                add(sub if sub in known else mod, node.lineno)
    return [(t, line) for t, line in found if t != name]


def import_graph(dirs):
    """{module: {imported module: first line}} over the package's modules."""
    mods = modules(dirs)
    graph = {}
    for name, (path, is_pkg) in mods.items():
        edges = graph.setdefault(name, {})
        for target, line in imports(name, path, is_pkg, mods):
            edges.setdefault(target, line)
    return graph, mods


def cycles(graph):
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def describe(comp, graph, mods):
    lines = []
    for a in comp:
        for b, line in sorted(graph[a].items()):
            if b in comp:
                lines.append(f"  {a} -> {b}   ({mods[a][0].relative_to(ROOT)}:{line})")
    return "\n".join(lines)


def test_package_has_no_import_cycles():
    graph, mods = import_graph(package_dirs())
    assert "keras_ebnn.exporters.c" in graph and "keras_ebnn.frontdoor.exporting" in graph  # the mapping was read
    found = cycles(graph)
    assert not found, "import cycles (module-level and function-level imports count):\n" + "\n\n".join(
        describe(c, graph, mods) for c in found)


def _write(root, files):
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)


@pytest.mark.parametrize("a_text, cyclic", [
    ("from . import b\n", True),                          # module level
    ("def f():\n    from .b import g\n", True),           # function level counts too
    ("import pkg.b\n", True),                             # absolute
    ("from pkg.sub import c\n", True),                    # via a sub-package module (c imports a)
    ("if TYPE_CHECKING:\n    from . import b\n", False),  # never executed
    ("import numpy\n", False),
])
def test_checker_finds_cycles(tmp_path, a_text, cyclic):
    """The checker on a hand-made package: a imports (b | sub.c) as given, b and sub.c import a."""
    _write(tmp_path, {"pkg/__init__.py": "", "pkg/a.py": a_text, "pkg/b.py": "from .a import x\n",
                      "pkg/sub/__init__.py": "", "pkg/sub/c.py": "from ..a import x\n",
                      "other/d.py": "from pkg import a\n"})
    graph, _ = import_graph({"pkg": tmp_path / "pkg"})
    assert ("pkg.b" in graph["pkg.a"] or "pkg.sub.c" in graph["pkg.a"]) == cyclic
    assert bool(cycles(graph)) == cyclic


def test_checker_parent_package_init_counts(tmp_path):
    """Importing pkg.sub.c from pkg.a runs pkg/sub/__init__.py: an __init__ that imports pkg.a closes a cycle."""
    _write(tmp_path, {"pkg/__init__.py": "", "pkg/a.py": "from .sub.c import y\n",
                      "pkg/sub/__init__.py": "from ..a import x\n", "pkg/sub/c.py": "y = 1\n"})
    graph, _ = import_graph({"pkg": tmp_path / "pkg"})
    assert cycles(graph) == [["pkg.a", "pkg.sub"]]

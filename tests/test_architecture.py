"""The layout's rules, checked on the source: no import cycle between s3ft's modules (imports
inside functions count too) and no module using another module's underscore-private names."""
from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, ast.Module]:
    return {module_name(p): ast.parse(p.read_text(encoding="utf-8"), str(p)) for p in sorted((SRC / "s3ft").rglob("*.py"))}


def imports(tree: ast.Module, known: set[str]) -> list[tuple[str, str | None, int]]:
    """(module imported, name taken from it or None, line) for every import of an s3ft module,
    at any depth. `from pkg import mod` counts as an import of pkg.mod when that is a module."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, None, node.lineno) for a in node.names if a.name.split(".")[0] == "s3ft"]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "s3ft":
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                out.append((sub, None, node.lineno) if sub in known else (node.module, a.name, node.lineno))
    return out


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state and (c := visit(n)):
                return c
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (c := visit(m)):
            return c
    return None


def private_uses(name: str, tree: ast.Module, known: set[str]) -> list[str]:
    """Underscore names of other s3ft modules that `name` imports or reads as module attributes."""
    found = []
    aliases: dict[str, str] = {}  # local name -> s3ft module
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "s3ft":
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                if sub in known:
                    aliases[a.asname or a.name] = sub
                elif a.name.startswith("_") and not a.name.startswith("__") and node.module != name:
                    found.append(f"{name} line {node.lineno}: from {node.module} import {a.name}")
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name in known and a.asname:
                    aliases[a.asname] = a.name
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                and node.attr.startswith("_") and not node.attr.startswith("__") and aliases[node.value.id] != name):
            found.append(f"{name} line {node.lineno}: {aliases[node.value.id]}.{node.attr}")
    return found


def private_attributes(mods: dict[str, ast.Module]) -> dict[str, str]:
    """Underscore attributes s3ft's classes set on themselves (`self._x = ...`, dataclass fields
    `_x: T`) -> the module that defines them."""
    out = {}
    for m, tree in mods.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self" \
                    and isinstance(node.ctx, ast.Store) and node.attr.startswith("_") and not node.attr.startswith("__"):
                out[node.attr] = m
            elif isinstance(node, ast.ClassDef):
                for stmt in node.body:
                    if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.target.id.startswith("_") \
                            and not stmt.target.id.startswith("__"):
                        out[stmt.target.id] = m
    return out


def foreign_private_attributes(name: str, tree: ast.Module, private: dict[str, str]) -> list[str]:
    """Reads or writes of another object's private attribute (`session._generators`) - an
    s3ft class's underscore attribute touched from outside the object."""
    return [f"{name} line {n.lineno}: {ast.unparse(n)}" for n in ast.walk(tree)
            if isinstance(n, ast.Attribute) and n.attr in private
            and not (isinstance(n.value, ast.Name) and n.value.id in ("self", "cls"))]


def test_no_import_cycle():
    mods = modules()
    known = set(mods)
    graph = {m: {target for target, _, _ in imports(tree, known) if target in known and target != m} for m, tree in mods.items()}
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_no_cross_module_private_names():
    mods = modules()
    known = set(mods)
    found = [f for m, tree in mods.items() for f in private_uses(m, tree, known)]
    assert not found, "\n".join(found)


def test_no_object_reads_another_objects_private_attributes():
    mods = modules()
    private = private_attributes(mods)
    found = [f for m, tree in mods.items() for f in foreign_private_attributes(m, tree, private)]
    assert not found, "\n".join(found)


def test_the_checks_see_what_they_look_for():
    """The checkers flag a cycle and a private name when there is one."""
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    tree = ast.parse("def f():\n    from s3ft.pipeline import _hidden\n    from s3ft import runs\n    runs._remove(1)\n")
    known = {"s3ft.pipeline", "s3ft.runs", "s3ft.x"}
    assert private_uses("s3ft.x", tree, known) == ["s3ft.x line 2: from s3ft.pipeline import _hidden",
                                                   "s3ft.x line 4: s3ft.runs._remove"]
    assert ("s3ft.runs", None, 3) in imports(tree, known)
    cls = ast.parse("class Pool:\n    def __init__(self):\n        self._models = {}\n")
    private = private_attributes({"s3ft.pool": cls})
    assert private == {"_models": "s3ft.pool"}
    use = ast.parse("def f(a, b):\n    a._models = b._models\n")
    assert foreign_private_attributes("s3ft.y", use, private) == ["s3ft.y line 2: a._models", "s3ft.y line 2: b._models"]

"""The import graph: no loops, each problem folder self-contained, the DDPM core below Lab 6."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("p1", "p2", "p3")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path):
    """Project modules imported by one file (module level and inside functions)."""
    package = module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" else module_name(
        path)
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
    return {name for name in found if name.split(".")[0] in PACKAGES}


def graph():
    modules = {module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}

    def resolve(name):  # "p1.iclevr" names the package's __init__
        while name and name not in modules:
            name = name.rsplit(".", 1)[0] if "." in name else ""
        return name

    return {name: {resolve(i) for i in imports_of(path)} - {"", name}
            for name, path in modules.items()}


def test_no_import_loops():
    edges, state, loops = graph(), {}, []

    def visit(node, trail):
        state[node] = "open"
        for nxt in sorted(edges[node]):
            if state.get(nxt) == "open":
                loops.append(trail[trail.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert loops == []


def test_problem_folders_import_nothing_from_each_other():
    for name, targets in graph().items():
        assert {t.split(".")[0] for t in targets} <= {name.split(".")[0]}, (name, targets)


def test_the_ddpm_core_does_not_import_the_lab():
    for name, targets in graph().items():
        if name.startswith("p1.") and not name.startswith("p1.iclevr"):
            assert not [t for t in targets if t.startswith("p1.iclevr")], (name, targets)

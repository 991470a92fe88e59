"""The project's shape: the library's imports run downward (no cycle, nothing from the
command line), and the benchmark summary is what its JSON records say."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIBRARY = ROOT / "keras_residual"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """The modules `path` imports, at any depth of its code (lazy imports count)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in LIBRARY.rglob("*.py")}
    return {
        name: {m for m in _imports(path) if m in modules and m != name}
        for name, path in modules.items()
    }


def test_the_library_never_imports_the_command_line():
    offenders = {
        _module_name(path): sorted(m for m in _imports(path) if m.startswith("keras_residual_cli"))
        for path in LIBRARY.rglob("*.py")
        if path.name != "__main__.py"  # `python -m keras_residual` runs the command line
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_library_imports_have_no_cycle():
    graph = _graph()
    # A package's __init__ gathers its submodules: an edge into a package is an edge into
    # its __init__, which may import downward; a cycle through __init__ alone is not one.
    edges = {
        name: {m for m in targets if not name.startswith(m + ".") and m != "keras_residual"}
        for name, targets in graph.items()
    }
    state, cycles = {}, []

    def visit(node, trail):
        state[node] = "open"
        for target in sorted(edges.get(node, ())):
            if state.get(target) == "open":
                cycles.append([*trail[trail.index(target) :], target])
            elif target not in state:
                visit(target, [*trail, target])
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert cycles == []


def test_the_benchmark_summary_is_generated_from_its_records():
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "summarize.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr

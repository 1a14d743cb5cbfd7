"""The package's shape: no import cycles (lazy imports included), one home per file format,
one HTTP error translation."""

from __future__ import annotations

import ast
import asyncio
from pathlib import Path

import aiohttp
import pytest

from archiver import transport
from archiver.errors import ArchiverError, ProtocolError, TooLargeError, TransientError

PACKAGE = Path(__file__).resolve().parent.parent / "archiver"


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _imports(path: Path, name: str, known: set[str]) -> set[str]:
    """Every archiver module ``path`` imports, wherever the import statement is (functions too)."""
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            targets = [stem] + [f"{stem}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            # The longest known module the target names (``from . import x`` may name a module).
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    paths = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    known = set(paths)
    return {name: _imports(path, name, known) for name, path in paths.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, as the modules on it, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = 2
        path.pop()
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_the_import_graph_is_acyclic():
    graph = import_graph()
    assert "archiver.manifest" in graph and "archiver.cli" in graph
    # A package's __init__ gathering its own modules (the simulator's does) is no cycle of
    # ownership: leave package -> own submodule edges out.
    for name, targets in graph.items():
        graph[name] = {t for t in targets if t.rpartition(".")[0] != name}
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_finder_finds_a_lazy_import_cycle(tmp_path):
    """The check itself: an import inside a function counts."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from .n import x\n")
    assert _imports(source, "pkg.m", {"pkg.m", "pkg.n"}) == {"pkg.n"}


def test_only_manifest_py_spells_the_manifest_file_names():
    for path in PACKAGE.rglob("*.py"):
        if path.name == "manifest.py":
            continue
        tree = ast.parse(path.read_text())
        docstrings = {
            id(node.body[0].value) for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                assert "manifest.json" not in node.value and ".part.json" not in node.value, path


class _Cause(Exception):
    pass


def _payload_error(cause: BaseException | None) -> aiohttp.ClientPayloadError:
    exc = aiohttp.ClientPayloadError("body")
    exc.__cause__ = cause
    return exc


@pytest.mark.parametrize(
    ("raised", "expected", "words"),
    [
        (asyncio.TimeoutError(), TransientError, "timed out"),
        (aiohttp.InvalidURL("http://x"), ProtocolError, "invalid URL"),
        (_payload_error(aiohttp.http_exceptions.ContentEncodingError("x")), ProtocolError, "Content-Encoding"),
        (_payload_error(None), TransientError, "cut short"),
        (aiohttp.ServerDisconnectedError(), TransientError, "connection failed"),
        (ConnectionResetError(104, "reset"), TransientError, "connection failed"),
    ],
)
def test_one_table_translates_transport_errors(raised, expected, words):
    with pytest.raises(expected) as caught:
        with transport.translated("probe"):
            raise raised
    assert type(caught.value) is expected and words in str(caught.value)
    assert caught.value.__cause__ is raised


def test_archiver_errors_pass_through_the_boundary_unchanged():
    mine = TooLargeError("too big")
    with pytest.raises(ArchiverError) as caught:
        with transport.translated("probe"):
            raise mine
    assert caught.value is mine

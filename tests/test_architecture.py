"""The house rules of docs/architecture.md, checked on the package's own imports (no import runs).

Every ``import slidestream.x`` / ``from slidestream.x import ...`` in ``src/slidestream`` counts,
at module level or inside a function (a lazy import still ties the two modules together), and
under ``if TYPE_CHECKING`` too. A lower room importing a higher one, anything importing ``cli``,
``store`` importing torch at module level, or an import circle between modules fails here with the
file and line to fix.
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "slidestream"
DOCS = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"

BASE_MODULES = frozenset({"_version", "errors", "atomic", "weight_files", "data"})  # the bottom room: no slidestream imports
BASE = frozenset({"base"})
_IMAGING = frozenset({"io", "tissue", "tiling", "selection"})
# room -> the rooms it may import (besides itself). The order of docs/architecture.md, lowest first.
ALLOWED: dict[str, frozenset[str]] = {
    "base": frozenset(),
    "io": BASE,
    "tissue": BASE | {"io"},
    "tiling": BASE | {"io", "tissue"},
    "selection": BASE | {"io", "tissue", "tiling"},
    "encoders": BASE,
    "store": BASE,
    "extraction": BASE | _IMAGING | {"store", "encoders"},
    "mil": BASE | {"store"},
    "slide_encoders": BASE | {"store", "mil", "encoders"},
    "viz": BASE | _IMAGING | {"store"},
    "pipeline": BASE | _IMAGING | {"store", "encoders", "extraction", "mil", "slide_encoders", "viz"},
    # the run report reads what a whole run leaves (manifest + stores), so it sits above pipeline
    "report": BASE | _IMAGING | {"store", "encoders", "extraction", "mil", "slide_encoders", "viz", "pipeline"},
    "package": BASE | _IMAGING | {"store", "encoders", "extraction", "mil", "slide_encoders", "viz", "pipeline",
                                  "report"},
}
ALLOWED["cli"] = frozenset({*ALLOWED["package"], "package"})  # nothing imports cli
REPORT_MODULES = ("slidestream.viz.report", "slidestream.viz.report_")  # report.py, report_*.py


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")


def room_of(module: str) -> str:
    """The room a module lives in (``slidestream.viz.report_html`` -> ``report``)."""
    parts = module.split(".")
    if len(parts) == 1:
        return "package"
    if module.startswith(REPORT_MODULES):
        return "report"
    return "base" if parts[1] in BASE_MODULES else parts[1]


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported slidestream module) for every import in ``path``; ``from a import b``
    counts as ``a.b`` when ``b`` is a submodule, else as ``a``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "slidestream"]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                and node.module.split(".")[0] == "slidestream":
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.append((node.lineno, sub if sub in MODULES else node.module))
    return found


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}
EDGES = {m: imports(p) for m, p in MODULES.items()}


def test_every_room_is_known_and_documented():
    rooms = {room_of(m) for m in MODULES}
    assert rooms <= set(ALLOWED), f"new room(s) {rooms - set(ALLOWED)}: add them to ALLOWED and docs/architecture.md"
    text = DOCS.read_text(encoding="utf-8")
    for room in rooms - {"base", "package", "report"}:
        assert f"`{room}/`" in text, f"docs/architecture.md does not describe `{room}/`"
    assert "atomic.py" in text and "viz/report" in text


def test_lower_rooms_never_import_higher_ones():
    wrong = []
    for module, found in EDGES.items():
        room = room_of(module)
        for line, target in found:
            other = room_of(target)
            if other != room and other not in ALLOWED[room]:
                wrong.append(f"{MODULES[module].relative_to(SRC)}:{line} ({room}) imports {target} ({other})")
    assert not wrong, "imports against the layer order of docs/architecture.md:\n" + "\n".join(wrong)


def test_store_does_not_import_torch_at_module_level():
    """``store`` is read by torch-free tools (export, verify, report); torch only inside a function."""
    for module, path in MODULES.items():
        if room_of(module) != "store":
            continue
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n.split(".")[0] == "torch" for n in names), f"{path}:{node.lineno} imports torch"


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
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
                found.append(sorted(comp))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10_000))
    try:
        for v in edges:
            if v not in index:
                visit(v)
    finally:
        sys.setrecursionlimit(limit)
    return found


def module_graph() -> dict[str, set[str]]:
    """Module -> modules it imports; a package's ``__init__`` is left out as a target when only
    its submodules are named (``from slidestream.viz import heatmap``)."""
    graph: dict[str, set[str]] = defaultdict(set)
    for module, found in EDGES.items():
        for _, target in found:
            if target in MODULES and target != module and target != "slidestream":
                graph[module].add(target)
    return graph


def test_no_import_circles():
    found = circles(module_graph())
    assert not found, "import circles:\n" + "\n".join(" <-> ".join(c) for c in found)


@pytest.mark.parametrize(("edges", "expected"), [
    ({"a": {"b"}, "b": {"a"}}, [["a", "b"]]),
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]]),
    ({"a": {"b"}, "b": set()}, []),
])
def test_the_circle_finder_finds_circles(edges, expected):
    assert circles(edges) == expected


def test_the_layer_check_catches_an_upward_import():
    assert room_of("slidestream.viz.report_html") == "report"
    assert room_of("slidestream.atomic") == "base" and room_of("slidestream") == "package"
    assert "pipeline" not in ALLOWED["viz"] and "store" not in ALLOWED["encoders"] and "io" not in ALLOWED["encoders"]
    assert all("cli" not in allowed for room, allowed in ALLOWED.items())

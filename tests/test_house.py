"""The house (README's map): no import circles between Lantern's modules, an import inside a function only where it
defers a heavy or optional dependency (and says which), one Worker interface, and a map that matches the tree.
import-linter (scripts/test) holds the layers; these are what it cannot see."""
from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ["app", "basics", "benchmarks", "chat_format", "cli", "engine", "files", "machine", "models", "runtimes",
            "ui"]


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            if pkg == "benchmarks" and path.name.startswith(("bench_", "gpu_", "make_")):
                continue  # the benchmark scripts: entry points that nothing imports
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            out[name] = path
    return out


def _imports(tree: ast.AST):
    """(node, inside a function, inside a try) for each import, leaving out `if TYPE_CHECKING:` blocks."""
    def walk(node, in_fn, in_try):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                yield child, in_fn, in_try
            yield from walk(child, in_fn or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)),
                            in_try or isinstance(child, ast.Try))
    yield from walk(tree, False, False)


def _graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        for node, _in_fn, _in_try in _imports(ast.parse(path.read_text())):
            targets = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [f"{node.module}.{a.name}" for a in node.names] + [node.module or ""]
            for t in targets:
                while t and t not in modules:
                    t = t.rpartition(".")[0]
                if t and t != name and not name.startswith(t + "."):  # a package's own __init__ is no circle
                    graph[name].add(t)
    return graph


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            part = []
            while True:
                w = stack.pop()
                on.discard(w)
                part.append(w)
                if w == v:
                    break
            if len(part) > 1:
                out.append(sorted(part))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_module_imports_itself_back_through_others():
    """Imports inside functions count too: a circle hidden in a function is still a circle."""
    assert _circles(_graph(_modules())) == []


def test_the_circle_check_sees_a_circle():
    graph = {"a.x": {"a.y"}, "a.y": {"b.z"}, "b.z": {"a.x"}, "c": {"a.x"}}
    assert _circles(graph) == [["a.x", "a.y", "b.z"]]


def test_an_import_inside_a_function_says_what_it_defers():
    """Only a heavy or optional dependency is imported inside a function, under a `# deferred: ...` comment (an
    import inside `try:` checks that something is installed, and needs none)."""
    unexplained = []
    for name, path in _modules().items():
        lines = path.read_text().splitlines()
        for node, in_fn, in_try in _imports(ast.parse("\n".join(lines))):
            if not in_fn or in_try:
                continue
            above = node.lineno - 2
            while above >= 0 and re.match(r"\s*(from|import)\s", lines[above]):
                above -= 1
            said = "# deferred:" in lines[node.lineno - 1] or (above >= 0 and "# deferred:" in lines[above])
            if not said:
                unexplained.append(f"{path.relative_to(ROOT)}:{node.lineno}: {lines[node.lineno - 1].strip()}")
    assert unexplained == []


def test_every_worker_has_the_worker_interface():
    from engine.auto_worker import AutoWorker
    from engine.slots import SlotWorker
    from engine.worker import EngineWorker, QueuedWorker, Worker

    methods = [n for n, v in vars(Worker).items() if callable(v) and not n.startswith("_")]
    assert sorted(methods) == ["call", "close", "submit", "wait_ready", "when_ready"]
    for cls in (EngineWorker, SlotWorker, AutoWorker):
        assert issubclass(cls, QueuedWorker) and issubclass(cls, Worker), cls
        for m in methods:
            assert list(inspect.signature(getattr(cls, m)).parameters) == \
                list(inspect.signature(getattr(Worker, m)).parameters), (cls, m)


def test_the_readme_map_names_every_package_and_only_those():
    text = (ROOT / "README.md").read_text()
    start = text.index("<!-- map:start -->")
    mapped = set(re.findall(r"^- `(\w+)/`", text[start:text.index("<!-- map:end -->")], re.M))
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")}
    assert mapped == packages
    assert packages == set(PACKAGES)

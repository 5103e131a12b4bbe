"""Imports flow one way: the import graph of src/medconv, built from the source (every import statement,
those inside functions included), has no cycle, and no module imports from a layer above its own."""
from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "medconv"
# lowest first; a module may import its own layer and the layers below (the package root sits on top)
LAYERS = [
    {"errors", "version", "api", "progress", "published", "metrics"},
    {"data", "fileio"},
    {"config"},
    {"models"},
    {"infer", "report"},
    {"training"},
    {"classify", "segment", "detect", "transfer", "analysis", "experiments", "export", "demo", "measure"},
    {"cli"},
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(src: Path = SRC) -> dict[str, set[str]]:
    """{module: the medconv modules it imports}, from `import` and `from ... import` statements."""
    paths = {module_name(p): p for p in src.rglob("*.py")}
    graph = {}
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[:len(package.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                targets |= {f"{target}.{a.name}" if f"{target}.{a.name}" in paths else target for a in node.names}
            elif isinstance(node, ast.Import):
                targets |= {a.name for a in node.names}
        graph[name] = {t for t in targets if t in paths and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
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
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def layer(module: str) -> int:
    if module == "medconv":
        return len(LAYERS)
    top = module.split(".")[1]
    return next(i for i, names in enumerate(LAYERS) if top in names)


def test_the_checker_finds_a_planted_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_import_graph_has_no_cycle():
    graph = import_graph()
    assert len(graph) > 80 and sum(map(len, graph.values())) > 250  # the parser sees the real graph
    assert cycles(graph) == []


def test_every_module_belongs_to_a_layer_and_imports_only_downwards():
    graph = import_graph()
    upward = [f"{m} -> {t}" for m, targets in graph.items() for t in targets if layer(t) > layer(m)]
    assert upward == []


def test_the_model_registry_imports_no_model():
    graph = import_graph()
    assert not {t for t in graph["medconv.models.registry"] if t.startswith("medconv.models.")} - {
        "medconv.models.torchvision_any"}
    assert "medconv.models.resnet" in graph["medconv.models"]  # the package imports them, as torchvision's does


def test_the_command_line_and_the_onnx_detection_path_start_without_torch():
    import subprocess
    import sys
    code = ("import sys; import medconv; from medconv.cli import build_parser; build_parser(); "
            "from medconv.detect.predict import predict_detections; from medconv.config import TrainConfig; "
            "TrainConfig(augment='strong').validate(); print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"

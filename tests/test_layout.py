"""The package's shape: no import cycle, models and data read no config, and the network
module stays small. Static: the source is parsed, nothing is imported."""

import ast
from pathlib import Path

import networkx as nx

PACKAGE = Path(__file__).resolve().parent.parent / "flowvid"


def _module(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module name an import in the file names (function-level ones included; not
    those under ``if TYPE_CHECKING``)."""
    tree = ast.parse(path.read_text())
    typing_only = {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for node in ast.walk(block)
    }
    names = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
        elif isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
    return names


def _graph() -> nx.DiGraph:
    modules = {_module(p): p for p in PACKAGE.rglob("*.py")}
    graph = nx.DiGraph()
    for name, path in modules.items():
        graph.add_node(name)
        for target in _imports(path) & set(modules):
            # a package importing its own submodules (re-exports) is not a cycle
            if target != name and not target.startswith(name + "."):
                graph.add_edge(name, target)
    return graph


def test_no_import_cycle_in_the_package():
    cycles = list(nx.simple_cycles(_graph()))
    assert not cycles, cycles[:5]


def test_models_and_data_read_no_config_and_training_reads_no_evaluation():
    graph = _graph()
    for name in graph:
        if name.startswith(("flowvid.models", "flowvid.data")):
            assert "flowvid.config" not in graph.successors(name), name
        if name.startswith("flowvid.training"):
            assert not nx.descendants(graph, name) & {"flowvid.lab.evaluate", "flowvid.lab.sanity"}


def test_the_network_module_is_short_and_no_function_is_long():
    assert len((PACKAGE / "models" / "model.py").read_text().splitlines()) < 250
    long = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > 60:
                    long.append(f"{_module(path)}.{node.name} ({lines})")
    assert not long, long

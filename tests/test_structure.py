"""The shape of the code itself: imports point downward through the layers of docs/design.md with
no cycle, internal imports sit at module top (only heavy optional libraries are imported where
they are used), and no module outside `devices/` and `telemetry/` branches on a device kind."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "colobench"

# Top to bottom, as docs/design.md lists them: a module may import its own layer (without a cycle)
# and the layers below it, never one above.
LAYERS = [
    ("cli", ("colobench.cli", "colobench.__main__")),
    ("api", ("colobench.api", "colobench.capacity", "colobench.load_sweep", "colobench.characterize",
             "colobench.place", "colobench.place_verify")),
    ("profiling", ("colobench.profiling",)),
    ("serve", ("colobench.serve",)),
    ("report", ("colobench.report",)),
    ("analysis", ("colobench.analysis",)),
    ("launch", ("colobench.launch",)),
    ("rundir", ("colobench.rundir",)),
    ("plan", ("colobench.plan", "colobench.sweep")),
    ("specs", ("colobench.specs",)),
    ("loadgen", ("colobench.loadgen",)),
    ("backends", ("colobench.backends",)),
    ("telemetry", ("colobench.telemetry",)),
    ("workload", ("colobench.workload",)),
    ("devices", ("colobench.devices",)),
    ("models", ("colobench.models",)),
    ("base", ("colobench.records", "colobench.clock", "colobench.errors", "colobench.aio", "colobench.secrets",
              "colobench.stopping", "colobench.text", "colobench.typed",
              "colobench")),
]
HEAVY = ("torch", "transformers", "ray", "torch_npu", "torchair", "pynvml", "plotly", "optimum", "pyarrow",
         "scipy")


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in SRC.rglob("*.py")}


def layer(module: str) -> int:
    for rank, (_, prefixes) in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes if p != "colobench"):
            return rank
    assert module == "colobench", f"{module} is in no layer: add it to LAYERS and docs/design.md"
    return len(LAYERS) - 1


def _resolve(name: str) -> str:
    """The module a dotted import name refers to (a name inside a module is its module)."""
    while name not in MODULES and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(imported colobench module, at module top?) for every import in a file."""
    tree = ast.parse(path.read_text())
    top = {id(node) for node in tree.body}
    out = []
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            if name.split(".")[0] == "colobench":
                out.append((_resolve(name), id(node) in top or _inside_top_try(tree, node)))
    return out


def _inside_top_try(tree: ast.Module, node: ast.AST) -> bool:
    return any(isinstance(t, ast.Try) and node in ast.walk(t) for t in tree.body)


GRAPH = {m: {dep for dep, _ in _imports(p) if dep != m} for m, p in MODULES.items()}


def test_every_module_has_a_layer():
    for module in MODULES:
        layer(module)


def test_imports_point_downward():
    upward = [f"{m} ({LAYERS[layer(m)][0]}) imports {d} ({LAYERS[layer(d)][0]})"
              for m, deps in GRAPH.items() for d in deps if layer(d) < layer(m)]
    assert not upward, "\n".join(upward)


def test_import_graph_is_acyclic():
    state: dict[str, int] = {}

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for d in sorted(GRAPH.get(m, ())):
            if state.get(d) == 1:
                pytest.fail("import cycle: " + " -> ".join(stack[stack.index(d):] + [d]))
            if d not in state:
                visit(d, stack + [d])
        state[m] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])


def test_internal_imports_are_at_module_top():
    inside = [f"{m} imports {d} inside a function" for m, p in MODULES.items() for d, top in _imports(p) if not top]
    assert not inside, "\n".join(inside)


def test_only_heavy_optional_libraries_are_imported_late():
    late = []
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text())
        top = {id(n) for n in tree.body}
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in top and not _inside_top_try(tree, node):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                late += [f"{module}: {n}" for n in names if n.split(".")[0] not in HEAVY]
    assert not late, "\n".join(late)


def _device_branches(path: Path) -> list[str]:
    """Comparisons with 'cuda' / 'npu', startswith of them, torch.cuda / torch.npu, torch_npu."""
    found = []
    tree = ast.parse(path.read_text())

    def kinds(node: ast.AST) -> bool:
        consts = [node] if isinstance(node, ast.Constant) else list(getattr(node, "elts", []))
        return any(isinstance(c, ast.Constant) and isinstance(c.value, str) and
                   c.value.split(":")[0] in ("cuda", "npu") for c in consts)

    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and any(kinds(c) for c in [node.left, *node.comparators]):
            found.append(f"line {node.lineno}: compares with a device kind")
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") in ("startswith", "endswith") \
                and any(kinds(a) for a in node.args):
            found.append(f"line {node.lineno}: startswith a device kind")
        elif isinstance(node, ast.Attribute) and node.attr in ("cuda", "npu") and getattr(node.value, "id", "") == "torch":
            found.append(f"line {node.lineno}: torch.{node.attr}")
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            found += [f"line {node.lineno}: imports {n}" for n in names if n.split(".")[0] == "torch_npu"]
    return found


def test_no_device_branches_outside_devices_and_telemetry():
    offenders = [f"{m}: {b}" for m, p in MODULES.items()
                 if not m.startswith(("colobench.devices", "colobench.telemetry")) for b in _device_branches(p)]
    assert not offenders, "\n".join(offenders)


def test_the_scan_finds_a_branch():
    """The scanner itself: a planted branch of each kind is found."""
    sample = Path(__file__).with_name("fixtures") / "device_branches_sample.py"
    assert len(_device_branches(sample)) == 4


def test_pyflakes_clean():
    """No unused import, undefined name or shadowed variable anywhere in the tree."""
    from pyflakes.api import checkPath
    from pyflakes.reporter import Reporter

    class Collect(Reporter):
        def __init__(self):
            self.messages: list[str] = []

        def unexpectedError(self, filename, msg):
            self.messages.append(f"{filename}: {msg}")

        def syntaxError(self, filename, msg, lineno, offset, text):
            self.messages.append(f"{filename}:{lineno}: {msg}")

        def flake(self, message):
            self.messages.append(str(message))

    reporter = Collect()
    root = SRC.parents[1]
    for folder in ("src", "tests", "benchmarks"):
        for path in sorted((root / folder).rglob("*.py")):
            checkPath(str(path), reporter)
    assert not reporter.messages, "\n".join(reporter.messages)


# the names of a run directory's files and folders (colobench/rundir/paths.py is their one home)
RUN_DIR_FILES = {"manifest.json", "run.json", "summary.json", "report.html", "telemetry.jsonl", "idle_telemetry.jsonl",
                 "capacity.json", "capacity.html", "profile.json", "trace.json"}
RUN_DIR_FOLDERS = {"runs", "records", "logs", "gc", "client", "metrics", "quality", "attempts", "probes", "prompts",
                   "servers", "ascend"}
RUN_DIR_SUFFIXES = (".jsonl", ".prom", ".npz", ".log")


def _path_literals(path: Path) -> list[str]:
    """A file name of a run directory anywhere, a folder name or a file suffix joined onto a path
    (`x / "records"`, `x / f"{name}.jsonl"`)."""
    found = []
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and node.value in RUN_DIR_FILES:
            found.append(f"line {node.lineno}: {node.value!r}")
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            for side in (node.left, node.right):
                if isinstance(side, ast.Constant) and side.value in RUN_DIR_FOLDERS:
                    found.append(f"line {node.lineno}: / {side.value!r}")
                if isinstance(side, ast.JoinedStr) and any(isinstance(v, ast.Constant) and str(v.value).endswith(
                        RUN_DIR_SUFFIXES) for v in side.values):
                    found.append(f"line {node.lineno}: / an f-string naming a run file")
    return found


def test_no_run_directory_path_outside_rundir():
    offenders = [f"{m}: {hit}" for m, p in MODULES.items() if m != "colobench.rundir.paths"
                 for hit in _path_literals(p)]
    assert not offenders, "\n".join(offenders)


def test_the_path_scan_finds_a_literal(tmp_path: Path):
    sample = tmp_path / "sample.py"
    sample.write_text('from pathlib import Path\nrun = Path("x")\nstate = run / "run.json"\nlogs = run / "logs"\n'
                      'rec = run / f"{state}.jsonl"\nname = "summary.json"\n')
    assert len(_path_literals(sample)) == 4

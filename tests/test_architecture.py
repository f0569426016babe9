"""The package's layout holds: the import-linter contracts of pyproject.toml, and no import cycle anywhere.

Both checks read every import statement, function-level imports included (grimp parses them all),
so a lazy `from healthai.model.generation import ...` inside the trainer breaks them too.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp

from slurm_helpers import REPO


def import_cycles(graph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.find_modules_directly_imported_by(node):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return cycles


def test_no_import_cycle_anywhere_in_the_package():
    graph = grimp.build_graph("healthai")
    assert len(graph.modules) > 40  # the whole package was read, not an empty graph
    cycles = import_cycles(graph)
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_cycle_finder_finds_a_cycle():
    """The finder itself, on a graph with one cycle a -> b -> c -> a and a bystander d."""
    graph = grimp.ImportGraph()
    for importer, imported in (("a", "b"), ("b", "c"), ("c", "a"), ("d", "a")):
        graph.add_import(importer=importer, imported=imported)
    assert import_cycles(graph) == [["a", "b", "c"]]


def test_import_linter_contracts_are_kept():
    lint = Path(sys.executable).with_name("lint-imports")
    out = subprocess.run([str(lint), "--config", str(REPO / "pyproject.toml")], cwd=REPO, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "3 kept, 0 broken" in out.stdout


def test_each_stage_finds_its_code_in_the_folder_named_after_it():
    """A person who knows the slides finds each step in the package named after it."""
    src = REPO / "src" / "healthai"
    expected = {
        "data": ["readers", "cleaning", "pii", "dedup", "curation", "triage", "filtering", "rewriting", "sampling",
                 "review", "merging", "splitting", "dataset_card"],
        "model": ["folder", "embedded", "lora", "generation", "trainer", "hpo", "evaluation", "finetune", "evaluate"],
        "pipeline": ["stage", "io", "cli", "chain"],
    }
    for package, modules in expected.items():
        for module in modules:
            assert (src / package / f"{module}.py").is_file(), f"{package}/{module}.py"
    flat = sorted(p.name for p in src.glob("*.py"))
    assert flat == ["__init__.py", "errors.py"], flat

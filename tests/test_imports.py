"""seqkit's own import graph (tools/import_graph.py), imports inside functions counted: no
cycle between modules, and the few imports inside functions each cross a boundary it names."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import import_graph  # noqa: E402

MOST_INSIDE_FUNCTIONS = 15
# What a comment on an in-function import must name: the boundary it keeps (torch, or an extra).
BOUNDARY_WORDS = ("torch", "extra", "optional")


def test_no_import_cycle_between_seqkit_modules():
    found = import_graph.imports()
    assert len({i.module for i in found}) > 40  # the walk saw the package
    assert import_graph.cycles(found) == []


def test_cycles_are_found_inside_functions_too():
    a = import_graph.Import("seqkit.a", "seqkit.b", 1, False, "")
    b = import_graph.Import("seqkit.b", "seqkit.a", 9, True, "")
    assert import_graph.cycles([a, b]) == [["seqkit.a", "seqkit.b"]]


def test_imports_inside_functions_are_few_and_say_why():
    inside = [i for i in import_graph.imports() if i.in_function]
    assert 0 < len(inside) <= MOST_INSIDE_FUNCTIONS, [f"{i.module}:{i.line}" for i in inside]
    unexplained = [f"{i.module}:{i.line} -> {i.target}" for i in inside
                   if not any(word in i.comment.lower() for word in BOUNDARY_WORDS)]
    assert unexplained == []

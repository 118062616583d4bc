"""The scripts in benchmarks/ are run by hand, months apart: each one's imports from the package must still resolve
(a renamed private constant broke one unnoticed)."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

SCRIPTS = sorted((Path(__file__).parents[2] / "benchmarks").glob("*.py"))


def package_imports(script: Path) -> list[tuple[str, str]]:
    tree = ast.parse(script.read_text(encoding="utf-8"))
    return [(node.module, alias.name) for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "hybridformer"
            for alias in node.names]


def test_there_are_scripts():
    assert len(SCRIPTS) > 20


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.name)
def test_a_benchmark_script_imports_what_exists(script):
    for module_name, name in package_imports(script):
        module = importlib.import_module(module_name)
        if not hasattr(module, name):  # a submodule imported by name
            importlib.import_module(f"{module_name}.{name}")

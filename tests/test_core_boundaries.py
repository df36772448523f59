"""What the core may not depend on, checked on its source: one test per rule.

Rule 1: the libraries that belong to plugins (adapters, quantisation, hyperparameter search, the HTTP
server) are imported by no module under ``core/ftx``: not at the top, not inside a function, not
through ``importlib.import_module("...")``. The methods (ftx-lora), ftx-sweep and ftx-deploy own them.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CORE = REPO / "core" / "ftx"

PLUGIN_LIBRARIES = ("peft", "bitsandbytes", "optuna", "fastapi", "uvicorn")
"""Libraries only plugins import."""


def core_modules() -> list[Path]:
    """Every Python file of the core package (scaffold templates are text, not modules)."""
    return sorted(p for p in CORE.rglob("*.py") if "templates" not in p.parts)


def imported_modules(path: Path) -> Iterator[tuple[str, int]]:
    """``(module, line)`` for every import in a file: statements at any depth, and literal ``import_module`` calls."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module, node.lineno
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                yield node.args[0].value, node.lineno


def test_the_scanner_sees_imports_at_every_depth(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("import os\n\ndef f():\n    from peft import PeftModel\n    import bitsandbytes.functional as b\n"
                      "    importlib.import_module('optuna')\n")
    assert [m for m, _ in imported_modules(sample)] == ["os", "peft", "bitsandbytes.functional", "optuna"]


@pytest.mark.parametrize("library", PLUGIN_LIBRARIES)
def test_no_core_module_imports_a_plugin_library(library):
    found = [
        f"{path.relative_to(REPO)}:{line} imports {module}"
        for path in core_modules()
        for module, line in imported_modules(path)
        if module == library or module.startswith(library + ".")
    ]
    assert found == [], f"{library} belongs to plugins, yet the core imports it:\n" + "\n".join(found)

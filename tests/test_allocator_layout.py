"""The allocator package is pure: it imports only the standard library and itself, never
the service, pydantic, YAML or a database (mapping files and rows onto its inputs is the
drivers' job: quota/allocator_inputs.py, quota/fair_snapshot.py)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "quota" / "fairshare"


def test_the_allocator_imports_nothing_but_the_standard_library_and_itself():
    foreign = []
    for path in sorted(PACKAGE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else [])
            for name in names:
                top = name.split(".")[0]
                if name.startswith("quota.fairshare") or top == "__future__" or top in sys.stdlib_module_names:
                    continue
                foreign.append(f"{path.name}: {name}")
    assert foreign == []
    assert len(list(PACKAGE.glob("*.py"))) >= 8  # the scan saw the package

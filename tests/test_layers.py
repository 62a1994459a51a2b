"""The packages import downwards only: models < connectors < flows, dashboard < benchmarks.

The README's package table promises it (``models/`` pure, ``connectors/`` at the edges,
``flows/`` wiring, ``dashboard/`` reading, ``benchmarks/`` on top); this keeps it true.
Imports inside functions count too: a late import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

MAY_NOT_IMPORT = {
    "models": {"connectors", "flows", "dashboard", "benchmarks"},
    "connectors": {"flows", "dashboard", "benchmarks"},
    "dashboard": {"flows", "benchmarks"},
    "flows": {"dashboard", "benchmarks"},
}


def imported_packages(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every absolute import in the file, at any depth."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def test_packages_import_only_the_layers_below_them():
    violations, seen = [], 0
    for package, forbidden in MAY_NOT_IMPORT.items():
        for path in sorted((REPO / package).rglob("*.py")):
            for line, module in imported_packages(path):
                seen += 1
                if module.split(".")[0] in forbidden:
                    violations.append(f"{path.relative_to(REPO)}:{line} imports {module}")
    assert seen > 100, "the scan found almost no imports: is REPO right?"
    assert not violations, "\n".join(violations)

"""The direction of imports: features <- training, features <- serving; serving never training."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("features", "training", "serving")


def imported_packages(path: Path) -> set[str]:
    """Top-level packages a module imports, resolving relative imports against its package."""
    package = path.relative_to(ROOT).parts[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                parts = [*base, *(node.module.split(".") if node.module else [])]
                if parts:
                    found.add(parts[0])
                if not node.module and len(base) == 0:
                    found |= {alias.name for alias in node.names}
            elif node.module:
                found.add(node.module.split(".")[0])
    return found


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [("features", {"training", "serving"}), ("serving", {"training"})],
)
def test_import_direction(package, forbidden):
    offenders = {
        str(path.relative_to(ROOT)): sorted(imported_packages(path) & forbidden)
        for path in _modules(package)
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_scanner_sees_imports():
    """Guard against a vacuous pass: known imports are found, relative ones resolved."""
    assert _modules("features")
    assert "features" in imported_packages(ROOT / "features" / "engine.py")
    assert "features" in imported_packages(ROOT / "training" / "cli.py")  # imports inside functions


def test_relative_imports_are_resolved(tmp_path, monkeypatch):
    module = tmp_path / "serving" / "service.py"
    module.parent.mkdir()
    module.write_text("from ..training import cli\nfrom . import helpers\nfrom .x import y\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert imported_packages(module) == {"training", "serving"}

"""The direction of imports: features <- scoring <- campaigns <- training <- monitoring <- cli,
and serving beside training and monitoring (on campaigns, under cli).

`features` is at the bottom. `scoring` holds the model artifact, the predictor and the
product's store, which training writes and serving reads. `campaigns` plans and reports
retention campaigns from scores and the store. `monitoring` (`churn monitor`) uses training's
statistics and writes its results to the store, where serving reads them. `training` and
`serving` never import each other, and serving never imports monitoring. `cli` is
the composition root on top, and nothing imports it: not the packages, the tests, the
benchmarks, the scripts nor the notebooks (they run the `churn` command instead)."""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("features", "scoring", "campaigns", "training", "monitoring", "serving", "cli")
FORBIDDEN = {
    "features": {"scoring", "campaigns", "training", "monitoring", "serving", "cli"},
    "scoring": {"campaigns", "training", "monitoring", "serving", "cli"},
    "campaigns": {"training", "monitoring", "serving", "cli"},
    "training": {"monitoring", "serving", "cli"},
    "monitoring": {"serving", "cli"},
    "serving": {"training", "monitoring", "cli"},
    "cli": set(),
}


def imported_packages(path: Path, source: str | None = None) -> set[str]:
    """Top-level packages a module imports, resolving relative imports against its package."""
    package = path.relative_to(ROOT).parts[:-1]
    found: set[str] = set()
    tree = ast.parse(path.read_text() if source is None else source, filename=str(path))
    for node in ast.walk(tree):
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


def _modules(*folders: str) -> list[Path]:
    return sorted(p for f in folders for p in (ROOT / f).rglob("*.py"))


def _notebook_code(path: Path) -> str:
    """A notebook's code cells as one module; IPython magics (% and !) are left out."""
    cells = json.loads(path.read_text())["cells"]
    lines = [line for c in cells if c["cell_type"] == "code"
             for line in "".join(c["source"]).splitlines()]
    return "\n".join(line for line in lines if not line.lstrip().startswith(("%", "!")))


@pytest.mark.parametrize("package", PACKAGES)
def test_import_direction(package):
    offenders = {
        str(path.relative_to(ROOT)): sorted(imported_packages(path) & FORBIDDEN[package])
        for path in _modules(package)
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_nothing_imports_the_cli():
    """Only the CLI's own unit tests may import it (to render a table without a store)."""
    outside = [p for p in _modules(*(p for p in PACKAGES if p != "cli"), "tests", "benchmarks",
                                   "scripts") if p.parts[len(ROOT.parts)] != "cli"
               and p != ROOT / "tests" / "unit" / "test_cli.py"]
    assert outside
    offenders = [str(p.relative_to(ROOT)) for p in outside if "cli" in imported_packages(p)]
    notebooks = sorted((ROOT / "notebooks").glob("*.ipynb"))
    assert notebooks
    offenders += [str(nb.relative_to(ROOT)) for nb in notebooks
                  if "cli" in imported_packages(nb, _notebook_code(nb))]
    assert offenders == []


def test_the_scanner_sees_imports():
    """Guard against a vacuous pass: known imports are found, relative ones resolved."""
    assert _modules("features")
    assert "features" in imported_packages(ROOT / "features" / "engine.py")
    assert "training" in imported_packages(ROOT / "cli" / "training.py")  # imports inside functions
    assert "scoring" in imported_packages(ROOT / "serving" / "service.py")


def test_relative_imports_are_resolved(tmp_path, monkeypatch):
    module = tmp_path / "serving" / "service.py"
    module.parent.mkdir()
    module.write_text("from ..training import cli\nfrom . import helpers\nfrom .x import y\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert imported_packages(module) == {"training", "serving"}

"""The direction of imports: features <- scoring <- campaigns <- training <- monitoring <- cli,
and serving beside training and monitoring (on campaigns, under cli); `simulation` (generated
worlds) on `features` alone, used by the CLI, the notebooks' sample data (training/explore.py),
the outcome simulation of a campaign, tests and benchmarks.

`features` is at the bottom. `scoring` holds the model artifact, the predictor and the
product's store, which training writes and serving reads. `campaigns` plans and reports
retention campaigns from scores and the store. `monitoring` (`churn monitor`) uses training's
statistics and writes its results to the store, where serving reads them. `training` and
`serving` never import each other, and serving never imports monitoring. `cli` is
the composition root on top, and nothing imports it: not the packages, the tests, the
benchmarks, the scripts nor the notebooks (they run the `churn` command instead), and no package
runs it by name either (`python -c "from cli.main import main"`, `-m cli`).

The ways around the layers are closed too: no module imports a `_private` name of another
module, the modules of `features` import each other in one direction (no cycle, also through
imports inside functions), and no benchmark imports `tests`."""

from __future__ import annotations

import ast
import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("features", "simulation", "scoring", "campaigns", "training", "monitoring", "serving",
            "cli")
FORBIDDEN = {
    "features": {"simulation", "scoring", "campaigns", "training", "monitoring", "serving", "cli"},
    "simulation": {"scoring", "campaigns", "training", "monitoring", "serving", "cli"},
    "scoring": {"simulation", "campaigns", "training", "monitoring", "serving", "cli"},
    "campaigns": {"training", "monitoring", "serving", "cli"},  # simulate: a generated world
    "training": {"monitoring", "serving", "cli"},  # explore.py: the notebooks' sample data
    "monitoring": {"simulation", "serving", "cli"},
    "serving": {"simulation", "training", "monitoring", "cli"},
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


# -- the ways around the layers -----------------------------------------------------------------

# `cli` named as code: an import in a string (python -c), or the module run with -m
_CLI_IN_TEXT = re.compile(r"\b(from|import)\s+cli(\.|\s|;|$)|-m\s+cli\b|\bcli\.main\b")


def cli_in_strings(path: Path, source: str | None = None) -> list[str]:
    """The string constants of a module that import or run the CLI, and the argument lists
    that run it as a module ("-m", "cli")."""
    tree = ast.parse(path.read_text() if source is None else source, filename=str(path))
    found = [node.value for node in ast.walk(tree)
             if isinstance(node, ast.Constant) and isinstance(node.value, str)
             and _CLI_IN_TEXT.search(node.value)]
    for node in ast.walk(tree):
        if isinstance(node, ast.List | ast.Tuple):
            words = [e.value if isinstance(e, ast.Constant) else None for e in node.elts]
            found += [f"-m {b}" for a, b in zip(words, words[1:])
                      if a == "-m" and isinstance(b, str) and b.split(".")[0] == "cli"]
    return found


def private_imports(path: Path) -> list[str]:
    """`from x import _name` of a module of this repository (not of the standard library or a
    dependency), whatever the depth of the import."""
    ours = {*PACKAGES, "tests", "benchmarks", "scripts"}
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").split(".")[0]
                                                 in ours):
            found += [f"{node.module}.{a.name}" for a in node.names
                      if a.name.startswith("_") and not a.name.startswith("__")]
    return found


def module_imports(path: Path) -> set[str]:
    """The `features.x` modules a module of `features` imports, anywhere in it."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "features":
                found |= {f"features.{a.name}" for a in node.names}
            elif node.module.startswith("features."):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("features.")}
    return found


@pytest.mark.parametrize("package", [p for p in PACKAGES if p != "cli"])
def test_no_package_runs_the_cli_by_name(package):
    """A subprocess string that imports `cli` is an import of the CLI the scanner cannot see."""
    offenders = {str(p.relative_to(ROOT)): found for p in _modules(package)
                 if (found := cli_in_strings(p))}
    assert offenders == {}


def test_no_private_name_is_imported_across_modules():
    """Across modules only public names: a `_private` one is a way around a module's surface."""
    offenders = {str(p.relative_to(ROOT)): found
                 for p in _modules(*PACKAGES, "benchmarks", "scripts")
                 if (found := private_imports(p))}
    assert offenders == {}


def test_the_modules_of_features_form_no_cycle():
    """The modules of `features` import each other in one direction, counting the imports
    inside functions."""
    graph = {f"features.{p.stem}": module_imports(p) for p in _modules("features")
             if p.stem != "__init__"}
    done: set[str] = set()

    def visit(node: str, path: tuple[str, ...]) -> None:
        assert node not in path, f"import cycle: {' -> '.join((*path, node))}"
        if node in done:
            return
        for nxt in sorted(graph.get(node, ())):
            visit(nxt, (*path, node))
        done.add(node)

    for module in sorted(graph):
        visit(module, ())


def test_no_benchmark_imports_the_tests():
    """Benchmarks run on demand, apart from the test suite: they import the packages, never
    `tests`."""
    offenders = [str(p.relative_to(ROOT)) for p in _modules("benchmarks")
                 if "tests" in imported_packages(p)]
    assert offenders == []


def test_the_scanners_see_what_they_look_for(tmp_path):
    """Guard against a vacuous pass: each check finds a planted offender."""
    planted = tmp_path / "job.py"
    planted.write_text('import subprocess\nfrom features.engine import _secret\n'
                       'subprocess.run(["python", "-c", "from cli.main import main; main()"])\n'
                       'subprocess.run(["python", "-m", "cli"])\n')
    assert len(cli_in_strings(planted)) == 2
    assert private_imports(planted) == ["features.engine._secret"]
    assert cli_in_strings(planted, "x = 'the client said'\ny = 'cli'\n") == []
    assert "features.relations" in module_imports(ROOT / "features" / "engine.py")

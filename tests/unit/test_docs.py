"""The manual (docs/, built by MkDocs) and the README that points into it: a dead link, a
missing page or a broken anchor fails here as it fails `make docs`."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
INDEX = ROOT / "docs" / "index.md"
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")


def build(config: Path, site: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(config),
         "--site-dir", str(site)],
        check=False, capture_output=True, text=True, timeout=120,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})


def section(text: str, title: str) -> str:
    return text.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def anchors(markdown: str) -> set[str]:
    """The ids MkDocs' toc extension gives the headings (outside code blocks)."""
    out, fence = set(), False
    for line in markdown.split("\n"):
        if line.startswith("```"):
            fence = not fence
        elif not fence and (m := re.match(r"#{1,6} (.+)", line)):
            slug = re.sub(r"[^\w\s-]", "", m.group(1).replace("`", "")).strip().lower()
            out.add(re.sub(r"[-\s]+", "-", slug))
    return out


def test_the_manual_builds_strictly(tmp_path):
    result = build(ROOT / "mkdocs.yml", tmp_path / "site")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "site" / "index.html").exists()
    assert (tmp_path / "site" / "review-list.png").exists()  # the screenshots beside the pages


@pytest.mark.parametrize("broken", ["[a page](no-such-page.md)", "[a heading](data.md#no-such-heading)"])
def test_a_dead_link_or_anchor_fails_the_build(tmp_path, broken):
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    with (tmp_path / "docs" / "features.md").open("a") as page:
        page.write(f"\nSee {broken}.\n")
    result = build(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert result.returncode != 0
    assert broken.split("(")[1].rstrip(")").split("#")[-1] in result.stderr


def test_every_link_of_the_readme_resolves():
    """MkDocs never reads the README, so its links into docs/ are checked here."""
    for link in (a or b for a, b in LINK.findall(README.read_text())):
        if link.startswith(("http://", "https://")):
            continue
        path, _, anchor = link.partition("#")
        target = (ROOT / path).resolve()
        assert target.exists(), f"README.md links to {link}, which does not exist"
        if anchor:
            assert anchor in anchors(target.read_text()), f"README.md: no heading #{anchor} in {path}"


@pytest.mark.parametrize("title", ["Two commands on a fresh clone", "Use your own data"])
def test_the_readme_and_the_manual_start_alike(title):
    """The README's sections for a newcomer are the manual's first page, word for word (links
    differ only by the docs/ the README needs)."""
    readme = section(README.read_text(), title).replace("](docs/", "](")
    assert readme == section(INDEX.read_text(), title)

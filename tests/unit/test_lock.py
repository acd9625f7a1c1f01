"""The pip route of the README (`pip install -r requirements.lock.txt`) installs what uv.lock
pins: the exported file must be regenerated whenever the lock changes."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXPORT = ["export", "--locked", "--no-dev", "--no-emit-project", "--format", "requirements-txt",
          "-o", "requirements.lock.txt"]


def test_requirements_file_is_the_export_of_uv_lock(tmp_path):
    uv = ROOT / ".tools" / "bin" / "uv"
    assert uv.exists(), "make setup installs uv into .tools/"
    for name in ("pyproject.toml", "uv.lock"):
        (tmp_path / name).write_bytes((ROOT / name).read_bytes())
    subprocess.run([str(uv), *EXPORT], cwd=tmp_path, check=True, capture_output=True,
                   env={"PATH": "/usr/bin:/bin", "UV_OFFLINE": "1", "HOME": str(tmp_path)})
    exported = (tmp_path / "requirements.lock.txt").read_text()
    assert exported == (ROOT / "requirements.lock.txt").read_text(), (
        "requirements.lock.txt is stale: run " + " ".join(["uv", *EXPORT]))

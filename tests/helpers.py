"""Helpers shared by the test tiers: the `churn` CLI as a subprocess in a home of its own."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

CHURN = str(Path(sys.executable).with_name("churn"))

FAST_CONFIG = """
bootstrap = 50
num_threads = 2
[search]
trials = 2
"""

# a deliberately weak model: one boosting round of two leaves; one thread, as LightGBM's threads
# only wait on each other over data this small (and on a shared machine, for the other cores)
WEAK_CONFIG = """
bootstrap = 0
num_threads = 1
[lightgbm]
num_leaves = 2
max_rounds = 1
[search]
trials = 0
[candidates]
include = ["lightgbm"]
"""


@dataclass
class Trained:
    home: Path
    data: Path
    env: dict[str, str]
    result: dict

    @property
    def customers(self) -> Path:
        return self.data / "customers.parquet"

    @property
    def events(self) -> Path:
        return self.data / "events.parquet"

    def use_store(self) -> None:
        """Point this process's MLflow at the session's trained store. An in-process fixture
        that trains elsewhere restores the URI it found, which is stale when `trained` was
        first built while that fixture's store was current."""
        import mlflow

        uri = f"sqlite:///{self.home / 'mlruns' / 'mlflow.db'}"
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)

    def churn(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run([CHURN, *args], cwd=self.home, env=self.env, capture_output=True, check=False,
                              text=True, timeout=900)
        if check and proc.returncode != 0:
            raise AssertionError(f"churn {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
        return proc


def churn_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "CHURN_"))}
    env.update(CHURN_HOME=str(home), MLFLOW_DISABLE_TELEMETRY="true")
    return env




def review_get(path: str):
    """GET from the review app in this process (no server), with the current environment; the
    settings are read afresh before and forgotten after."""
    import asyncio

    import httpx

    from scoring.settings import get_settings
    from serving.review import review_app

    async def get() -> httpx.Response:
        transport = httpx.ASGITransport(app=review_app)
        async with httpx.AsyncClient(transport=transport, base_url="http://review") as client:
            return await client.get(path)

    get_settings.cache_clear()
    try:
        return asyncio.run(get())
    finally:
        get_settings.cache_clear()


def copy_store(source: Path, target: Path, *, skip: tuple[str, ...] = ("bentoml", "batch")) -> None:
    """Copy a live `mlruns/` folder: SQLite files through the backup API (a consistent copy
    while a server may be writing to them), their journals left behind, the rest as files."""
    import shutil
    import sqlite3

    shutil.copytree(source, target, ignore=shutil.ignore_patterns(
        *skip, "*.db", "*.db-journal", "*.db-wal", "*.db-shm"))
    for db in source.rglob("*.db"):
        if any(part in skip for part in db.relative_to(source).parts):
            continue
        out = target / db.relative_to(source)
        out.parent.mkdir(parents=True, exist_ok=True)
        try:
            with sqlite3.connect(db) as src, sqlite3.connect(out) as dst:
                src.backup(dst)
            src.close()
            dst.close()
        except sqlite3.DatabaseError:  # a file named *.db that is no SQLite database
            out.unlink(missing_ok=True)
            shutil.copy2(db, out)

"""A real training run on small generated data, shared by the integration and model tiers.

MLflow points at a SQLite store under a session tmp folder; the `churn` CLI runs as a
subprocess exactly as a user would run it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pytest

CHURN = str(Path(sys.executable).with_name("churn"))

FAST_CONFIG = """
bootstrap = 50
num_threads = 2
[search]
trials = 2
"""

# a deliberately weak model: one boosting round of two leaves
WEAK_CONFIG = """
bootstrap = 0
[lightgbm]
num_leaves = 2
max_rounds = 1
[search]
trials = 0
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

    def churn(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run([CHURN, *args], cwd=self.home, env=self.env, capture_output=True, check=False,
                              text=True, timeout=900)
        if check and proc.returncode != 0:
            raise AssertionError(f"churn {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
        return proc


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "CHURN_"))}
    env.update(CHURN_HOME=str(home), MLFLOW_DISABLE_TELEMETRY="true")
    return env


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> Trained:
    """Generate 4,000 subscription customers, train once, and point this process's MLflow at it."""
    home = tmp_path_factory.mktemp("home")
    data = home / "data"
    (home / "fast.toml").write_text(FAST_CONFIG)
    (home / "weak.toml").write_text(WEAK_CONFIG)
    t = Trained(home, data, _env(home), {})
    t.churn("generate", "--customers", "4000", "--seed", "3", "--out", str(data))
    proc = t.churn("train", "--customers", str(t.customers), "--events", str(t.events),
                   "--label", "explicit", "--horizon", "30", "--config", "fast.toml", "--json")
    t.result = json.loads(proc.stdout)
    uri = f"sqlite:///{home / 'mlruns' / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return t

"""Fixtures shared by the integration and model tiers: a real training run on small generated
data. MLflow points at a SQLite store under a session tmp folder; the `churn` CLI runs as a
subprocess exactly as a user would run it."""

from __future__ import annotations

import json

import mlflow
import pytest

from tests.helpers import FAST_CONFIG, WEAK_CONFIG, Trained, churn_env


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> Trained:
    """Generate 4,000 subscription customers, train once, and point this process's MLflow at it."""
    home = tmp_path_factory.mktemp("home")
    data = home / "data"
    (home / "fast.toml").write_text(FAST_CONFIG)
    (home / "weak.toml").write_text(WEAK_CONFIG)
    t = Trained(home, data, churn_env(home), {})
    t.churn("generate", "--customers", "4000", "--seed", "3", "--out", str(data))
    proc = t.churn("train", "--customers", str(t.customers), "--events", str(t.events),
                   "--label", "explicit", "--horizon", "30", "--config", "fast.toml", "--json")
    t.result = json.loads(proc.stdout)
    uri = f"sqlite:///{home / 'mlruns' / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return t

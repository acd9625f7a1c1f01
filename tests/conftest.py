"""Fixtures shared by the integration and model tiers: a real training run on small generated
data. MLflow points at a SQLite store under a session tmp folder; the `churn` CLI runs as a
subprocess exactly as a user would run it."""

from __future__ import annotations

import json
import os

import pytest

from tests.helpers import FAST_CONFIG, WEAK_CONFIG, Trained, churn_env

TERMINAL = ("COLUMNS", "LINES")


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:
    """pytest-xdist, on the controller: hand each worker the terminal size variables as this
    process has them."""
    node.workerinput["churn_terminal"] = {k: os.environ.get(k) for k in TERMINAL}


def pytest_configure(config) -> None:
    """In a pytest-xdist worker, put COLUMNS and LINES back as the controller has them: the
    worker finds COLUMNS=80 and LINES=24 set (seen with pytest-xdist 3.8; where they come from
    is not located), and the `churn` subprocesses, which inherit them, would print at 80
    columns instead of their default width, and fold lines that tests read."""
    saved = getattr(config, "workerinput", {}).get("churn_terminal")
    for key, value in (saved or {}).items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


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
    t.use_store()
    return t


@pytest.fixture(autouse=True)
def _mlflow_at_the_trained_store(request):
    """A test that uses `trained` reads its store, whichever module ran before (module-scoped
    fixtures are set up before this one: those that read the store in process call
    `use_store` themselves)."""
    if "trained" in request.fixturenames:
        request.getfixturevalue("trained").use_store()
    yield

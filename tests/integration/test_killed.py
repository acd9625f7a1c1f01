"""`churn train` and `churn score` killed with SIGKILL at several points leave nothing half-done
that is used: no version that is not complete is promoted or served, no run stays RUNNING
after the next command, and a scoring run's records are stored all or none, once."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.helpers import CHURN, WEAK_CONFIG, churn_env


class Home:
    def __init__(self, path: Path):
        self.path, self.env = path, churn_env(path)
        self.data = path / "data"
        self.db = path / "mlruns" / "mlflow.db"
        self.train_seconds = 60.0  # set by the fixture from a whole training

    def churn(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([CHURN, *args], cwd=self.path, env=self.env, capture_output=True,
                              text=True, timeout=900, check=False)

    def start(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen([CHURN, *args], cwd=self.path, env=self.env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def query(self, sql: str) -> list[tuple]:
        if not self.db.exists():
            return []
        con = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=5)
        try:
            return con.execute(sql).fetchall()
        except sqlite3.OperationalError:  # tables not made yet, or a write in progress
            return []
        finally:
            con.close()

    def count(self, sql: str) -> int:
        rows = self.query(sql)
        return int(rows[0][0]) if rows else 0

    @property
    def train_args(self) -> list[str]:
        return ["train", "--customers", str(self.data / "customers.parquet"),
                "--events", str(self.data / "events.parquet"), "--label", "explicit",
                "--horizon", "30", "--config", "weak.toml"]

    def client(self) -> MlflowClient:
        uri = f"sqlite:///{self.db}"
        return MlflowClient(tracking_uri=uri, registry_uri=uri)


def kill_when(proc: subprocess.Popen, ready: Callable[[], bool], timeout: float = 300) -> bool:
    """SIGKILL `proc` as soon as `ready()`; False when it ended first."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        if ready():
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.003)
    proc.kill()
    proc.wait()
    return False


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Home:
    """Small generated data and one complete training: version 1, the champion."""
    h = Home(tmp_path_factory.mktemp("killed"))
    (h.path / "weak.toml").write_text(WEAK_CONFIG)
    assert h.churn("generate", "--customers", "1000", "--seed", "3", "--out",
                   str(h.data)).returncode == 0
    started = time.monotonic()
    proc = h.churn(*h.train_args)
    assert proc.returncode == 0, proc.stderr[-2000:]
    h.train_seconds = time.monotonic() - started  # the time points scale with this machine
    return h


RUNS = "SELECT count(*) FROM runs"
VERSIONS = "SELECT count(*) FROM model_versions"


def _points(h: Home) -> dict[str, Callable[[], Callable[[], bool]]]:
    """Kill points: each makes (at the start of a train) a condition that says when to kill."""
    def after(seconds: float):
        start = time.monotonic()
        return lambda: time.monotonic() - start > seconds

    def more(sql: str):
        before = h.count(sql)
        return lambda: h.count(sql) > before

    return {
        # shares of a whole training's time: before the first run is created, and during the fit
        "loading and snapshots": lambda: after(0.2 * h.train_seconds),
        "fitting": lambda: after(0.5 * h.train_seconds),
        "run just created": lambda: more(RUNS),
        "nested runs logging": lambda: more(RUNS + " WHERE name = 'lightgbm'"),
        "version just registered": lambda: more(VERSIONS),
    }


def _complete(h: Home) -> dict[str, bool]:
    tags = dict(((str(v), t) for v, t in h.query(
        "SELECT version, value FROM model_version_tags WHERE key = 'churn.complete'")))
    return {str(v): tags.get(str(v)) == "true"
            for (v,) in h.query("SELECT version FROM model_versions")}


def _champion(h: Home) -> str | None:
    rows = h.query("SELECT version FROM registered_model_aliases WHERE alias = 'champion'")
    return str(rows[0][0]) if rows else None


def _refused(h: Home, version: str) -> None:
    """Neither promoted (with --force) nor loaded for scoring: one line each."""
    champion = _champion(h)
    got = h.churn("promote", "--version", version, "--force")
    assert got.returncode == 2, got.stdout + got.stderr
    assert "incomplete" in got.stderr and len(got.stderr.strip().splitlines()) == 1, got.stderr
    assert _champion(h) == champion
    got = h.churn("score", "--customers", str(h.data / "customers.parquet"),
                  "--events", str(h.data / "events.parquet"), "--as-of", "2026-05-01",
                  "--model", f"models:/churn/{version}", "--out", str(h.path / "never.csv"))
    assert got.returncode != 0 and "incomplete" in got.stderr, got.stderr[-1500:]
    assert not (h.path / "never.csv").exists()


@pytest.mark.parametrize("point", ["loading and snapshots", "fitting", "run just created",
                                   "nested runs logging", "version just registered"])
def test_a_killed_train_leaves_nothing_that_is_promoted_or_served(home, point):
    ready = _points(home)[point]()
    proc = home.start(*home.train_args)
    killed = kill_when(proc, ready)
    assert killed, f"train ended before the kill point {point!r}"
    # the next command fails the runs the dead process left RUNNING
    assert home.churn("compare", "--json").returncode == 0
    assert home.count("SELECT count(*) FROM runs WHERE status = 'RUNNING'") == 0
    assert _champion(home) == "1"
    for version, complete in _complete(home).items():
        if not complete:
            _refused(home, version)


def test_an_incomplete_version_is_refused_and_an_older_one_still_loads(home, monkeypatch):
    """Deterministic: a version registered as a killed train leaves it (tagged incomplete),
    and versions registered before the tag existed (none): loadable when their run FINISHED,
    refused when it did not."""
    import mlflow  # noqa: PLC0415

    # MLflow resolves a models:/m-... source with the global URI; the session's comes back
    tracking, registry = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        monkeypatch.delenv(var, raising=False)
    uri = f"sqlite:///{home.db}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        _versions_of_every_kind(home)
    finally:
        mlflow.set_tracking_uri(tracking)
        mlflow.set_registry_uri(registry)


def _versions_of_every_kind(home: Home) -> None:
    client = home.client()
    v1 = client.get_model_version("churn", "1")
    incomplete = client.create_model_version("churn", v1.source, v1.run_id,
                                             tags={"churn.complete": "false"})
    _refused(home, str(incomplete.version))
    legacy = client.create_model_version("churn", v1.source, v1.run_id)  # no tag, run FINISHED
    got = home.churn("score", "--customers", str(home.data / "customers.parquet"),
                     "--events", str(home.data / "events.parquet"), "--as-of", "2026-05-01",
                     "--model", f"models:/churn/{legacy.version}",
                     "--out", str(home.path / "legacy.csv"))
    assert got.returncode == 0, got.stderr[-1500:]
    run = client.create_run(client.get_run(v1.run_id).info.experiment_id)
    client.set_terminated(run.info.run_id, "FAILED")
    unfinished = client.create_model_version("churn", v1.source, run.info.run_id)
    _refused(home, str(unfinished.version))


def _logged(h: Home, as_of: str) -> list[str]:
    db = h.path / "mlruns" / "churn.db"
    if not db.exists():
        return []
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return [r[0] for r in con.execute(
            "SELECT customer_id FROM predictions WHERE source = 'score' AND as_of = ?",
            (f"{as_of} 00:00:00.000000",))]
    except sqlite3.OperationalError:  # the table is not made yet
        return []
    finally:
        con.close()


def test_a_killed_score_logs_all_or_nothing_and_a_re_run_logs_each_customer_once(home):
    as_of = "2026-04-15"
    out = home.path / "scores.parquet"
    args = ["score", "--customers", str(home.data / "customers.parquet"),
            "--events", str(home.data / "events.parquet"), "--as-of", as_of, "--out", str(out)]
    sizes = set()
    # kill once the scores file is written (the log is next), then once the log's transaction
    # is open (SQLite's journal is there)
    for ready in (out.exists, (home.path / "mlruns" / "churn.db-journal").exists):
        out.unlink(missing_ok=True)
        killed = kill_when(home.start(*args), ready, timeout=300)
        sizes.add(len(_logged(home, as_of)) if killed else -1)
    got = home.churn(*args)
    assert got.returncode == 0, got.stderr[-1500:]
    import pandas as pd  # noqa: PLC0415

    n = len(pd.read_parquet(out))
    assert sizes <= {0, n, -1}, (sizes, n)  # a killed run stored none of its rows, or all
    logged = _logged(home, as_of)
    assert len(logged) == n and len(set(logged)) == n
    assert home.churn(*args).returncode == 0  # and once more: nobody is stored twice
    assert sorted(_logged(home, as_of)) == sorted(logged)

"""churn monitor end to end: the trained fixture's model scores a later time with `churn score`
(which logs its predictions), once on the data as generated and once on a copy in which half
of the logins after a date are gone (dropped at random, seeded, here in the test). Monitoring
the shifted world flags the login features and exits 3; the steady world flags nothing and
exits 0. Realised metrics equal scikit-learn's on the same joined rows; the MLflow run and the
store's row exist."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from sklearn.metrics import brier_score_loss, roc_auc_score

from benchmarks.server import churn_serve
from scoring.health import latest_health
from scoring.records import engine_for, read_predictions
from scoring.settings import Settings
from tests.helpers import CHURN, Trained

SCORED_AT = "2026-05-30"  # a time whose 30-day horizon the generated data (to 2026-06-30) covers
SHIFT_FROM = pd.Timestamp("2026-04-20")
WINDOW = "16"


@dataclass
class World:
    events: Path
    database: str
    monitor: subprocess.CompletedProcess
    report: Path


def _churn(trained: Trained, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CHURN, *args], cwd=trained.home, env=env, capture_output=True,
                          text=True, timeout=600, check=False)


def _halve_logins(events: Path, out: Path) -> None:
    frame = pd.read_parquet(events)
    late_login = (frame["event_type"] == "login") & (frame["timestamp"] >= SHIFT_FROM)
    dropped = late_login & (np.random.default_rng(11).uniform(size=len(frame)) < 0.5)
    assert 0.4 < dropped.sum() / late_login.sum() < 0.6
    frame[~dropped].to_parquet(out, index=False)


@pytest.fixture(scope="module")
def worlds(trained: Trained, tmp_path_factory) -> dict[str, World]:
    folder = tmp_path_factory.mktemp("monitor")
    shifted = folder / "events-shifted.parquet"
    _halve_logins(trained.events, shifted)
    version = trained.result["model_version"]
    out = {}
    for name, events in (("steady", trained.events), ("shifted", shifted)):
        database = f"sqlite:///{folder / name}.db"
        env = {**trained.env, "CHURN_DATABASE_URL": database}
        scored = _churn(trained, env, "score", "--customers", str(trained.customers), "--events",
                        str(events), "--as-of", SCORED_AT, "--model", f"models:/churn/{version}",
                        "--out", str(folder / f"{name}-scores.parquet"))
        assert scored.returncode == 0, scored.stderr[-2000:]
        report = folder / f"{name}.html"
        proc = _churn(trained, env, "monitor", "--customers", str(trained.customers), "--events",
                      str(events), "--model-version", version, "--window", WINDOW,
                      "--report", str(report), *(["--json"] if name == "shifted" else []))
        assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
        out[name] = World(events, database, proc, report)
    return out


def _store(world: World, trained: Trained):
    return engine_for(Settings(home=trained.home, database_url=world.database))


def test_halved_logins_are_flagged_and_exit_3(worlds: dict[str, World], trained: Trained):
    proc = worlds["shifted"].monitor
    assert proc.returncode == 3, proc.stdout + proc.stderr
    row = latest_health(_store(worlds["shifted"], trained))
    assert row is not None and row.flagged and row.drifted == len(row.drift_flags)
    assert "n_login_30d" in row.drift_flags
    # what moved is logins, and the totals they are part of; nothing else
    assert all(re.search(r"login|events|active_days", f) for f in row.drift_flags), row.drift_flags
    printed = json.loads(proc.stdout)  # --json
    assert printed["flagged"] and printed["drifted"] == row.drift_flags
    assert any(f.startswith("feature n_login_30d drifted (PSI") for f in printed["flags"])
    assert printed["mlflow_run_id"] == row.mlflow_run_id


def test_the_same_run_without_the_shift_flags_nothing(worlds: dict[str, World], trained: Trained):
    proc = worlds["steady"].monitor
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "nothing flagged" in proc.stdout and "FLAGGED" not in proc.stdout
    row = latest_health(_store(worlds["steady"], trained))
    assert not row.flagged and row.drift_flags == [] and not row.score_flagged
    assert row.drift["n_login_30d"]["psi"] < 0.1
    assert row.drift_rows > 1000 and not row.auc_flagged


def _outcomes_by_hand(log: pd.DataFrame, customers: pd.DataFrame) -> pd.DataFrame:
    """The explicit 30-day label computed here with pandas, not with the monitor's SQL."""
    c = customers.assign(customer_id=customers["customer_id"].astype(str)).set_index("customer_id")
    as_of = pd.to_datetime(log["as_of"])
    churned = log["customer_id"].map(c["churned_at"])
    signup = log["customer_id"].map(c["signup_at"])
    active = (signup <= as_of) & ~(churned <= as_of)
    label = ((churned > as_of) & (churned <= as_of + pd.Timedelta(days=30))).astype(int)
    return log.assign(label=label)[active.to_numpy()]


def test_realised_metrics_equal_scikit_learns(worlds: dict[str, World], trained: Trained):
    world = worlds["steady"]
    row = latest_health(_store(world, trained))
    log = read_predictions(_store(world, trained))
    joined = _outcomes_by_hand(log, pd.read_parquet(trained.customers))
    assert len(joined) == row.matured_rows > 1000
    assert row.realised_auc == roc_auc_score(joined["label"], joined["probability"])
    accuracy = json.loads(mlflow.artifacts.load_text(f"runs:/{row.mlflow_run_id}/accuracy.json"))
    mine = accuracy["by_version"][row.model_version]
    assert mine["roc_auc"] == roc_auc_score(joined["label"], joined["probability"])
    assert mine["brier"] == brier_score_loss(joined["label"], joined["probability"])
    assert mine["churners"] == int(joined["label"].sum())
    assert mine["roc_auc_low"] < mine["roc_auc"] < mine["roc_auc_high"]
    # the test interval it is judged against is the one training logged
    test = MlflowClient().get_run(
        MlflowClient().get_model_version("churn", row.model_version).run_id).data.metrics
    assert row.test_auc_low == test["test_roc_auc_ci_low"]


def test_the_mlflow_run_and_the_report_exist(worlds: dict[str, World], trained: Trained):
    world = worlds["shifted"]
    row = latest_health(_store(world, trained))
    client = MlflowClient()
    run = client.get_run(row.mlflow_run_id)
    assert client.get_experiment(run.info.experiment_id).name == "monitoring"
    assert run.data.tags["churn.kind"] == "monitor"
    assert run.data.tags["churn.model_version"] == row.model_version
    assert run.data.metrics["flagged"] == 1.0
    assert run.data.metrics["psi_n_login_30d"] >= 0.2
    assert run.data.params["window_days"] == WINDOW
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"drift.csv", "accuracy.json", "report"} <= artifacts
    assert [a.path for a in client.list_artifacts(run.info.run_id, "report")] == [
        f"report/{world.report.name}"]
    html = world.report.read_text()
    assert "Model health" in html and "n_login_30d" in html and "data:image/png;base64," in html
    assert row.report == str(world.report)


def test_bad_input_is_one_line(worlds: dict[str, World], trained: Trained, tmp_path: Path):
    env = {**trained.env, "CHURN_DATABASE_URL": f"sqlite:///{tmp_path / 'empty.db'}"}
    unknown = _churn(trained, env, "monitor", "--customers", str(trained.customers), "--events",
                     str(trained.events), "--model-version", "999")
    assert unknown.returncode == 2
    assert unknown.stderr.startswith("error: --model-version: no version 999")
    assert len(unknown.stderr.strip().splitlines()) == 1


def test_an_empty_log_is_an_error_naming_it(trained: Trained, tmp_path: Path):
    """In process (the CLI's one line is the message of this error, as above)."""
    from features.tables import load_tables
    from monitoring.monitor import MonitorError, monitor

    settings = Settings(home=trained.home, database_url=f"sqlite:///{tmp_path / 'empty.db'}")
    tables = load_tables(trained.customers, trained.events)
    with pytest.raises(MonitorError, match="holds no prediction of model version"):
        monitor(settings, tables, trained.result["model_version"])


def test_drift_is_not_judged_on_predictions_of_customers_the_files_lack(trained: Trained,
                                                                        tmp_path: Path):
    """Enough predictions in the window, but of customers not in --customers (say /predict
    requests with histories of their own): drift is not judged on the few that are left. And
    another registered model's predictions with the same version number are not this one's."""
    from datetime import datetime

    from features.tables import load_tables
    from monitoring.monitor import monitor
    from scoring.predlog import make_row
    from scoring.records import write_predictions

    settings = Settings(home=trained.home, database_url=f"sqlite:///{tmp_path / 'strangers.db'}")
    version = trained.result["model_version"]
    at = datetime.fromisoformat(SCORED_AT)
    known = pd.read_parquet(trained.customers)["customer_id"].astype(str).head(250)
    write_predictions(engine_for(settings), [
        *(make_row(f"stranger-{i}", at, 0.1, "medium", [], version, "predict",
                   model_name="churn") for i in range(250)),
        *(make_row(c, at, 0.1, "medium", [], version, "score", model_name="churn-notebook")
          for c in known)])
    result = monitor(settings, load_tables(trained.customers, trained.events), version,
                     report=tmp_path / "r.html")
    assert not result.drift_judged and result.drift.empty
    assert any("only 0 of the window's predictions" in n for n in result.notes), result.notes


# -- the service: gauges on /metrics and the Model health page in a browser ----------------------


@pytest.fixture(scope="module")
def served(worlds: dict[str, World], trained: Trained, tmp_path_factory):
    """`churn serve` on the shifted world's store, which holds its flagged monitor run."""
    folder = tmp_path_factory.mktemp("monitor-serve")
    env = {**trained.env, "CHURN_DATABASE_URL": worlds["shifted"].database}
    with churn_serve(CHURN, trained.home, env, folder / "serve.log", ready_s=180) as server:
        yield server.url


def _metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", text, re.M)
    assert match, f"{name} not on /metrics"
    return float(match.group(1))


def test_metrics_show_the_last_monitor_runs_flags(served: str, worlds, trained: Trained):
    row = latest_health(_store(worlds["shifted"], trained))
    deadline = time.monotonic() + 60
    while True:  # the gauges are set by the service's thread right after it starts
        text = httpx.get(f"{served}/metrics", timeout=30).text
        if "churn_monitor_flagged" in text or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert _metric(text, "churn_monitor_flagged") == 1.0
    assert _metric(text, "churn_monitor_drifted_features") == row.drifted
    assert _metric(text, 'churn_monitor_feature_drift{feature="n_login_30d"}') == 1.0
    assert _metric(text, "churn_monitor_realised_auc") == pytest.approx(row.realised_auc)
    features = set(re.findall(r'churn_monitor_feature_drift\{feature="([^"]+)"\}', text))
    assert features == set(row.drift_flags)  # labelled by flagged features only


def test_browser_shows_the_model_health_page(served: str, worlds, tmp_path: Path):
    """Also the docs' screenshot: MONITOR_SCREENSHOTS=docs writes docs/model-health.png."""
    from playwright.sync_api import expect

    from tests.integration.test_review_page import _browser

    shots = Path(os.environ.get("MONITOR_SCREENSHOTS") or tmp_path)
    with _browser(served) as page:
        page.goto(served + "/review/")
        page.click("#nav-health")
        page.wait_for_url(re.compile(r"/review/health$"))
        expect(page.locator("h1")).to_have_text("Model health")
        expect(page.locator("#verdict-text")).to_contain_text("Needs attention")
        expect(page.locator("#verdict-text")).to_contain_text("'login' events in the last 30 days")
        # words, not column names or p-values (#25.12)
        shown = page.locator("main").inner_text()
        assert "n_login_30d" not in shown and not re.search(r"\d\.\d+e-\d+", shown), shown
        expect(page.locator("#drift svg")).to_be_visible()
        expect(page.locator("#accuracy svg")).to_be_visible()
        expect(page.locator("#drift-table tr.flagged").first).to_contain_text("login")
        expect(page.locator("#explain")).to_contain_text("What this page tells you")
        page.screenshot(path=str(shots / "model-health.png"), full_page=True)
    assert (shots / "model-health.png").stat().st_size > 10_000


def test_browser_calendar_drift_and_unjudged_checks_are_not_alarms(served: str, worlds,
                                                                   trained: Trained):
    """#25.13: a check whose only moved inputs change with the calendar is healthy, and a check
    that judged two predictions is "not judged", on the page a reviewer opens. Runs last: it
    adds two checks to the shifted world's store."""
    from dataclasses import replace

    from playwright.sync_api import expect

    from scoring.health import write_health
    from tests.integration.test_review_page import _browser

    engine = _store(worlds["shifted"], trained)
    row = latest_health(engine)
    drift = {"tenure_days": {"psi": 0.9, "p_value": 3.9e-59, "flagged": False, "calendar": True,
                             "beyond_chance": True, "label": "Days as a customer"},
             "n_login_30d": {"psi": 0.01, "p_value": 0.5, "flagged": False, "calendar": False,
                             "beyond_chance": False,
                             "label": "'login' events in the last 30 days"}}
    write_health(engine, replace(row, drift={}, drift_rows=2, matured_rows=2, realised_auc=1.0,
                                 drifted=0, score_flagged=False, auc_flagged=False,
                                 flagged=False, id=None, run_at=None))
    write_health(engine, replace(row, drift=drift, drifted=0, score_flagged=False,
                                 auc_flagged=False, flagged=False, id=None, run_at=None))
    with _browser(served) as page:
        page.goto(served + "/review/health")
        expect(page.locator("#verdict-text")).to_contain_text("Healthy")
        expect(page.locator("#drift-table")).to_contain_text("moves with the calendar")
        expect(page.locator("#drift-table")).to_contain_text("Days as a customer")
        statuses = page.locator("#runs td.status").all_inner_texts()
        assert statuses[:2] == ["healthy", "not judged"], statuses
        shown = page.locator("main").inner_text()
        assert "tenure_days" not in shown and "e-59" not in shown

"""The prediction log end to end: a real `churn serve` records what /predict, /predict_features
and /batch answered; 10,000 predictions through the service while `churn score` writes to the
same SQLite log are all there exactly once; the log and the contacts on a real PostgreSQL
server (Debian's, started here)."""

from __future__ import annotations

import io
import json
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families

from benchmarks.server import churn_serve, free_port
from scoring.predlog import PredictionLog, make_row, write_all
from scoring.records import (
    add_contact,
    check_contact,
    contacts_of,
    engine_for,
    latest_contacts,
    read_predictions,
)
from scoring.settings import Settings
from tests.helpers import CHURN
from tests.integration.postgres import Postgres

ROOT = Path(__file__).resolve().parents[2]
AS_OF = pd.Timestamp("2026-06-15")
AS_OF_TEXT = "2026-06-15T00:00:00"
LOAD_PREDICTIONS, LOAD_ROWS_PER_REQUEST, LOAD_CLIENTS = 10_000, 50, 8


def logged(url: str, source: str | None = None) -> pd.DataFrame:
    """The rows of the log at `url` (its tables are made if the service has not yet)."""
    return read_predictions(engine_for(Settings(database_url=url)), source=source)


def wait_for_rows(url: str, source: str, n: int, timeout: float = 60) -> pd.DataFrame:
    """The log's rows of `source` once there are `n` (the service writes in the background)."""
    deadline = time.monotonic() + timeout
    while True:
        got = logged(url, source)
        if len(got) >= n or time.monotonic() > deadline:
            return got
        time.sleep(0.2)


def counters(http: httpx.Client) -> dict[tuple[str, tuple], float]:
    """The churn_* samples of /metrics as {(name, sorted labels): value}."""
    text = http.get("/metrics").text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) if family.name.startswith("churn_")
            for s in family.samples if s.name.endswith("_total")}


def predicted(counts: dict, source: str) -> dict[str, float]:
    """churn_predictions_total of one source, by band."""
    out: dict[str, float] = {}
    for (name, pairs), value in counts.items():
        labels = dict(pairs)
        if name == "churn_predictions_total" and labels["source"] == source:
            out[labels["band"]] = out.get(labels["band"], 0) + value
    return out


def dropped(counts: dict) -> float:
    return sum(v for (name, _), v in counts.items() if name == "churn_prediction_log_dropped_total")


# --------------------------------------------------------------------------------------------
# Fixtures: one server whose log is a SQLite file of this module's own
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def log_url(tmp_path_factory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('predlog') / 'churn.db'}"


@pytest.fixture(scope="module")
def server(trained, tmp_path_factory, log_url):
    with churn_serve(CHURN, trained.home, {**trained.env, "CHURN_DATABASE_URL": log_url},
                     tmp_path_factory.mktemp("serve") / "serve.log") as srv:
        yield srv


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.url, timeout=120) as client:
        yield client


def _json(v: object) -> object:
    if v is None or (not isinstance(v, str) and pd.isna(v)):
        return None
    if isinstance(v, float | np.floating):
        return float(v)
    if isinstance(v, np.integer):
        return int(v)
    return v


@pytest.fixture(scope="module")
def feature_rows(trained, http) -> list[dict]:
    """Every customer active at AS_OF as a /predict_features row of the served model."""
    from features.engine import feature_table
    from scoring.store import load_model

    version = http.get("/model").json()["version"]
    loaded = load_model(f"models:/churn/{version}")
    customers = pd.read_parquet(trained.customers)
    events = pd.read_parquet(trained.events)
    feats = feature_table(customers, events, loaded.model.spec, [AS_OF])
    names = loaded.model.feature_names
    return [{"customer_id": str(r["customer_id"]), "as_of": AS_OF_TEXT,
             **{f: _json(r[f]) for f in names}} for _, r in feats.iterrows()]


# --------------------------------------------------------------------------------------------
# What each endpoint answered is what the log holds
# --------------------------------------------------------------------------------------------


def _same(rows: pd.DataFrame, answer: dict, source: str, as_of: datetime,
          started: datetime) -> None:
    """The log rows of one response hold its predictions, one row each, in order."""
    preds = answer["predictions"]
    assert len(rows) == len(preds)
    for (_, row), pred in zip(rows.iterrows(), preds, strict=True):
        assert row["customer_id"] == pred["customer_id"]
        assert row["probability"] == pred["churn_probability"]  # the very float answered
        assert row["band"] == pred["risk_band"]
        assert json.loads(row["reasons"]) == [r["feature"] for r in pred["reasons"]]
        assert row["model_version"] == pred["model_version"] == answer["model_version"]
        assert row["model_name"] == "churn"  # the registered model the version belongs to
        assert row["source"] == source and row["as_of"] == as_of
        assert started <= row["created_at"] <= datetime.now(UTC).replace(tzinfo=None)
    assert rows["record_id"].is_unique


def test_the_service_logs_what_it_answered(http, server, trained, log_url, feature_rows):
    started = datetime.now(UTC).replace(tzinfo=None)
    before = counters(http)

    body = json.loads((ROOT / "examples" / "predict.json").read_text())
    answer = http.post("/predict", json=body)
    assert answer.status_code == 200, answer.text
    as_of = pd.Timestamp(body["as_of"])
    as_of = (as_of.tz_convert("UTC").tz_localize(None) if as_of.tzinfo else as_of).to_pydatetime()
    _same(wait_for_rows(log_url, "predict", len(body["customers"])), answer.json(), "predict",
          as_of, started)

    rows = feature_rows[:6]
    answer = http.post("/predict_features", json={"rows": rows, "reasons": True})
    assert answer.status_code == 200, answer.text
    _same(wait_for_rows(log_url, "predict_features", len(rows)), answer.json(),
          "predict_features", AS_OF.to_pydatetime(), started)

    # a refused request answered nothing and logs nothing
    bad = [dict(rows[0]), dict(rows[1])]
    del bad[1][next(k for k in bad[1] if k not in ("customer_id", "as_of"))]
    assert http.post("/predict_features", json={"rows": bad}).status_code == 400

    # a /batch job logs each row of its Parquet as source batch
    customers = pd.read_parquet(trained.customers).head(200)
    events = pd.read_parquet(trained.events)
    events = events[events["customer_id"].isin(customers["customer_id"])]
    files = {}
    for name, frame in (("customers", customers), ("events", events)):
        path = trained.home / f"predlog-{name}.parquet"
        frame.to_parquet(path)
        files[name] = (path.name, path.read_bytes(), "application/octet-stream")
    resp = http.post("/batch/submit", data={"as_of": "2026-06-15"}, files=files)
    assert resp.status_code == 200, resp.text
    task = resp.json()["task_id"]
    deadline = time.monotonic() + 120
    while http.get("/batch/status", params={"task_id": task}).json()["status"] in (
            "pending", "in_progress"):
        assert time.monotonic() < deadline, "the batch job did not finish"
        time.sleep(0.3)
    result = http.get("/batch/get", params={"task_id": task})
    assert result.status_code == 200, result.text[:300]
    scores = pd.read_parquet(io.BytesIO(result.content))
    batch = logged(log_url, "batch")
    assert len(batch) == len(scores) > 0
    merged = batch.merge(scores, on="customer_id", validate="1:1")
    np.testing.assert_array_equal(merged["probability"], merged["churn_probability"])
    assert (merged["band"] == merged["risk_band"]).all()
    assert (merged["model_version_x"] == merged["model_version_y"]).all()
    assert (merged["model_name"] == "churn").all()
    assert (merged["as_of_x"] == AS_OF).all()
    first = merged.iloc[0]
    assert json.loads(first["reasons"]) == [first[f"reason_{i}_feature"] for i in (1, 2, 3)
                                            if first[f"reason_{i}_feature"]]

    # nothing else was logged, and /metrics counted the answered predictions by band
    assert len(logged(log_url)) == len(body["customers"]) + len(rows) + len(scores)
    after = counters(http)
    for source, n in (("predict", len(body["customers"])), ("predict_features", len(rows))):
        grew = {b: after_n - predicted(before, source).get(b, 0)
                for b, after_n in predicted(after, source).items()}
        assert sum(grew.values()) == n and set(grew) <= {"low", "medium", "high"}
    assert dropped(after) == 0


def test_a_test_call_is_logged_marked_and_left_out_of_monitoring(http, log_url, feature_rows):
    """`X-Churn-Test: 1` (trying the service): answered as usual, logged with the mark, and
    `churn monitor`'s default date, counts and windows never see it, though its `as_of` is
    later than anything logged."""
    from monitoring.monitor import count_logged, latest_as_of

    engine = engine_for(Settings(database_url=log_url))
    version = http.get("/model").json()["version"]
    ever = (datetime(1900, 1, 1), datetime(2200, 1, 1))
    real = [{**r, "customer_id": f"real-{i}"} for i, r in enumerate(feature_rows[:2])]
    assert http.post("/predict_features", json={"rows": real}).status_code == 200
    deadline = time.monotonic() + 60
    while not logged(log_url)["customer_id"].isin(["real-0", "real-1"]).sum() == 2:
        assert time.monotonic() < deadline, "the real call was not logged"
        time.sleep(0.2)
    date, count = latest_as_of(engine, "churn", version), count_logged(engine, "churn", *ever)
    assert date is not None and count >= 2
    later = date + pd.Timedelta(days=40)
    rows = [{**r, "as_of": later.isoformat()} for r in feature_rows[:4]]
    answer = http.post("/predict_features", json={"rows": rows}, headers={"X-Churn-Test": "1"})
    assert answer.status_code == 200, answer.text
    deadline = time.monotonic() + 60
    while len(marked := logged(log_url).query("test")) < len(rows):
        assert time.monotonic() < deadline, "the test call was not logged"
        time.sleep(0.2)
    assert len(marked) == len(rows) and (marked["as_of"] == later).all()
    assert marked["customer_id"].tolist() == [r["customer_id"] for r in rows]
    assert latest_as_of(engine, "churn", version) == date
    assert count_logged(engine, "churn", *ever) == count
    assert not read_predictions(engine, test=False)["test"].any()
    # the same call unmarked is real traffic
    assert http.post("/predict_features", json={"rows": rows[:1]}).status_code == 200
    deadline = time.monotonic() + 60
    while latest_as_of(engine, "churn", version) != later:
        assert time.monotonic() < deadline, "the real call was not logged"
        time.sleep(0.2)
    assert count_logged(engine, "churn", *ever) == count + 1


def test_10000_predictions_while_churn_score_writes_are_each_logged_once(
        http, server, trained, log_url, feature_rows, tmp_path):
    """The issue's load test: concurrent clients send 10,000 predictions to /predict_features
    while `churn score` writes its scores to the same SQLite log; the server is then stopped at
    once, so what its writer still held is drained on shutdown. Every prediction is logged
    exactly once."""
    ids = [f"load-{i}" for i in range(LOAD_PREDICTIONS)]
    rows = [{**feature_rows[i % len(feature_rows)], "customer_id": cid}
            for i, cid in enumerate(ids)]
    bodies = [{"rows": rows[i:i + LOAD_ROWS_PER_REQUEST], "reasons": i % 200 == 0}
              for i in range(0, LOAD_PREDICTIONS, LOAD_ROWS_PER_REQUEST)]
    out = tmp_path / "scores.parquet"
    score = subprocess.Popen(
        [CHURN, "score", "--customers", str(trained.customers), "--events", str(trained.events),
         "--as-of", "2026-06-15", "--out", str(out)], cwd=trained.home,
        env={**trained.env, "CHURN_DATABASE_URL": log_url, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    scored = threading.Event()  # churn score has written its file and now writes the log
    lines: list[str] = []

    def watch() -> None:
        for line in score.stdout:
            lines.append(line)
            if line.startswith("scored "):
                scored.set()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()

    def send(body: dict) -> int:
        return http.post("/predict_features", json=body).status_code

    with ThreadPoolExecutor(LOAD_CLIENTS) as pool:
        statuses = list(pool.map(send, bodies[:len(bodies) // 5]))
        assert scored.wait(180), "churn score did not finish scoring: " + "".join(lines)
        statuses += list(pool.map(send, bodies[len(bodies) // 5:]))
    assert statuses == [200] * len(bodies)
    assert dropped(counters(http)) == 0

    _, left = server.stop(30)  # SIGTERM: the service drains its log before it exits
    assert not left
    assert score.wait(180) == 0, score.stderr.read()[-2000:]
    watcher.join(10)
    assert any(line.startswith("logged ") for line in lines), "".join(lines)

    served = logged(log_url, "predict_features")
    served = served[served["customer_id"].str.startswith("load-")]
    assert len(served) == LOAD_PREDICTIONS and served["customer_id"].is_unique
    assert set(served["customer_id"]) == set(ids) and served["record_id"].is_unique
    cli = logged(log_url, "score")
    cli = cli[cli["created_at"] >= served["created_at"].min()]  # this run's
    written = pd.read_parquet(out)
    assert len(cli) == len(written) and cli["customer_id"].is_unique
    assert set(cli["customer_id"]) == set(written["customer_id"].astype(str))
    # the CLI made its records while the service's were being made: both wrote at once
    assert served["created_at"].min() < cli["created_at"].min() < served["created_at"].max()


# --------------------------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def postgres():
    server = Postgres.start()
    try:
        yield server
    finally:
        server.stop()


def test_the_log_and_the_contacts_on_postgresql(postgres, tmp_path):
    settings = Settings(home=tmp_path, database_url=postgres.url)
    engine = engine_for(settings)
    assert engine.dialect.name == "postgresql"
    when = datetime(2026, 6, 15)
    sent = [make_row(f"pg-{i}", when, i / 3000, "low", ["n_login_7d", "plan"], "4", "predict")
            for i in range(3000)]
    plog = PredictionLog(lambda: engine_for(settings), max_queue=5000, batch_rows=500)
    for i in range(0, 3000, 100):
        plog.record(sent[i:i + 100])
    assert plog.close(30) and plog.dropped == {}
    assert write_all(engine, [sent[:1000]]) == 0  # a retried chunk stores nothing twice
    got = read_predictions(engine, source="predict", since=when)
    assert len(got) == 3000 and got["record_id"].is_unique
    assert got["probability"].tolist() == [r["probability"] for r in sent]
    assert json.loads(got["reasons"].iloc[0]) == ["n_login_7d", "plan"]
    assert got["as_of"].iloc[0] == when and got["model_version"].iloc[0] == "4"

    first = add_contact(engine, check_contact("c1", "Ann", "called", "no_answer", settings),
                        "4", when)
    second = add_contact(engine, check_contact("c1", "Ann", "again", "retained", settings))
    assert [c.id for c in contacts_of(engine, "c1")] == [second.id, first.id]
    assert latest_contacts(engine, ["c1", "nobody"])["c1"].outcome == "retained"


def test_churn_score_logs_to_postgresql(trained, postgres, tmp_path):
    out = tmp_path / "scores.parquet"
    proc = subprocess.run(
        [CHURN, "score", "--customers", str(trained.customers), "--events", str(trained.events),
         "--as-of", "2026-05-01", "--out", str(out)], cwd=trained.home,
        env={**trained.env, "CHURN_DATABASE_URL": postgres.url}, capture_output=True, text=True,
        timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"logged {len(pd.read_parquet(out)):,} predictions (source score) in {postgres.url}" \
        in proc.stdout
    written = pd.read_parquet(out)
    got = read_predictions(engine_for(Settings(home=tmp_path, database_url=postgres.url)),
                           source="score", since=datetime(2026, 5, 1), until=datetime(2026, 5, 2))
    merged = got.merge(written, on="customer_id", validate="1:1")
    assert len(merged) == len(written) == len(got)
    np.testing.assert_array_equal(merged["probability"], merged["churn_probability"])
    assert (merged["band"] == merged["risk_band"]).all()


def test_a_log_made_before_the_test_mark_gets_it_on_postgresql(postgres):
    """A `predictions` table without the `test` column (made by an earlier release) gets it on
    first use, its rows as real traffic; a marked row is then stored as a test."""
    from sqlalchemy import create_engine, make_url, text

    server = create_engine(postgres.url, isolation_level="AUTOCOMMIT")
    with server.connect() as conn:  # a database of its own: the other tests' log stays as it is
        conn.execute(text("CREATE DATABASE old_log"))
    server.dispose()
    _old_log_gets_the_test_column(
        make_url(postgres.url).set(database="old_log").render_as_string(hide_password=False))


def _old_log_gets_the_test_column(url: str) -> None:
    from sqlalchemy import MetaData, Table, create_engine

    from scoring.records import predictions

    raw = create_engine(url)
    with raw.begin() as conn:
        old = Table("predictions", MetaData(),
                    *[c._copy() for c in predictions.columns if c.name != "test"])
        old.create(conn)
        row = make_row("old-1", datetime(2026, 6, 1), 0.2, "medium", [], "1", "predict",
                       model_name="churn")
        row.pop("test")
        conn.execute(old.insert(), [{**row, "reasons": "[]"}])
    raw.dispose()
    engine = engine_for(Settings(database_url=url))
    got = read_predictions(engine)
    assert got["customer_id"].tolist() == ["old-1"] and not got["test"].any()
    write_all(engine, [[make_row("new-1", datetime(2026, 6, 2), 0.1, "low", [], "1", "predict",
                                 model_name="churn", test=True)]])
    assert read_predictions(engine, test=True)["customer_id"].tolist() == ["new-1"]
    assert read_predictions(engine, test=False)["customer_id"].tolist() == ["old-1"]


def test_a_log_made_before_the_test_mark_gets_it_on_sqlite(tmp_path):
    _old_log_gets_the_test_column(f"sqlite:///{tmp_path / 'old.db'}")


def test_churn_score_marks_its_records_under_churn_test_traffic(trained, tmp_path):
    url = f"sqlite:///{tmp_path / 'log.db'}"
    out = tmp_path / "scores.parquet"
    proc = subprocess.run(
        [CHURN, "score", "--customers", str(trained.customers), "--events", str(trained.events),
         "--as-of", "2026-06-15", "--out", str(out)], cwd=trained.home,
        env={**trained.env, "CHURN_DATABASE_URL": url, "CHURN_TEST_TRAFFIC": "true"},
        capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = logged(url, "score")
    assert len(got) == len(pd.read_parquet(out)) > 0 and got["test"].all()


def test_a_store_that_cannot_be_written_costs_churn_score_no_scores(trained, tmp_path):
    """One warning line, exit 0, and the scores file is there."""
    out = tmp_path / "scores.parquet"
    port = free_port()  # nobody listens there
    proc = subprocess.run(
        [CHURN, "score", "--customers", str(trained.customers), "--events", str(trained.events),
         "--as-of", "2026-06-15", "--out", str(out)], cwd=trained.home,
        env={**trained.env, "CHURN_DATABASE_URL": f"postgresql+psycopg://u:secret@127.0.0.1:{port}/x"},
        capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(pd.read_parquet(out)) > 0
    warning = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and "prediction log stored 0 of" in warning[0]
    assert "secret" not in proc.stderr + proc.stdout

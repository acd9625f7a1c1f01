"""The prediction log's queue and writer against a real SQLite store: a full queue drops and
counts, close drains, a failed write is retried with the same record ids (never stored twice),
rows the database refuses are given up and counted; records from predictor output and scores
tables."""

from __future__ import annotations

import sqlite3
import threading
import time
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import create_engine, func, select

from scoring.predictor import Predictions
from scoring.predlog import (
    MAX_FAILED_ATTEMPTS,
    PredictionLog,
    make_row,
    open_prediction_log,
    prediction_rows,
    score_rows,
    write_all,
)
from scoring.records import engine_for, metadata, predictions, read_predictions
from scoring.settings import Settings

AS_OF = datetime(2026, 6, 15)
NO_WAIT = (0.01, 0.01, 0.01)


def rows(n: int, prefix: str = "c") -> list[dict]:
    return [make_row(f"{prefix}{i}", AS_OF, i / max(n, 1), "low", ["logins_7d"], "3", "predict")
            for i in range(n)]


@pytest.fixture
def db(tmp_path):
    """(path, engine) of a SQLite store whose writers give up on a lock after 0.1 s."""
    path = tmp_path / "log.db"
    engine = create_engine(f"sqlite:///{path}", connect_args={"timeout": 0.1})
    metadata.create_all(engine)
    yield path, engine
    engine.dispose()


def stored(engine) -> pd.DataFrame:
    return read_predictions(engine)


def wait_until(check, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def test_a_full_queue_drops_new_records_and_counts_them(db):
    _, engine = db
    gate = threading.Event()
    drops: list[tuple[str, int]] = []

    def slow_engine():
        gate.wait(10)
        return engine

    plog = PredictionLog(slow_engine, max_queue=10, on_drop=lambda r, n: drops.append((r, n)))
    assert plog.record(rows(1, "first")) == 1
    wait_until(lambda: plog._busy == 1)  # the writer holds the first row, waiting for the store
    start = time.perf_counter()
    assert plog.record(rows(15)) == 10  # never waits for the writer
    assert time.perf_counter() - start < 1.0
    assert plog.record(rows(3, "late")) == 0
    assert plog.dropped == {"queue_full": 8} and drops == [("queue_full", 5), ("queue_full", 3)]
    gate.set()
    assert plog.close(10)
    got = stored(engine)
    assert sorted(got["customer_id"]) == sorted(["first0", *[f"c{i}" for i in range(10)]])
    assert plog.written == 11


def test_close_drains_the_queue(db):
    _, engine = db
    plog = PredictionLog(lambda: engine, max_queue=5000, batch_rows=100)
    sent = rows(2000)
    for i in range(0, 2000, 50):
        plog.record(sent[i:i + 50])
    assert plog.close(30)
    got = stored(engine)
    assert len(got) == 2000 and set(got["record_id"]) == {r["record_id"] for r in sent}
    assert plog.pending() == 0 and plog.dropped == {}
    assert plog.record(rows(2)) == 0 and plog.dropped == {"shutdown": 2}  # closed: counted


def test_close_gives_up_after_its_time_and_counts_what_is_left(db):
    path, engine = db
    lock = sqlite3.connect(path)
    lock.execute("BEGIN EXCLUSIVE")  # another writer holds the database
    try:
        plog = PredictionLog(lambda: engine, max_queue=100, batch_rows=10, delays=NO_WAIT)
        plog.record(rows(30))
        start = time.monotonic()
        assert not plog.close(0.5)
        assert time.monotonic() - start < 5
        assert plog.dropped == {"shutdown": 30} and plog.written == 0
        assert "locked" in plog.last_error
    finally:
        lock.rollback()
        lock.close()


def test_close_counts_the_batch_the_writer_still_holds_once(tmp_path):
    """A writer stuck in one write (a lock held longer than the drain) when close() gives up:
    its batch is counted as dropped with the queue, and not again when the write ends."""
    path = tmp_path / "log.db"
    engine = create_engine(f"sqlite:///{path}", connect_args={"timeout": 3})
    metadata.create_all(engine)
    lock = sqlite3.connect(path)
    lock.execute("BEGIN EXCLUSIVE")
    try:
        plog = PredictionLog(lambda: engine, max_queue=100, batch_rows=10, delays=NO_WAIT)
        plog.record(rows(30))
        wait_until(lambda: plog.pending() == 30 and plog._busy == 10)
        assert not plog.close(0.1)  # the writer waits 3 s for the lock
        assert plog.dropped == {"shutdown": 30}
        plog._thread.join(10)
        assert not plog._thread.is_alive() and plog.dropped == {"shutdown": 30}
    finally:
        lock.rollback()
        lock.close()
        engine.dispose()


def test_a_nul_in_a_value_never_reaches_the_database():
    """PostgreSQL refuses NUL in text, and one such row would fail its whole batch."""
    row = make_row("a\x00b", AS_OF, 0.5, "low", ["x\x00"], "1\x00", "predict")
    assert "\x00" not in row["customer_id"] + "".join(row["reasons"]) + row["model_version"]
    assert row["customer_id"] == "a\ufffdb"


def test_a_failed_write_is_retried_with_the_same_record_ids_and_stored_once(db):
    path, engine = db
    lock = sqlite3.connect(path)
    lock.execute("BEGIN EXCLUSIVE")
    sent = rows(40)
    plog = PredictionLog(lambda: engine, max_queue=100, batch_rows=100, delays=NO_WAIT)
    plog.record(sent)
    wait_until(lambda: plog.last_error is not None)  # the writer failed at least once
    # as if an earlier attempt had committed before its answer was lost: half the rows are in
    lock.executemany(
        "INSERT INTO predictions (record_id, customer_id, as_of, probability, band, reasons, "
        "model_version, source, created_at) VALUES (?, ?, ?, ?, ?, '[]', ?, ?, ?)",
        [(r["record_id"], r["customer_id"], str(r["as_of"]), r["probability"], r["band"],
          r["model_version"], r["source"], str(r["created_at"])) for r in sent[:20]])
    lock.commit()
    lock.close()
    assert plog.flush(10)
    got = stored(engine)
    assert len(got) == 40 and got["record_id"].is_unique
    assert set(got["record_id"]) == {r["record_id"] for r in sent}
    assert plog.written == 20 and plog.dropped == {} and plog.last_error is None
    plog.close()


def test_rows_the_database_refuses_are_given_up_and_counted(db):
    """A record the database refuses is given up alone: the rest of its batch is stored."""
    _, engine = db
    drops: list[tuple[str, int]] = []
    plog = PredictionLog(lambda: engine, max_queue=100, delays=NO_WAIT,
                         on_drop=lambda r, n: drops.append((r, n)))
    bad = rows(3)
    bad[1]["customer_id"] = None  # NOT NULL: this record can never be stored
    plog.record(bad)
    assert plog.flush(10)
    plog.record(rows(2, "good"))  # the writer goes on with the next batch
    assert plog.close(10)
    assert drops == [("write_failed", 1)]
    assert sorted(stored(engine)["customer_id"]) == ["c0", "c2", "good0", "good1"]


def test_a_table_that_refuses_every_record_costs_one_attempt_a_record(db, tmp_path):
    """A systemic refusal (here a trigger; in life an altered table) gives the batch up after
    MAX_FAILED_ATTEMPTS and each record after one more try: not MAX_FAILED_ATTEMPTS waits a
    record, which stalled the writer for minutes on a full batch."""
    _, engine = db
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TRIGGER refuse BEFORE INSERT ON predictions "
                             "BEGIN SELECT RAISE(ABORT, 'refused by policy'); END")
    calls = {"n": 0}

    def counted():
        calls["n"] += 1
        return engine

    drops: list[tuple[str, int]] = []
    plog = PredictionLog(counted, max_queue=100, delays=NO_WAIT,
                         on_drop=lambda r, n: drops.append((r, n)),
                         dead_letter=tmp_path / "dead.jsonl")
    plog.record(rows(40))
    assert plog.close(10)
    assert calls["n"] == MAX_FAILED_ATTEMPTS + 40
    assert drops == [("write_failed", 40)] and plog.kept == 40
    assert "refused by policy" in (tmp_path / "dead.jsonl").read_text()
    assert stored(engine).empty


@pytest.mark.parametrize("probability", [float("nan"), None, 1.5, float("inf")])
def test_a_probability_that_is_no_number_from_0_to_1_is_set_aside_and_kept(db, tmp_path,
                                                                           probability):
    _, engine = db
    drops: list[tuple[str, int]] = []
    plog = PredictionLog(lambda: engine, max_queue=100, delays=NO_WAIT,
                         on_drop=lambda r, n: drops.append((r, n)),
                         dead_letter=tmp_path / "dead.jsonl")
    batch = rows(3)
    batch[1]["probability"] = probability
    plog.record(batch)
    assert plog.close(10)
    assert drops == [("write_failed", 1)] and plog.kept == 1
    assert sorted(stored(engine)["customer_id"]) == ["c0", "c2"]
    assert "is not a number from 0 to 1" in (tmp_path / "dead.jsonl").read_text()


def test_a_store_that_is_down_at_start_delays_the_writes(db):
    _, engine = db
    calls = {"n": 0}

    def flaky():
        calls["n"] += 1
        if calls["n"] < 3:
            from sqlalchemy.exc import OperationalError

            raise OperationalError("connect", {}, Exception("server not reachable"))
        return engine

    plog = PredictionLog(flaky, max_queue=100, delays=NO_WAIT)
    plog.record(rows(5))
    assert plog.close(10)
    assert len(stored(engine)) == 5 and calls["n"] == 3


def test_write_all_retries_a_lock_and_raises_what_it_cannot_store(db):
    path, engine = db
    lock = sqlite3.connect(path, check_same_thread=False)
    lock.execute("BEGIN EXCLUSIVE")
    threading.Timer(0.3, lambda: (lock.rollback(), lock.close())).start()
    seen: list[int] = []
    sent = rows(25)
    assert write_all(engine, [sent[:10], sent[10:]], seen.append, delays=(0.2,) * 10) == 25
    assert seen == [10, 25]
    assert write_all(engine, [sent], delays=NO_WAIT) == 0  # stored already: nothing twice
    bad = rows(2, "bad")
    bad[0]["probability"] = None
    with pytest.raises(Exception, match="NOT NULL"):
        write_all(engine, [rows(3, "kept"), bad], delays=NO_WAIT)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(predictions)).scalar() == 28


def test_records_of_predictor_output_name_the_reasons_top_first():
    frame = pd.DataFrame({"customer_id": ["a", "b"], "churn_probability": [0.8, 0.05],
                          "risk_band": ["high", "low"]})
    reasons = [[{"feature": "logins_7d", "text": "x"}, {"feature": "tickets_30d", "text": "y"}],
               []]
    out = Predictions(frame, reasons, np.empty((2, 0)), [[], []])
    got = prediction_rows(out, datetime(2026, 6, 15, 9, tzinfo=UTC), "7", "predict")
    assert [r["reasons"] for r in got] == [["logins_7d", "tickets_30d"], []]
    assert got[0]["as_of"] == datetime(2026, 6, 15, 9) and got[0]["as_of"].tzinfo is None
    assert [r["band"] for r in got] == ["high", "low"] and got[1]["probability"] == 0.05
    assert len({r["record_id"] for r in got}) == 2 and got[0]["source"] == "predict"


def test_records_of_a_scores_table():
    scores = pd.DataFrame({
        "customer_id": [1, 2], "churn_probability": [0.4, 0.2], "risk_band": ["high", "medium"],
        "as_of": pd.to_datetime(["2026-06-30", "2026-06-30"]),
        "reason_1_feature": ["logins_7d", None], "reason_1_text": ["t", None],
        "reason_2_feature": ["plan", None], "reason_10_feature": ["seats", None],
        "change_1_feature": ["ignored", "ignored"], "model_version": ["churn v2", "churn v2"]})
    got = score_rows(scores, "batch")
    assert [r["customer_id"] for r in got] == ["1", "2"]
    assert got[0]["reasons"] == ["logins_7d", "plan", "seats"] and got[1]["reasons"] == []
    assert got[0]["as_of"] == datetime(2026, 6, 30) and got[0]["model_version"] == "churn v2"
    assert {r["source"] for r in got} == {"batch"}


def test_long_values_are_cut_to_the_columns_widths():
    row = make_row("x" * 500, AS_OF, 0.5, "medium", [], "v" * 300, "predict")
    assert len(row["customer_id"]) == 200 and len(row["model_version"]) == 200


def test_the_log_is_on_by_default_and_one_setting_turns_it_off(tmp_path):
    assert open_prediction_log(Settings(home=tmp_path, prediction_log=False)) is None
    plog = open_prediction_log(Settings(home=tmp_path, prediction_log_queue=7))
    assert plog is not None and plog.max_queue == 7
    plog.record(rows(3))
    assert plog.close(10)
    assert len(read_predictions(engine_for(Settings(home=tmp_path)))) == 3


def test_the_counters_labels_are_bounded():
    from prometheus_client import REGISTRY

    from serving import metrics

    def value(**labels) -> float:
        return REGISTRY.get_sample_value("churn_predictions_total", labels) or 0.0

    metrics.init_prediction_counters()
    before = value(band="other", model_version="other", source="other")
    versions = [f"v{i}" for i in range(metrics.MAX_VERSION_LABELS + 5)]
    metrics.count_predictions([("high", v) for v in versions], "predict")
    metrics.count_predictions([("weird", "v-late"), ("low", "v0")], "somewhere")
    named = sum(value(band="high", model_version=v, source="predict") for v in versions)
    assert named + value(band="high", model_version="other", source="predict") >= len(versions)
    assert value(band="high", model_version=versions[-1], source="predict") == 0  # past the bound
    assert value(band="other", model_version="other", source="other") == before + 1
    metrics.count_dropped("queue_full", 3)
    metrics.count_dropped("anything else", 1)
    assert REGISTRY.get_sample_value("churn_prediction_log_dropped_total",
                                     {"reason": "other"}) >= 1

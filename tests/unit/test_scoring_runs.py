"""A scoring run's records (`churn score`, a /batch job) are stored all or none, with ids
derived from the run's id, so that a run that dies part way leaves nothing and a re-run stores
each customer once."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import pytest
from sqlalchemy import create_engine

from scoring.batch import scoring_run_id
from scoring.predlog import run_id, score_rows, write_run
from scoring.records import metadata, read_predictions


@pytest.fixture
def engine(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'log.db'}")
    metadata.create_all(engine)
    yield engine
    engine.dispose()


def scores(n: int, start: int = 0) -> pd.DataFrame:
    return pd.DataFrame({
        "customer_id": [f"c{i}" for i in range(start, start + n)],
        "churn_probability": [0.5] * n, "risk_band": ["high"] * n,
        "as_of": pd.to_datetime(["2026-06-30"] * n), "reason_1_feature": ["logins_7d"] * n,
        "model_version": ["3"] * n})


def chunks_of(run: str | None, fail_after: int | None = None):
    def chunks():
        for i in range(3):
            if fail_after is not None and i == fail_after:
                raise RuntimeError("killed part way")
            yield score_rows(scores(100, 100 * i), "score", "churn", run)
    return chunks


def test_a_run_that_fails_part_way_stores_nothing(engine):
    with pytest.raises(RuntimeError, match="part way"):
        write_run(engine, chunks_of(run_id("churn", "3", "x"), fail_after=2))
    assert read_predictions(engine).empty


def test_a_re_run_stores_each_customer_once(engine):
    run = run_id("churn", "3", "2026-06-30", "score", "inputs")
    seen: list[int] = []
    assert write_run(engine, chunks_of(run), seen.append) == 300
    assert seen == [100, 200, 300]
    assert write_run(engine, chunks_of(run)) == 0
    got = read_predictions(engine)
    assert len(got) == 300 and got["customer_id"].is_unique


def test_record_ids_are_the_runs_and_differ_between_runs():
    a = score_rows(scores(2), "score", "churn", run_id("churn", "3", "t1"))
    again = score_rows(scores(2), "score", "churn", run_id("churn", "3", "t1"))
    other = score_rows(scores(2), "score", "churn", run_id("churn", "4", "t1"))
    assert [r["record_id"] for r in a] == [r["record_id"] for r in again]
    assert not {r["record_id"] for r in a} & {r["record_id"] for r in other}
    assert len({r["record_id"] for r in a}) == 2 and all(len(r["record_id"]) == 32 for r in a)
    fresh = score_rows(scores(2), "score", "churn")  # no run: fresh ids, as before
    assert fresh[0]["record_id"] != score_rows(scores(2), "score", "churn")[0]["record_id"]


def test_the_run_id_follows_model_time_source_and_inputs(tmp_path):
    class Events:
        def __init__(self, path):
            self.path = str(path)

    class Tables:
        def __init__(self, customers, events):
            self.customers, self.events = customers, Events(events)

    events = tmp_path / "events.csv"
    events.write_text("customer_id,timestamp,event_type\nc0,2026-01-01,login\n")
    cust = pd.DataFrame({"customer_id": ["c0"], "signup_at": pd.to_datetime(["2025-01-01"])})
    t = Tables(cust, events)
    when = datetime(2026, 6, 30)
    first = scoring_run_id("churn", "3", when, "score", t)
    assert first == scoring_run_id("churn", "3", when, "score", Tables(cust.copy(), events))
    assert first != scoring_run_id("churn", "4", when, "score", t)
    assert first != scoring_run_id("churn", "3", datetime(2026, 7, 1), "score", t)
    assert first != scoring_run_id("churn", "3", when, "batch", t)
    assert first != scoring_run_id("churn", "3", when, "score",
                                   Tables(cust.assign(customer_id=["c1"]), events))
    events.write_text("customer_id,timestamp,event_type\nc0,2026-01-01,login\nc0,2026-01-02,x\n")
    assert first != scoring_run_id("churn", "3", when, "score", t)

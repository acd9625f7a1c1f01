"""One rule for valid times (features.contract.to_utc_datetime): a time whose UTC reading
leaves the years 1 to 9999 is refused by every request schema, by the CLI's --as-of and by the
prediction log's writer, which counts and keeps such a record instead of losing it."""

from __future__ import annotations

import json
import subprocess
from datetime import datetime

import pytest
from pydantic import ValidationError

from features.contract import to_utc_datetime, to_utc_naive
from scoring.predlog import PredictionLog, make_row
from scoring.records import metadata, read_predictions
from serving.errors import from_validation
from serving.schemas import (
    ExplainRequest,
    PredictFeaturesRequest,
    PredictRequest,
    RequestError,
    resolve_as_of,
)
from tests.helpers import CHURN, churn_env

OUTSIDE = ["0001-01-01T00:00:00+01:00", "9999-12-31T23:30:00-01:00"]


@pytest.mark.parametrize("text", OUTSIDE)
def test_a_time_outside_the_calendar_in_utc_is_not_a_time(text):
    with pytest.raises(ValueError, match="years 1 to 9999"):
        to_utc_naive(text)
    with pytest.raises(ValueError, match="years 1 to 9999"):
        to_utc_datetime(text)


def test_the_edges_of_the_calendar_are_times():
    assert to_utc_datetime("0001-01-01T00:00:00-01:00") == datetime(1, 1, 1, 1)
    assert to_utc_datetime("9999-12-31T22:00:00-01:00") == datetime(9999, 12, 31, 23)
    assert type(to_utc_datetime("2025-02-13T09:30:00+01:00")) is datetime


def _field(exc: ValidationError) -> str:
    return from_validation(exc.errors(include_context=False, include_input=False))["field"]


@pytest.mark.parametrize("text", OUTSIDE)
def test_every_request_time_is_refused_naming_its_field(text):
    customer = {"customer_id": "a", "signup_at": "2025-01-01", "events": []}
    cases = [
        (PredictFeaturesRequest, {"rows": [{"customer_id": "a", "as_of": text}]}, "rows[0].as_of"),
        (PredictRequest, {"customers": [customer], "as_of": text}, "as_of"),
        (PredictRequest, {"customers": [{**customer, "signup_at": text}]},
         "customers[0].signup_at"),
        (PredictRequest, {"customers": [{**customer, "events": [
            {"timestamp": text, "event_type": "login"}]}]}, "customers[0].events[0].timestamp"),
        (ExplainRequest, {**customer, "as_of": text}, "as_of"),
    ]
    for model, body, field in cases:
        with pytest.raises(ValidationError) as caught:
            model.model_validate_json(json.dumps(body))
        assert _field(caught.value) == field
    with pytest.raises(RequestError, match="as_of"):
        resolve_as_of(text)


def test_the_cli_refuses_such_an_as_of_in_one_line(tmp_path):
    """Before any file is read: the files named here do not exist."""
    home = tmp_path / "home"
    home.mkdir()
    proc = subprocess.run([CHURN, "score", "--customers", "c.csv", "--events", "e.csv",
                           "--as-of", OUTSIDE[0], "--out", str(tmp_path / "s.csv")],
                          cwd=home, env=churn_env(home), capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "--as-of" in proc.stderr and "years 1 to 9999" in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) <= 3


def test_a_record_the_store_cannot_hold_is_counted_and_kept(tmp_path):
    from sqlalchemy import create_engine

    engine = create_engine(f"sqlite:///{tmp_path / 'log.db'}")
    metadata.create_all(engine)
    drops: list[tuple[str, int]] = []
    kept = tmp_path / "dead.jsonl"
    plog = PredictionLog(lambda: engine, max_queue=100, dead_letter=kept,
                         on_drop=lambda r, n: drops.append((r, n)))
    good = make_row("good", datetime(2026, 6, 15), 0.3, "low", [], "3", "predict_features")
    # a time that reached the log past every check (make_row no longer raises on it)
    bad = make_row("bad", datetime.fromisoformat(OUTSIDE[0]), 0.4, "low", [], "3",
                   "predict_features")
    plog.record([good, bad])
    assert plog.close(10)
    assert list(read_predictions(engine)["customer_id"]) == ["good"]
    assert drops == [("write_failed", 1)] and plog.dropped == {"write_failed": 1}
    lines = [json.loads(line) for line in kept.read_text().splitlines()]
    assert [(x["reason"], x["record"]["customer_id"], x["record"]["record_id"]) for x in lines] \
        == [("write_failed", "bad", bad["record_id"])]
    assert "years 1 to 9999" in lines[0]["error"] and plog.kept == 1


def test_records_given_up_for_a_full_queue_or_a_refusing_database_are_kept(tmp_path):
    from sqlalchemy import create_engine

    engine = create_engine(f"sqlite:///{tmp_path / 'log.db'}")
    metadata.create_all(engine)
    kept = tmp_path / "dead.jsonl"
    plog = PredictionLog(lambda: engine, max_queue=100, delays=(0.01,), dead_letter=kept)
    refused = [make_row(f"r{i}", datetime(2026, 6, 15), 0.1, "low", [], "3", "predict")
               for i in range(3)]
    refused[1]["customer_id"] = None  # NOT NULL: this record can never be stored
    plog.record(refused)
    assert plog.close(10)
    lines = [json.loads(line) for line in kept.read_text().splitlines()]
    assert [x["record"]["record_id"] for x in lines] == [refused[1]["record_id"]]  # alone
    assert {x["reason"] for x in lines} == {"write_failed"}
    assert plog.record(refused[:1]) == 0  # closed: counted and kept
    assert len(kept.read_text().splitlines()) == 2 and plog.dropped["shutdown"] == 1

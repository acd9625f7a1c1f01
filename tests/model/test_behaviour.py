"""Behavioural checks on the trained champion: it reacts to warning signs, not to the future."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.engine import feature_table
from features.tables import validate_customers, validate_events
from scoring.predictor import predict
from scoring.store import load_model

AS_OF = pd.Timestamp("2026-03-01")


@pytest.fixture(scope="module")
def champion(trained):
    trained.use_store()
    return load_model("models:/churn@champion")


def history(collapse: bool, complaints: int, after: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One monthly 'pro' customer for a year; optionally logins collapse in the last 30 days."""
    rng = np.random.default_rng(0)
    start = AS_OF - pd.Timedelta(days=365)
    rows = []
    for day in range(365):
        t = start + pd.Timedelta(days=day, hours=9)
        recent = day >= 335
        if day % 2 == 0 and not (collapse and recent):
            rows.append((t, "login", np.nan))
        if day % 30 == 0:
            rows.append((t, "payment", 49.0))
    for i in range(complaints):
        rows.append((AS_OF - pd.Timedelta(days=3 + 4 * i), "complaint", np.nan))
        rows.append((AS_OF - pd.Timedelta(days=2 + 4 * i), "support_ticket", np.nan))
    for i in range(after):  # activity that happens after the observation time
        rows.append((AS_OF + pd.Timedelta(hours=1 + 5 * i), rng.choice(["login", "complaint"]),
                     np.nan))
    customers = pd.DataFrame({
        "customer_id": ["c1"], "signup_at": [start - pd.Timedelta(days=30)], "churned_at": [pd.NaT],
        "plan": ["pro"], "contract": ["monthly"], "seats": [2], "country": ["DE"],
        "date_of_birth": ["1985-04-02"],
    })
    events = pd.DataFrame(rows, columns=["timestamp", "event_type", "amount"]).assign(
        customer_id="c1")
    c, _ = validate_customers(customers)
    e, _, _ = validate_events(events)
    return c, e


def probability(model, customers, events) -> float:
    feats = feature_table(customers, events, model.model.spec, [AS_OF])
    return float(predict(model, feats, top_k=3, bands=(0.1, 0.3)).frame["churn_probability"].iloc[0])


def test_collapsing_logins_and_rising_complaints_raise_the_score(champion):
    steady = probability(champion, *history(collapse=False, complaints=0))
    warning = probability(champion, *history(collapse=True, complaints=4))
    assert warning > steady


def test_events_after_as_of_change_no_score(champion):
    before = probability(champion, *history(collapse=True, complaints=2))
    after = probability(champion, *history(collapse=True, complaints=2, after=40))
    assert before == after

"""`campaigns.returning`: who left and came back, on small hand-built tables."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import pytest
from sqlalchemy import create_engine

from campaigns.returning import ReturnRules, find_returning, parse_event_types, stated_reasons
from campaigns.store import Campaign, create_campaign, record_outcomes
from scoring.records import metadata

T = pd.Timestamp


def _tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    customers = pd.DataFrame({
        "customer_id": ["A", "B", "C", "D", "E", "F", "G", "H"],
        "signup_at": [T("2025-01-01")] * 4 + [T("2026-02-15"), T("2025-01-01"),
                                              T("2026-03-01"), T("2025-01-01")],
        "churned_at": [T("2026-01-10"), T("2026-01-10"), pd.NaT, T("2025-12-01"), pd.NaT,
                       pd.NaT, pd.NaT, T("2026-01-10")],
        "email": [None, "", "c@x.com", "d@x.com", " D@x.com ", "f@x.com", "f@x.com", None],
    }).astype({"signup_at": "datetime64[us]", "churned_at": "datetime64[us]"})
    rows = [
        ("A", "2026-01-05", "login"), ("A", "2026-03-01", "login"), ("A", "2026-03-03", "login"),
        ("B", "2026-01-05", "login"), ("B", "2026-01-12", "login"),  # winding down, not back
        ("C", "2025-10-01", "login"), ("C", "2026-02-01", "login"), ("C", "2026-02-03", "login"),
        ("D", "2025-11-20", "login"), ("E", "2026-02-16", "login"),
        ("F", "2025-11-01", "login"), ("G", "2026-03-02", "login"),
        ("H", "2026-01-01", "login"), ("H", "2026-02-20", "payment_failed"),
    ]
    events = pd.DataFrame(rows, columns=["customer_id", "timestamp", "event_type"])
    events = events.assign(timestamp=pd.to_datetime(events["timestamp"]).astype("datetime64[us]"))
    return customers, events


def _found(rules: ReturnRules) -> pd.DataFrame:
    customers, events = _tables()
    return find_returning(customers, events, rules, follow_up="Welcome them back")


def test_returns_after_a_churn_date_skip_the_grace_days_and_other_event_types():
    found = _found(ReturnRules())
    assert found[["customer_id", "how"]].values.tolist() == [["A", "churn date"],
                                                             ["H", "churn date"]]
    a = found.set_index("customer_id").loc["A"]
    assert a["left_at"] == T("2026-01-10") and a["returned_at"] == T("2026-03-01")
    assert a["days_away"] == 50.0 and a["returned_as"] == "A"
    assert a["follow_up"] == "Welcome them back"
    logins = _found(ReturnRules(event_types=("login",)))
    assert logins["customer_id"].tolist() == ["A"]  # H's failed payment is not activity
    assert _found(ReturnRules(grace_days=60))["customer_id"].tolist() == []


def test_a_lapse_of_the_horizon_is_leaving_and_a_lapse_over_a_churn_date_counts_once():
    found = _found(ReturnRules(horizon_days=90, event_types=("login",)))
    assert found[["customer_id", "how", "days_away"]].values.tolist() == [
        ["A", "churn date", 50.0], ["C", "lapse", 123.0]]
    c = found.set_index("customer_id").loc["C"]
    assert c["left_at"] == T("2025-10-01") and c["returned_at"] == T("2026-02-01")
    # A's 55 idle days span its churn date: one return, by the churn date
    found = _found(ReturnRules(horizon_days=30, event_types=("login",)))
    assert found["customer_id"].tolist() == ["A", "C"]
    assert found["how"].tolist() == ["churn date", "lapse"]
    assert _found(ReturnRules(horizon_days=150, event_types=("login",)))["how"].tolist() == [
        "churn date"]


def test_a_new_signup_of_the_same_person_is_a_return():
    found = _found(ReturnRules(match_column="email", event_types=("login",)))
    assert found[["customer_id", "how", "returned_as"]].values.tolist() == [
        ["A", "churn date", "A"], ["D", "new signup", "E"]]  # emails match trimmed, any case
    d = found.set_index("customer_id").loc["D"]
    assert d["left_at"] == T("2025-12-01") and d["days_away"] == 76.0
    # F has no churn date: with a horizon, 120 idle days before G's signup are leaving
    found = _found(ReturnRules(match_column="email", horizon_days=90, event_types=("login",)))
    f = found.set_index("customer_id").loc["F"]
    assert (f["how"], f["returned_as"], f["left_at"]) == ("new signup", "G", T("2025-11-01"))
    found = _found(ReturnRules(match_column="email", horizon_days=150, event_types=("login",)))
    assert "F" not in set(found["customer_id"])


def test_as_of_and_since_bound_the_window():
    found = _found(ReturnRules(horizon_days=90, match_column="email", as_of=T("2026-02-10")))
    assert found["customer_id"].tolist() == ["C"]  # A, H and the signups came later
    found = _found(ReturnRules(horizon_days=90, match_column="email", since=T("2026-02-18")))
    assert found["customer_id"].tolist() == ["A", "F", "H"]  # latest first; A and F tie
    assert (found["returned_at"] >= T("2026-02-18")).all()


def test_nobody_came_back_is_an_empty_table_with_the_columns():
    customers, events = _tables()
    found = find_returning(customers.drop(columns=["churned_at"]), events, ReturnRules())
    assert found.empty and list(found.columns) == ["customer_id", "left_at", "returned_at",
                                                   "days_away", "how", "returned_as"]


@pytest.mark.parametrize(("rules", "message"), [
    (lambda: ReturnRules(horizon_days=0), "horizon_days must be between 1 and 3650"),
    (lambda: ReturnRules(grace_days=-1), "grace_days must be between 0 and 365"),
    (lambda: ReturnRules(event_types=("login", " ")), "must not be empty"),
    (lambda: ReturnRules(since=T("2026-03-01"), as_of=T("2026-01-01")), "since must not be after"),
    (lambda: ReturnRules(match_column="phone"), "'phone' is not a column"),
])
def test_bad_rules_are_one_clear_error(rules, message):
    customers, events = _tables()
    with pytest.raises(ValueError, match=message):
        find_returning(customers, events, rules())


def test_a_match_column_shared_by_many_is_refused():
    customers, events = _tables()
    many = pd.concat([customers.iloc[[0]].assign(customer_id=f"X{i}", email="same@x.com")
                      for i in range(25)], ignore_index=True)
    with pytest.raises(ValueError, match="25 customers share the value 'same@x.com'"):
        find_returning(pd.concat([customers, many], ignore_index=True), events,
                       ReturnRules(match_column="email"))


def test_event_type_options_split_on_commas():
    assert parse_event_types(["login, feature_use", "payment", " "]) == (
        "login", "feature_use", "payment")


def test_stated_reasons_are_the_latest_a_customer_gave(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'churn.db'}")
    metadata.create_all(engine)
    members = pd.DataFrame({"customer_id": ["A", "D", "E"], "arm": "treatment",
                            "risk_band": "high", "value_segment": "top", "probability": 0.5,
                            "customer_value": 1.0, "action_family": "payment", "action": "call"})
    create_campaign(engine, Campaign("c1", "One", "1", datetime(2026, 1, 1), 30, 0.2, 1, "all"),
                    members)
    create_campaign(engine, Campaign("c2", "Two", "1", datetime(2026, 2, 1), 30, 0.2, 1, "all"),
                    members)
    record_outcomes(engine, "c1", [
        {"customer_id": "A", "reached": True, "result": "left", "reason": "price",
         "reason_text": "Too dear", "source": "import", "recorded_at": datetime(2026, 1, 5)},
        {"customer_id": "D", "reached": False, "result": "no_answer", "source": "import"},
        {"customer_id": "E", "reached": True, "result": "left", "reason": "other",
         "reason_text": "Our budget was cut", "source": "import",
         "recorded_at": datetime(2026, 1, 6)}])
    record_outcomes(engine, "c2", [
        {"customer_id": "A", "reached": True, "result": "left", "reason": "competitor",
         "reason_text": "", "source": "import", "recorded_at": datetime(2026, 2, 5)},
        {"customer_id": "E", "reached": None, "result": "left", "source": "data"}])
    labels = {"price": "Price", "competitor": "Went to a competitor", "other": "Other"}
    said = stated_reasons(engine, ["A", "D", "E", "X"], labels)
    assert said == {"A": "Went to a competitor", "E": "Other: Our budget was cut"}

"""Every point-in-time feature on hand-built histories, with values worked out by hand.

The observation time is AS_OF = 2024-04-10 00:00. Ages are measured back from it. Every test
runs twice: on the SQL query (DuckDB) and on the NumPy evaluator, both generated from the same
feature entries.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from features.contract import AttributeKinds, Tables
from features.definitions import FeatureSpec
from features.engine import feature_table
from features.spec_inference import changing_date_attributes, infer_spec
from features.tables import validate_events
from tests.unit.builders import (
    AS_OF,
    DAY,
    SECOND,
    customers_frame,
    events_frame,
    feature_rows,
    spec_for,
)

NAN = float("nan")


@pytest.fixture(autouse=True, params=["sql", "numpy"])
def evaluator(request, monkeypatch):
    """Force one evaluator for every feature build of the test."""
    from features import engine

    monkeypatch.setattr(engine, "ONLINE_MAX_EVENTS", -1 if request.param == "sql" else 10**12)
    return request.param


def _one_customer(ages, signup_days: float = 100, types=None, amounts=None, cid: str = "c"):
    """One customer signed up `signup_days` before AS_OF with events at the given ages."""
    ages = [a if isinstance(a, pd.Timedelta) else a * DAY for a in ages]
    types = types or ["login"] * len(ages)
    amounts = amounts or [NAN] * len(ages)
    customers = customers_frame([{"customer_id": cid, "signup_at": AS_OF - signup_days * DAY}])
    events = events_frame([(cid, AS_OF - a, t, v) for a, t, v in zip(ages, types, amounts)])
    return customers, events


def _row(customers, events, spec=None, as_of=AS_OF) -> pd.Series:
    table = feature_rows(customers, events, spec or spec_for(), as_of)
    assert len(table) == 1
    return table.iloc[0]


def _same(actual, expected) -> bool:
    if expected is None:
        return actual is None
    if isinstance(expected, str):
        return actual == expected
    if math.isnan(expected):
        return math.isnan(actual)
    return actual == pytest.approx(expected, rel=1e-9, abs=1e-9)


# --------------------------------------------------------------------------------------------
# One reference history, every feature
# --------------------------------------------------------------------------------------------

REFERENCE_SPEC = spec_for(
    ("login", "payment"), ("amount",),
    attributes=AttributeKinds(numeric=("seats",), categorical=("country",),
                              datetime=("date_of_birth",)),
)


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    customers = customers_frame([
        {"customer_id": "a", "signup_at": "2024-01-01", "seats": 3.0, "country": "US",
         "date_of_birth": "2000-04-10"},
        {"customer_id": "b", "signup_at": "2024-01-01", "seats": np.nan, "country": None,
         "date_of_birth": None},
    ]).astype({"country": "string", "date_of_birth": "datetime64[us]"})
    events = events_frame([
        ("a", "2024-01-05 00:00", "login"),            # age 96: lifetime only
        ("a", "2024-02-20 00:00", "payment", 30.0),    # age 50: the earlier trend window
        ("a", "2024-03-20 00:00", "payment", 20.0),    # age 21
        ("a", "2024-04-03 00:00", "login"),            # age exactly 7 days: inside 7d
        ("a", "2024-04-09 12:00", "login"),            # age 0.5
        ("a", "2024-04-09 18:00", "login"),            # age 0.25, same UTC day as above
        ("a", "2024-04-10 00:00", "login"),            # at as_of: excluded
        ("a", "2024-04-12 00:00", "payment", 1000.0),  # after as_of: excluded
    ])
    return feature_rows(customers, events, REFERENCE_SPEC)


REFERENCE_A = {
    "tenure_days": 100.0,
    "history_days": 90.0,  # tenure, up to the longest window (no log start in the spec)
    "days_to_anniversary": 265.0,
    "n_events_7d": 3, "active_days_7d": 2,
    "n_events_30d": 4, "active_days_30d": 3,
    "n_events_90d": 5, "active_days_90d": 4,
    "days_since_last_event": 0.25,
    "events_lifetime": 6,
    "events_per_day_lifetime": 6 / 96,  # since the first recorded event, 96 days before
    "events_per_active_day_90d": 5 / 4,
    "mean_gap_days": (96 - 0.25) / 5,
    "overdue_ratio": 0.25 / ((96 - 0.25) / 5),
    # r = 4/30, p = 1/60 (exposure = min(100 - 30, 60))
    "trend_events": 7 / 9,
    "n_login_7d": 3, "n_login_30d": 3, "n_login_90d": 3,
    "days_since_login": 0.25,
    "trend_login": 1.0,
    "n_payment_7d": 0, "n_payment_30d": 1, "n_payment_90d": 2,
    "days_since_payment": 21.0,
    "trend_payment": 1 / 3,  # r = 1/30, p = 1/60
    "amount_sum_7d": 0.0, "amount_sum_30d": 20.0, "amount_sum_90d": 50.0,
    "amount_mean_90d": 25.0,
    "amount_mean_lifetime": 25.0,
    "amount_trend": 1 / 7,  # r = 20/30, p = 30/60
    "attr_seats": 3.0,
    "attr_country": "US",
    "attr_date_of_birth_days": 8766.0,  # 24 years with 6 leap days
}

REFERENCE_B = {  # signed up 100 days ago, never active, attributes missing
    "tenure_days": 100.0,
    "history_days": 90.0,
    "days_to_anniversary": 265.0,
    "n_events_7d": 0, "active_days_7d": 0, "n_events_30d": 0, "active_days_30d": 0,
    "n_events_90d": 0, "active_days_90d": 0,
    "days_since_last_event": NAN, "events_lifetime": 0, "events_per_day_lifetime": 0.0,
    "events_per_active_day_90d": NAN, "mean_gap_days": NAN, "overdue_ratio": NAN,
    "trend_events": 0.0,
    "n_login_7d": 0, "n_login_30d": 0, "n_login_90d": 0, "days_since_login": NAN,
    "trend_login": 0.0,
    "n_payment_7d": 0, "n_payment_30d": 0, "n_payment_90d": 0, "days_since_payment": NAN,
    "trend_payment": 0.0,
    "amount_sum_7d": 0.0, "amount_sum_30d": 0.0, "amount_sum_90d": 0.0,
    "amount_mean_90d": NAN, "amount_mean_lifetime": NAN, "amount_trend": 0.0,
    "attr_seats": NAN, "attr_country": None, "attr_date_of_birth_days": NAN,
}


def test_reference_expectations_cover_every_feature():
    assert set(REFERENCE_A) == set(REFERENCE_SPEC.feature_names) == set(REFERENCE_B)


def test_reference_table_shape(reference):
    assert list(reference.index) == ["a", "b"]
    assert list(reference.columns) == ["as_of", *REFERENCE_SPEC.feature_names]
    assert (reference["as_of"] == AS_OF).all()
    assert reference["as_of"].dtype == "datetime64[us]"
    numeric = [n for n in REFERENCE_SPEC.feature_names if n != "attr_country"]
    assert (reference[numeric].dtypes == "float64").all()
    assert reference["attr_country"].dtype == object


@pytest.mark.parametrize(("feature", "expected"), list(REFERENCE_A.items()))
def test_reference_active_customer(reference, feature, expected):
    actual = reference.loc["a", feature]
    assert _same(actual, expected), f"{feature}: {actual!r} != {expected!r}"


@pytest.mark.parametrize(("feature", "expected"), list(REFERENCE_B.items()))
def test_reference_customer_without_events(reference, feature, expected):
    actual = reference.loc["b", feature]
    assert _same(actual, expected), f"{feature}: {actual!r} != {expected!r}"


# --------------------------------------------------------------------------------------------
# Windows
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("age", "counts"),
    [
        pytest.param(SECOND, (1, 1, 1, 1), id="1s-before"),
        pytest.param(7 * DAY, (1, 1, 1, 1), id="exactly-7d"),
        pytest.param(7 * DAY + SECOND, (0, 1, 1, 1), id="7d+1s"),
        pytest.param(30 * DAY, (0, 1, 1, 1), id="exactly-30d"),
        pytest.param(30 * DAY + SECOND, (0, 0, 1, 1), id="30d+1s"),
        pytest.param(90 * DAY, (0, 0, 1, 1), id="exactly-90d"),
        pytest.param(90 * DAY + SECOND, (0, 0, 0, 1), id="90d+1s"),
        pytest.param(pd.Timedelta(0), (0, 0, 0, 0), id="at-as_of"),
        pytest.param(-SECOND, (0, 0, 0, 0), id="1s-after"),
        pytest.param(-10 * DAY, (0, 0, 0, 0), id="10d-after"),
    ],
)
def test_window_counts_include_age_equal_to_window(age, counts):
    customers, events = _one_customer([age], signup_days=200)
    row = _row(customers, events)
    n7, n30, n90, lifetime = counts
    assert [row["n_events_7d"], row["n_events_30d"], row["n_events_90d"]] == [n7, n30, n90]
    assert [row["n_login_7d"], row["n_login_30d"], row["n_login_90d"]] == [n7, n30, n90]
    assert [row["active_days_7d"], row["active_days_30d"], row["active_days_90d"]] == [n7, n30, n90]
    assert row["n_payment_90d"] == 0
    assert row["events_lifetime"] == lifetime


@pytest.mark.parametrize("windows", [(14, 60), (7,), (3, 7, 30, 90)])
def test_custom_windows(windows):
    customers, events = _one_customer([2, 10, 40], signup_days=200)
    spec = spec_for(windows=windows)
    row = _row(customers, events, spec)
    assert tuple(row.index[1:]) == spec.feature_names  # as_of first
    for w in windows:
        assert row[f"n_events_{w}d"] == sum(a <= w for a in (2, 10, 40))
        assert row[f"n_login_{w}d"] == sum(a <= w for a in (2, 10, 40))


def test_windows_beyond_90_days():
    """A spec may look back further than 90 days; its column names must match its SQL."""
    customers, events = _one_customer([2, 100], signup_days=200)
    spec = spec_for(windows=(7, 30, 90, 180))
    row = _row(customers, events, spec)
    assert tuple(row.index[1:]) == spec.feature_names
    assert row["n_events_180d"] == 2
    assert row["n_events_90d"] == 1


# --------------------------------------------------------------------------------------------
# Active days, recency, gaps
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stamps", "days"),
    [
        pytest.param(["2024-04-08T23:30:00", "2024-04-09T00:30:00"], 2, id="either-side-of-midnight"),
        pytest.param(["2024-04-09T00:00:00", "2024-04-09T23:59:59"], 1, id="same-day"),
        pytest.param(["2024-04-09T01:00:00+02:00", "2024-04-08T10:00:00Z"], 1, id="utc-day-of-aware"),
        pytest.param(["2024-04-09T01:00:00+02:00", "2024-04-09T10:00:00Z"], 2, id="aware-crosses-day"),
        pytest.param(["2024-04-09T10:00:00", "2024-04-09T10:00:00"], 1, id="duplicates"),
    ],
)
def test_active_days_are_distinct_utc_days(stamps, days):
    raw = pd.DataFrame({"customer_id": ["c"] * len(stamps), "timestamp": stamps,
                        "event_type": ["login"] * len(stamps)})
    events, _, _ = validate_events(raw)
    customers = customers_frame([{"customer_id": "c", "signup_at": "2024-01-01"}])
    row = _row(customers, events, spec_for(value_columns=()))
    assert row["active_days_7d"] == days
    assert row["n_events_7d"] == len(stamps)


@pytest.mark.parametrize(
    ("events", "login", "payment", "last"),
    [
        pytest.param([(2.5, "login"), (10, "payment"), (4, "login")], 2.5, 10.0, 2.5, id="both"),
        pytest.param([(6, "payment")], NAN, 6.0, 6.0, id="never-login"),
        pytest.param([(150, "webinar")], NAN, NAN, 150.0, id="other-type-only"),
        pytest.param([], NAN, NAN, NAN, id="no-events"),
        pytest.param([(0, "login"), (-1, "payment")], NAN, NAN, NAN, id="only-at-or-after"),
    ],
)
def test_days_since(events, login, payment, last):
    ages = [a for a, _ in events]
    customers, frame = _one_customer(ages, signup_days=200, types=[t for _, t in events])
    row = _row(customers, frame)
    for feature, expected in [("days_since_login", login), ("days_since_payment", payment),
                              ("days_since_last_event", last)]:
        assert _same(row[feature], expected), feature


@pytest.mark.parametrize(
    ("ages", "gap", "overdue"),
    [
        pytest.param([2, 6, 10], 4.0, 0.5, id="regular"),
        pytest.param([1, 5], 4.0, 0.25, id="two"),
        pytest.param([1], NAN, NAN, id="single"),
        pytest.param([3, 3], 0.0, NAN, id="duplicates"),
        pytest.param([], NAN, NAN, id="none"),
        pytest.param([12, 200], 188.0, 12 / 188, id="old-events-count"),
    ],
)
def test_mean_gap_and_overdue_ratio(ages, gap, overdue):
    customers, events = _one_customer(ages, signup_days=300)
    row = _row(customers, events)
    assert _same(row["mean_gap_days"], gap)
    assert _same(row["overdue_ratio"], overdue)


# --------------------------------------------------------------------------------------------
# Trends
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tenure", "ages", "expected"),
    [
        pytest.param(100, [1, 2, 3, 4, 50], 7 / 9, id="r4-p1"),
        pytest.param(100, [50, 60], -1.0, id="only-earlier"),
        pytest.param(100, [5], 1.0, id="only-recent"),
        pytest.param(100, [], 0.0, id="both-zero"),
        pytest.param(100, [5, 95], 1.0, id="older-than-90d-ignored"),
        pytest.param(100, [30], 1.0, id="age-30d-is-recent"),
        pytest.param(100, [30 * DAY + SECOND], -1.0, id="age-30d+1s-is-earlier"),
        pytest.param(100, [90], -1.0, id="age-90d-is-earlier"),
        pytest.param(100, [90 * DAY + SECOND], 0.0, id="age-90d+1s-ignored"),
        pytest.param(60, [5, 45], 0.0, id="exposure-30-equal-rates"),
        pytest.param(45, [10, 40], -1 / 3, id="exposure-15"),
        pytest.param(31, [10, 30.5], -29 / 31, id="exposure-1"),
        pytest.param(200, [10, 40], 1 / 3, id="exposure-capped-60"),
        pytest.param(30, [5], NAN, id="exposure-0-at-30d"),
        pytest.param(20, [5], NAN, id="young-customer"),
        pytest.param(0, [], NAN, id="signup-at-as_of"),
    ],
)
def test_trend_is_symmetric_rate_change(tenure, ages, expected):
    customers, events = _one_customer(ages, signup_days=tenure)
    row = _row(customers, events)
    assert _same(row["trend_events"], expected)
    assert _same(row["trend_login"], expected)
    assert _same(row["trend_payment"], NAN if tenure <= 30 else 0.0)


# --------------------------------------------------------------------------------------------
# Amounts
# --------------------------------------------------------------------------------------------


def test_amount_sums_means_and_trend():
    customers, events = _one_customer(
        [2, 10, 3, 40, 95],
        types=["payment", "payment", "login", "payment", "return"],
        amounts=[10.0, NAN, NAN, 60.0, -5.0],
    )
    row = _row(customers, events)
    assert row["amount_sum_7d"] == 10.0
    assert row["amount_sum_30d"] == 10.0
    assert row["amount_sum_90d"] == 70.0
    assert row["amount_mean_90d"] == 35.0  # missing amounts are not zeros
    assert row["amount_mean_lifetime"] == pytest.approx(65 / 3)
    assert row["amount_trend"] == pytest.approx(-0.5)  # r = 10/30, p = 60/60


def test_value_sums_count_money_received_not_failed_payments():
    """#25.11: a failed payment's amount is what was asked, not money received; the sums and
    the trend (and so the yearly value, 12 x amount_sum_30d) leave it out. Means describe
    every event's amount and keep it."""
    spec = spec_for(("payment", "payment_failed", "card_declined", "login"), ("amount",))
    assert spec.unpaid_types == ("payment_failed", "card_declined")
    customers, events = _one_customer(
        [2, 5, 6, 40, 45],
        types=["payment", "payment_failed", "card_declined", "payment", "payment_failed"],
        amounts=[49.0, 49.0, 49.0, 49.0, 49.0])
    row = _row(customers, events, spec)
    assert row["amount_sum_7d"] == 49.0
    assert row["amount_sum_30d"] == 49.0
    assert row["amount_sum_90d"] == 98.0
    assert row["amount_trend"] == pytest.approx(1 / 3)  # r = 49/30, p = 49/60
    assert row["amount_mean_90d"] == 49.0
    # a customer whose payments all fail has received nothing
    customers, events = _one_customer([3, 10], types=["payment_failed"] * 2, amounts=[49.0, 49.0])
    assert _row(customers, events, spec)["amount_sum_30d"] == 0.0


@pytest.mark.parametrize(("event_type", "unpaid"), [
    ("payment_failed", True), ("Payment Failed", True), ("card-declined", True),
    ("direct_debit_bounced", True), ("chargeback", True), ("failed", True),
    ("payment", False), ("late_payment", False), ("refund", False), ("purchase", False),
    ("failsafe_login", False),
])
def test_which_event_types_are_unpaid(event_type, unpaid):
    from features.definitions import is_unpaid

    assert is_unpaid(event_type) is unpaid


def test_several_value_columns():
    customers = customers_frame([{"customer_id": "c", "signup_at": "2024-01-01"}])
    events = events_frame([("c", AS_OF - 2 * DAY, "purchase", 10.0)]).assign(quantity=[3.0])
    spec = spec_for(("purchase",), ("amount", "quantity"))
    row = _row(customers, events, spec)
    assert row["amount_sum_7d"] == 10.0
    assert row["quantity_sum_7d"] == 3.0
    assert row["quantity_mean_lifetime"] == 3.0


# --------------------------------------------------------------------------------------------
# Who gets a row, and edge cases
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("signup", "churned", "included"),
    [
        pytest.param(AS_OF, None, True, id="signup-at-as_of"),
        pytest.param(AS_OF + SECOND, None, False, id="signup-after"),
        pytest.param(AS_OF - DAY, AS_OF, False, id="churned-at-as_of"),
        pytest.param(AS_OF - DAY, AS_OF - SECOND, False, id="churned-before"),
        pytest.param(AS_OF - DAY, AS_OF + SECOND, True, id="churned-after"),
    ],
)
def test_which_customers_get_a_row(signup, churned, included):
    customers = customers_frame([{"customer_id": "c", "signup_at": signup, "churned_at": churned},
                                 {"customer_id": "ref", "signup_at": "2024-01-01"}])
    table = feature_rows(customers, events_frame([]), spec_for())
    assert ("c" in table.index) is included
    assert "ref" in table.index


def test_signup_on_observation_day_has_zero_tenure():
    customers, events = _one_customer([], signup_days=0)
    row = _row(customers, events)
    assert row["tenure_days"] == 0.0
    assert row["events_lifetime"] == 0
    assert row["events_per_day_lifetime"] == 0.0


@pytest.mark.parametrize(("tenure", "ages", "per_day"), [
    (2.5, [0.25], 1.0),  # over at least one day
    (0.5, [0.25], 1.0),
    (400.0, [0.25, 3.25], 2 / 3.25),  # since the first recorded event, whatever the tenure
    (40.0, [0.25, 3.25], 2 / 3.25),
])
def test_tenure_is_fractional_days_and_the_lifetime_rate_ignores_it(tenure, ages, per_day):
    customers, events = _one_customer(ages, signup_days=tenure)
    row = _row(customers, events)
    assert row["tenure_days"] == tenure
    assert row["events_per_day_lifetime"] == pytest.approx(per_day)


def test_duplicate_events_both_count():
    customers, events = _one_customer([2, 2], types=["payment", "payment"], amounts=[5.0, 5.0])
    row = _row(customers, events)
    assert row["n_payment_7d"] == 2
    assert row["n_events_7d"] == 2
    assert row["active_days_7d"] == 1
    assert row["amount_sum_7d"] == 10.0


def test_event_type_not_in_spec_counts_only_in_totals():
    customers, events = _one_customer(
        [1, 3, 50], types=["webinar", "login", "webinar"])
    row = _row(customers, events)
    assert row["n_events_7d"] == 2
    assert row["n_events_90d"] == 3
    assert row["events_lifetime"] == 3
    assert row["n_login_7d"] == 1
    assert row["n_login_90d"] == 1
    assert row["n_payment_90d"] == 0
    assert row["days_since_last_event"] == 1.0
    assert row["days_since_login"] == 3.0
    assert "n_webinar_7d" not in row.index


def test_events_of_unknown_customers_change_nothing():
    customers, events = _one_customer([1, 20], types=["login", "payment"], amounts=[NAN, 9.0])
    ghost = events_frame([("ghost", AS_OF - DAY, "login"), ("ghost", AS_OF - 2 * DAY, "payment", 5.0)])
    with_ghost = feature_rows(customers, pd.concat([events, ghost], ignore_index=True), spec_for())
    pd.testing.assert_frame_equal(with_ghost, feature_rows(customers, events, spec_for()))
    assert list(with_ghost.index) == ["c"]


def test_event_types_are_matched_exactly_even_with_quotes_and_case():
    customers, events = _one_customer(
        [1, 2, 3, 4], types=["it's", "Login", "login", "payment failed"])
    spec = spec_for(("Login", "it's", "login", "payment failed"), ())
    assert spec.type_slugs == {"Login": "login", "it's": "it_s", "login": "login_2",
                               "payment failed": "payment_failed"}
    row = _row(customers, events, spec)
    assert row["n_it_s_7d"] == 1
    assert row["n_login_7d"] == 1  # "Login"
    assert row["days_since_login"] == 2.0
    assert row["n_login_2_7d"] == 1  # "login"
    assert row["days_since_login_2"] == 3.0
    assert row["n_payment_failed_7d"] == 1


@pytest.mark.parametrize("event_type", ["events", "last_event", "Events"])
def test_feature_names_are_unique_whatever_the_event_types(event_type):
    """Event types come from the data; one called 'events' must not clash with the totals."""
    spec = spec_for(("login", event_type), ())
    names = spec.feature_names
    assert len(names) == len(set(names)), sorted({n for n in names if names.count(n) > 1})
    customers, events = _one_customer([1, 2], types=["login", event_type])
    table = feature_rows(customers, events, spec)
    assert table.columns.is_unique
    assert table.iloc[0]["n_events_7d"] == 2  # the total, not the per-type count
    assert table.iloc[0]["days_since_last_event"] == 1.0


# --------------------------------------------------------------------------------------------
# feature_table: pairs, several times, no mutation
# --------------------------------------------------------------------------------------------


def _two_customers():
    customers = customers_frame([
        {"customer_id": "x", "signup_at": "2024-01-01"},
        {"customer_id": "y", "signup_at": "2024-03-15", "churned_at": "2024-04-05"},
    ])
    events = events_frame([
        ("x", "2024-03-01", "login"), ("x", "2024-04-09", "payment", 19.0),
        ("y", "2024-03-20", "login"), ("y", "2024-04-01", "login"),
    ])
    return customers, events


def test_several_times_at_once():
    customers, events = _two_customers()
    times = [pd.Timestamp("2024-03-31"), AS_OF]
    table = feature_table(customers, events, spec_for(), times)
    assert list(zip(table["customer_id"], table["as_of"])) == [
        ("x", times[0]), ("y", times[0]), ("x", AS_OF)]  # y churned before AS_OF
    assert table["events_lifetime"].tolist() == [1, 1, 2]


def test_pairs_keep_their_order_and_match_the_list_form():
    customers, events = _two_customers()
    pairs = pd.DataFrame({"customer_id": ["y", "x", "x"],
                          "as_of": [pd.Timestamp("2024-04-02"), AS_OF, pd.Timestamp("2024-03-02")]})
    table = feature_table(customers, events, spec_for(), pairs)
    assert table["customer_id"].tolist() == ["y", "x", "x"]
    assert table["as_of"].tolist() == pairs["as_of"].tolist()
    assert table["events_lifetime"].tolist() == [2, 2, 1]
    listed = feature_table(customers, events, spec_for(), [AS_OF])
    pd.testing.assert_frame_equal(table.iloc[[1]].reset_index(drop=True), listed)


def test_feature_table_does_not_mutate_inputs():
    customers, events = _two_customers()
    before = customers.copy(), events.copy()
    feature_table(customers, events, spec_for(), [AS_OF])
    pd.testing.assert_frame_equal(customers, before[0])
    pd.testing.assert_frame_equal(events, before[1])


# --------------------------------------------------------------------------------------------
# The spec
# --------------------------------------------------------------------------------------------


def test_spec_round_trips_through_json():
    spec = FeatureSpec(
        event_types=("a", "b"), value_columns=("amount",),
        attributes=AttributeKinds(("seats",), ("plan",), ("dob",)), windows=(14, 60),
    )
    assert FeatureSpec.from_json(spec.to_json()) == spec


def test_infer_spec_takes_the_most_frequent_types():
    events = events_frame(
        [("c", "2024-01-01", t) for t in ["b"] * 3 + ["a"] * 2 + ["c"] * 2 + ["d"]]
    )
    kinds = AttributeKinds(numeric=("seats",))
    tables = Tables(customers_frame([{"customer_id": "c", "signup_at": "2023-01-01"}]),
                    events, kinds, ("amount",))
    assert infer_spec(tables).event_types == ("a", "b", "c", "d")
    spec = infer_spec(tables, max_event_types=2, windows=(7, 30))
    assert spec.event_types == ("a", "b")  # b (3), then a and c tie (2): a by name
    assert spec.value_columns == ("amount",)
    assert spec.attributes == kinds
    assert spec.windows == (7, 30)


def test_a_date_attribute_after_the_observation_time_is_missing():
    """A CRM field updated at cancellation (or any date after as_of) cannot be known at as_of."""
    spec = spec_for(attributes=AttributeKinds(datetime=("contract_end",)))
    customers = customers_frame([
        {"customer_id": "past", "signup_at": "2024-01-01", "contract_end": "2024-03-31"},
        {"customer_id": "future", "signup_at": "2024-01-01", "contract_end": "2024-05-01"},
    ]).astype({"contract_end": "datetime64[us]"})
    table = feature_rows(customers, events_frame([]), spec)
    assert table.loc["past", "attr_contract_end_days"] == 10.0
    assert np.isnan(table.loc["future", "attr_contract_end_days"])


def test_date_attributes_that_change_after_signup_are_left_out(caplog):
    """Static attributes are known as of the export; a date that moves after signup (a last
    order, a cancellation request) would leak the future into every past observation."""
    customers = customers_frame([
        {"customer_id": str(i), "signup_at": "2024-01-01",
         "date_of_birth": "1990-05-01", "signed_contract": "2024-01-01",
         "last_order": "2024-01-01" if i < 90 else "2024-03-15"}
        for i in range(100)
    ]).astype({c: "datetime64[us]" for c in ("date_of_birth", "signed_contract", "last_order")})
    kinds = AttributeKinds(datetime=("date_of_birth", "signed_contract", "last_order"))
    tables = Tables(customers, events_frame([]), kinds, ())
    assert changing_date_attributes(tables) == ("last_order",)  # 10% later than signup
    spec = infer_spec(tables)
    assert spec.attributes.datetime == ("date_of_birth", "signed_contract")
    assert "last_order" in caplog.text


@pytest.mark.parametrize(("signup_days", "log_days", "history"), [
    (100, 20, 20.0),   # the log began 20 days ago: only 20 days of this customer are known
    (10, 20, 10.0),    # signed up after the log began: their tenure
    (400, 365, 90.0),  # capped at the longest window: never beyond what training saw
])
def test_history_days_tells_a_short_log_from_a_quiet_customer(signup_days, log_days, history):
    customers, events = _one_customer([], signup_days=signup_days)
    log_start = (AS_OF - log_days * DAY).value / 1e9
    row = _row(customers, events, spec_for(log_start=log_start))
    assert row["history_days"] == history


def test_infer_spec_records_when_the_log_began():
    customers, events = _one_customer([30, 5], signup_days=100)
    tables = Tables(customers, events, AttributeKinds(), ())
    assert infer_spec(tables).log_start == (AS_OF - 30 * DAY).value / 1e9
    assert infer_spec(tables, before=AS_OF - 40 * DAY).log_start is None

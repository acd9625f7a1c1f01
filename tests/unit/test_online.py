"""Property: the NumPy evaluator and the SQL query, both generated from the one list of feature
entries, agree on every feature to 1e-9, on random histories with the contract's edge cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.contract import AttributeKinds
from features.definitions import FeatureSpec
from features.engine import feature_table, features_of_relations
from features.expr import Agg, Row, case, coalesce, greatest, least, nullif
from features.relations import Relations, obs_relation
from features.sql import feature_sql
from scoring.artifact import CategoryEncoder
from scoring.reasons import feature_values
from tests.unit.builders import AS_OF, customers_frame

TYPES = ("login", "payment", "ticket")
MICRO = pd.Timedelta(microseconds=1)
DAY_US = 86_400_000_000
N_CUSTOMERS = 4
ATTRS = AttributeKinds(numeric=("seats",), categorical=("plan",), datetime=("birth",))

# ages (microseconds before as_of) that sit on the edges: one microsecond, each window's end and
# just past it, the trend's earlier window, and anything in between
EDGE_AGES = [1, DAY_US - 1, DAY_US, 7 * DAY_US, 7 * DAY_US + 1, 30 * DAY_US, 30 * DAY_US + 1,
             90 * DAY_US, 90 * DAY_US + 1, 400 * DAY_US]
ages = st.one_of(st.sampled_from(EDGE_AGES), st.integers(1, 200 * DAY_US))
amounts = st.one_of(st.none(), st.floats(-1e4, 1e4, allow_nan=False, allow_infinity=False))
# contacts: missing, blank, case and non-ASCII text (both sort text by its UTF-8 bytes)
stores = st.sampled_from((None, "", " A ", "A", "B", "b", "Ä", "z"))
event = st.tuples(st.integers(0, N_CUSTOMERS - 1), ages,
                  st.sampled_from((*TYPES, "unseen")), amounts, amounts, stores)
# tenures in microseconds: signup on as_of, shorter than every window, or long
tenures = st.one_of(st.just(0), st.integers(0, 5 * DAY_US), st.integers(0, 800 * DAY_US))


def _spec(btyd: bool, log_start_days: int | None) -> FeatureSpec:
    log_start = None if log_start_days is None else (
        (AS_OF - pd.Timedelta(days=log_start_days)) - pd.Timestamp(0)).total_seconds()
    return FeatureSpec(
        event_types=TYPES, value_columns=("amount", "quantity"), attributes=ATTRS,
        log_start=log_start, btyd_horizon_days=30.0 if btyd else None,
        btyd_params={"r": 0.8, "alpha": 12.0, "a": 0.6, "b": 2.5} if btyd else None,
        contact_columns=("store",),
    )


def _assert_same(a: pd.DataFrame, b: pd.DataFrame, spec: FeatureSpec) -> None:
    assert list(a.columns) == list(b.columns)
    assert a["customer_id"].tolist() == b["customer_id"].tolist()
    assert (a["as_of"].to_numpy() == b["as_of"].to_numpy()).all()
    for col in spec.feature_names:
        if col in spec.categorical_features:
            assert a[col].tolist() == b[col].tolist(), col
            continue
        x, y = a[col].to_numpy(dtype="float64"), b[col].to_numpy(dtype="float64")
        same = np.isclose(x, y, rtol=1e-9, atol=1e-9) | (np.isnan(x) & np.isnan(y))
        assert same.all(), (col, x[~same][:3], y[~same][:3])


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    tenure=st.lists(tenures, min_size=N_CUSTOMERS, max_size=N_CUSTOMERS),
    events=st.lists(event, max_size=40),
    duplicated=st.lists(st.integers(0, 39), max_size=5),
    seats=st.lists(st.one_of(st.none(), st.floats(0, 100)), min_size=N_CUSTOMERS,
                   max_size=N_CUSTOMERS),
    plan=st.lists(st.sampled_from([None, "basic", "pro"]), min_size=N_CUSTOMERS,
                  max_size=N_CUSTOMERS),
    birth_days=st.lists(st.one_of(st.none(), st.integers(-100, 20_000)),
                        min_size=N_CUSTOMERS, max_size=N_CUSTOMERS),
    btyd=st.booleans(),
    log_start_days=st.one_of(st.none(), st.integers(0, 500)),
    second_time_days=st.integers(-60, 60),
)
def test_numpy_and_sql_agree_on_every_feature(tenure, events, duplicated, seats, plan,
                                              birth_days, btyd, log_start_days,
                                              second_time_days):
    spec = _spec(btyd, log_start_days)
    customers = customers_frame(
        {"customer_id": f"c{i}", "signup_at": AS_OF - MICRO * tenure[i], "seats": seats[i],
         "plan": plan[i],
         # a date attribute, sometimes after as_of (missing then)
         "birth": pd.NaT if birth_days[i] is None else AS_OF - pd.Timedelta(days=birth_days[i])}
        for i in range(N_CUSTOMERS)
    ).astype({"seats": "float64", "plan": object})
    rows = events + [events[i] for i in duplicated if i < len(events)]  # exact duplicates
    frame = pd.DataFrame({
        "customer_id": [f"c{c}" for c, *_ in rows],
        "timestamp": pd.Series([AS_OF - MICRO * age for _, age, *_ in rows],
                               dtype="datetime64[us]"),
        "event_type": pd.Series([t for _, _, t, *_ in rows], dtype=object),
        "amount": pd.Series([a for *_, a, _, _ in rows], dtype="float64"),
        "quantity": pd.Series([q for *_, q, _ in rows], dtype="float64"),
        "store": pd.Series([s for *_, s in rows], dtype=object),
    })
    # every customer at as_of, one at a second time (its later events then lie in the future),
    # and a customer the table does not know
    second = AS_OF + pd.Timedelta(days=second_time_days)
    pairs = pd.DataFrame({
        "customer_id": [f"c{i}" for i in range(N_CUSTOMERS)] + ["c0", "ghost"],
        "as_of": [AS_OF] * N_CUSTOMERS + [second, AS_OF],
    })
    sql = feature_table(customers, frame, spec, pairs, evaluator="sql")
    fast = feature_table(customers, frame, spec, pairs, evaluator="numpy")
    _assert_same(sql, fast, spec)
    # each entry's stated lower bound holds (/predict_features refuses rows below it)
    at_as_of = fast.iloc[:N_CUSTOMERS]
    for f in spec.entries:
        if f.lower is not None:
            values = at_as_of[f.name].to_numpy(dtype="float64")
            assert (np.isnan(values) | (values >= f.lower)).all(), (f.name, values.min())


def test_no_events_at_all():
    spec = _spec(True, 30)
    customers = customers_frame([{"customer_id": "a", "signup_at": AS_OF, "seats": 1.0,
                                  "plan": "pro", "birth": pd.NaT}])
    events = pd.DataFrame({"customer_id": pd.Series([], dtype=object),
                           "timestamp": pd.Series([], dtype="datetime64[us]"),
                           "event_type": pd.Series([], dtype=object),
                           "amount": pd.Series([], dtype="float64"),
                           "quantity": pd.Series([], dtype="float64")})
    pairs = pd.DataFrame({"customer_id": ["a"], "as_of": [AS_OF]})
    sql = feature_table(customers, events, spec, pairs, evaluator="sql")
    fast = feature_table(customers, events, spec, pairs, evaluator="numpy")
    _assert_same(sql, fast, spec)
    assert fast.loc[0, "events_lifetime"] == 0 and np.isnan(fast.loc[0, "days_since_last_event"])


def test_a_feature_added_as_one_entry_reaches_both_evaluators(monkeypatch):
    """Adding a feature means adding one entry: both evaluators compute it, and agree."""
    from features import definitions

    original = definitions.feature_entries

    def with_extra(spec):
        share = nullif(Agg("count", "ticket", hi=30), 0.0) / greatest(Agg("count", hi=30), 1.0)
        extra = definitions.Feature(
            "ticket_share_30d",
            case((Agg("count", hi=30) >= 1, coalesce(share, 0.0)),
                 otherwise=least(Row("as_of") - Row("signup"), 0.0)))
        return [*original(spec), extra]

    monkeypatch.setattr(definitions, "feature_entries", with_extra)
    spec = _spec(False, None)
    assert "ticket_share_30d" in spec.feature_names
    assert "AS ticket_share_30d" in feature_sql(spec)
    customers = customers_frame([{"customer_id": "a", "signup_at": AS_OF - pd.Timedelta(days=99),
                                  "seats": 1.0, "plan": "pro", "birth": pd.NaT}])
    events = pd.DataFrame({
        "customer_id": ["a"] * 4,
        "timestamp": pd.Series([AS_OF - pd.Timedelta(days=d) for d in (1, 2, 3, 40)],
                               dtype="datetime64[us]"),
        "event_type": pd.Series(["ticket", "login", "login", "ticket"], dtype=object),
        "amount": [1.0, 2.0, np.nan, 4.0], "quantity": [np.nan] * 4,
    })
    pairs = pd.DataFrame({"customer_id": ["a"], "as_of": [AS_OF]})
    sql = feature_table(customers, events, spec, pairs, evaluator="sql")
    fast = feature_table(customers, events, spec, pairs, evaluator="numpy")
    _assert_same(sql, fast, spec)
    assert fast.loc[0, "ticket_share_30d"] == pytest.approx(1 / 3)


def test_an_unknown_evaluator_is_refused():
    spec = _spec(False, None)
    customers = customers_frame([{"customer_id": "a", "signup_at": AS_OF}])
    events = pd.DataFrame({"customer_id": ["a"], "timestamp": [AS_OF - pd.Timedelta(days=1)],
                           "event_type": ["login"]})
    with pytest.raises(ValueError, match="evaluator"):
        feature_table(customers, events, spec, [AS_OF], evaluator="spark")


def test_feature_rows_are_the_feature_table_without_a_frame():
    """The request path's FeatureRows hold what feature_table holds, and encode the same."""
    spec = _spec(True, 30)
    customers = customers_frame([
        {"customer_id": "a", "signup_at": AS_OF - pd.Timedelta(days=99), "seats": 2.0,
         "plan": "pro", "birth": AS_OF - pd.Timedelta(days=9000)},
        {"customer_id": "b", "signup_at": AS_OF - pd.Timedelta(days=5), "seats": None,
         "plan": None, "birth": pd.NaT},
    ]).astype({"seats": "float64", "plan": object})
    events = pd.DataFrame({
        "customer_id": ["a", "a", "b"],
        "timestamp": pd.Series([AS_OF - pd.Timedelta(days=d) for d in (1, 40, 2)],
                               dtype="datetime64[us]"),
        "event_type": pd.Series(["login", "payment", "ticket"], dtype=object),
        "amount": [np.nan, 20.0, np.nan], "quantity": [np.nan, 1.0, np.nan],
    })
    pairs = pd.DataFrame({"customer_id": ["b", "a"], "as_of": [AS_OF, AS_OF]})
    table = feature_table(customers, events, spec, pairs)
    rel = Relations(customers, events, spec)
    rows = features_of_relations(rel.customers, rel.events, obs_relation(pairs), spec)
    pd.testing.assert_frame_equal(rows.to_frame(), table)
    encoder = CategoryEncoder(spec.categorical_features, min_count=1).fit(table)
    names = list(spec.feature_names)
    np.testing.assert_array_equal(encoder.encode_rows(rows, names), encoder.encode(table, names))

    class Model:
        feature_names = names

    framed, arrays = feature_values(Model, table), feature_values(Model, rows)
    assert framed.shape == arrays.shape
    for x, y in zip(framed.ravel(), arrays.ravel(), strict=True):
        assert (pd.isna(x) and pd.isna(y)) or x == y

"""Property: nothing at or after the observation time can change a feature for that time, nor
which features (columns) the table has."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.contract import AttributeKinds, Tables
from features.engine import build_snapshots, feature_table
from features.spec_inference import infer_spec
from tests.unit.builders import AS_OF, customers_frame, events_frame, spec_for

TYPES = ("login", "payment", "ticket")
SPEC = spec_for(TYPES, ("amount",), attributes=AttributeKinds(numeric=("seats",)))
MAX_DAYS_BEFORE = 150
N_CUSTOMERS = 3

amounts = st.one_of(st.none(), st.integers(-500, 500).map(float))
event_types = st.sampled_from((*TYPES, "other"))  # "other" is not in the spec
customer_ids = st.sampled_from([f"c{i}" for i in range(N_CUSTOMERS)] + ["ghost"])


def _events(seconds_from_as_of: st.SearchStrategy[int]) -> st.SearchStrategy[list[tuple]]:
    event = st.tuples(customer_ids, seconds_from_as_of, event_types, amounts)
    return st.lists(event, max_size=25).map(
        lambda rows: [(c, AS_OF + pd.Timedelta(seconds=s), t, a) for c, s, t, a in rows]
    )


past = _events(st.integers(-MAX_DAYS_BEFORE * 86400, -1))
# extra events at or after as_of, including exactly at it
future = _events(st.one_of(st.just(0), st.integers(0, 120 * 86400)))
signups = st.lists(st.integers(0, 200 * 86400), min_size=N_CUSTOMERS, max_size=N_CUSTOMERS)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(signup_seconds=signups, before=past, after=future)
def test_events_at_or_after_as_of_change_nothing(signup_seconds, before, after):
    """The same customers twice: as `c0..` with their past only, as `c0..+` with extra events."""
    customers = customers_frame(
        {"customer_id": f"c{i}{copy}", "signup_at": AS_OF - pd.Timedelta(seconds=s),
         "seats": float(i)}
        for copy in ("", "+") for i, s in enumerate(signup_seconds)
    )
    copied = [(c if c == "ghost" else f"{c}+", *rest) for c, *rest in before + after]
    events = events_frame(before + copied)

    table = feature_table(customers, events, SPEC, [AS_OF])
    base = table[~table["customer_id"].str.endswith("+")].reset_index(drop=True)
    extended = table[table["customer_id"].str.endswith("+")].reset_index(drop=True)
    assert len(base) == N_CUSTOMERS
    pd.testing.assert_frame_equal(
        extended.assign(customer_id=extended["customer_id"].str.rstrip("+")), base)


new_types = st.sampled_from(("refund", "cancel_intent", "zzz"))  # types the past never had
late_events = st.lists(
    st.tuples(st.sampled_from([f"c{i}" for i in range(N_CUSTOMERS)]),
              st.integers(0, 120 * 86400), new_types, amounts),
    min_size=1, max_size=40,
).map(lambda rows: [(c, AS_OF + pd.Timedelta(seconds=s), t, a) for c, s, t, a in rows])


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(signup_seconds=signups, before=past, after=late_events)
def test_events_at_or_after_as_of_change_no_column(signup_seconds, before, after):
    """The spec is learned from the past: many late events of new types add no column."""
    customers = customers_frame(
        {"customer_id": f"c{i}", "signup_at": AS_OF - pd.Timedelta(seconds=s), "seats": float(i)}
        for i, s in enumerate(signup_seconds)
    )
    kinds, values = AttributeKinds(numeric=("seats",)), ("amount",)
    past_only = Tables(customers, events_frame(before), kinds, values)
    everything = Tables(customers, events_frame(before + after), kinds, values)
    spec_past = infer_spec(past_only, before=AS_OF)
    spec_all = infer_spec(everything, before=AS_OF)
    assert spec_all == spec_past
    table_past = feature_table(customers, past_only.events, spec_past, [AS_OF])
    table_all = feature_table(customers, everything.events, spec_all, [AS_OF])
    pd.testing.assert_frame_equal(table_all, table_past)


CONTACT_SPEC = spec_for(TYPES, ("amount",), contact_columns=("store",))
stores = st.sampled_from((None, "Berlin", "Munich", "Hamburg"))


def _store_events(seconds_from_as_of: st.SearchStrategy[int]) -> st.SearchStrategy[list[tuple]]:
    event = st.tuples(customer_ids, seconds_from_as_of, event_types, stores)
    return st.lists(event, max_size=25).map(
        lambda rows: [(c, AS_OF + pd.Timedelta(seconds=s), t, store) for c, s, t, store in rows])


def _with_stores(rows: list[tuple]) -> pd.DataFrame:
    return events_frame([r[:3] for r in rows]).assign(
        store=pd.Series([r[3] for r in rows], dtype=object))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(signup_seconds=signups, before=_store_events(st.integers(-MAX_DAYS_BEFORE * 86400, -1)),
       after=_store_events(st.one_of(st.just(0), st.integers(0, 120 * 86400))))
def test_later_stores_change_no_contact_feature(signup_seconds, before, after):
    """Other stores at or after as_of change neither the distinct stores, the usual store's
    share nor the days since the store changed."""
    customers = customers_frame(
        {"customer_id": f"c{i}{copy}", "signup_at": AS_OF - pd.Timedelta(seconds=s)}
        for copy in ("", "+") for i, s in enumerate(signup_seconds)
    )
    copied = [(c if c == "ghost" else f"{c}+", *rest) for c, *rest in before + after]
    table = feature_table(customers, _with_stores(before + copied), CONTACT_SPEC, [AS_OF])
    assert any(c.startswith("contact_store_") for c in table.columns)
    base = table[~table["customer_id"].str.endswith("+")].reset_index(drop=True)
    extended = table[table["customer_id"].str.endswith("+")].reset_index(drop=True)
    pd.testing.assert_frame_equal(
        extended.assign(customer_id=extended["customer_id"].str.rstrip("+")), base)


BTYD_SPEC = spec_for(TYPES, ("amount",), btyd_horizon_days=30.0)
rng_days = np.random.default_rng(7)
# 30 customers with repeat purchases before AS_OF, so BG/NBD parameters can be fitted
REGULARS = [(f"r{i}", AS_OF - pd.Timedelta(days=int(d), hours=3), "payment", 10.0)
            for i in range(30) for d in rng_days.choice(np.arange(1, 140), size=4, replace=False)]


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(before=past, after=future)
def test_buy_till_you_die_features_see_only_the_past(before, after):
    """Frequency, recency, age and the BG/NBD probabilities fitted at a snapshot time are the
    same whatever happens at or after that time."""
    ids = [f"c{i}" for i in range(N_CUSTOMERS)] + [f"r{i}" for i in range(30)] + ["ghost"]
    customers = customers_frame({"customer_id": c, "signup_at": AS_OF - pd.Timedelta(days=200)}
                                for c in ids)
    kinds, values = AttributeKinds(), ("amount",)
    past_only = Tables(customers, events_frame(REGULARS + before), kinds, values)
    everything = Tables(customers, events_frame(REGULARS + before + after), kinds, values)
    snaps = [build_snapshots(t, BTYD_SPEC, "inactivity", 30, 30, times=[AS_OF]).drop(columns="label")
             for t in (past_only, everything)]
    pd.testing.assert_frame_equal(snaps[1], snaps[0])
    assert snaps[0]["btyd_p_alive"].notna().sum() >= 30  # parameters were fitted

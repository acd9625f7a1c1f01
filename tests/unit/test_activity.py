"""Activity types: events the company caused (an email sent, an invoice) must not make a lapsed
customer look active. With `FeatureSpec.activity_types`, the inactivity label, recency, the
activity totals and BG/NBD read only those types; without them, every event (as before)."""

from __future__ import annotations

import json
from dataclasses import asdict, replace

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.contract import AttributeKinds, Tables
from features.definitions import FeatureSpec
from features.engine import build_snapshots, feature_table, with_btyd
from features.expr import Agg
from features.observations import label_observations, label_sql
from features.relations import Relations
from features.spec_inference import infer_spec
from features.sql import feature_sql
from tests.unit.builders import AS_OF, DAY, customers_frame, events_frame, spec_for

H = 30
TYPES = ("email_sent", "purchase")
# the activity aggregates: what a set of activity types changes
ACTIVITY_FEATURES = (
    "n_events_7d", "n_events_30d", "n_events_90d", "active_days_7d", "active_days_30d",
    "active_days_90d", "days_since_last_event", "events_lifetime", "events_per_day_lifetime",
    "events_per_active_day_90d", "mean_gap_days", "overdue_ratio", "trend_events",
    "btyd_frequency", "btyd_recency_days", "btyd_age_days",
)


def _lapsed_shop() -> tuple[pd.DataFrame, pd.DataFrame]:
    """`lapsed` bought twice 60 days before AS_OF and since only receives emails (before and
    after AS_OF); `buyer` buys before and after AS_OF."""
    customers = customers_frame([{"customer_id": c, "signup_at": AS_OF - 200 * DAY}
                                 for c in ("lapsed", "buyer")])
    events = events_frame(
        [("lapsed", AS_OF - 60 * DAY, "purchase", 20.0),
         ("lapsed", AS_OF - 59 * DAY, "purchase", 5.0)]
        + [("lapsed", AS_OF + d * DAY, "email_sent") for d in (-40, -20, -5, -1, 3, 10, 25, 35)]
        + [("buyer", AS_OF - d * DAY, "purchase", 9.0) for d in (50, 30, 3)]
        + [("buyer", AS_OF + 4 * DAY, "purchase", 9.0)])
    return customers, events


def _snapshot(activity: tuple[str, ...]) -> pd.DataFrame:
    customers, events = _lapsed_shop()
    spec = spec_for(TYPES, activity_types=activity)
    tables = Tables(customers, events, AttributeKinds(), ("amount",))
    return build_snapshots(tables, spec, "inactivity", H, H, times=[AS_OF]).set_index("customer_id")


def test_emails_after_the_last_purchase_do_not_make_a_customer_active():
    with_activity = _snapshot(("purchase",))
    assert with_activity.loc["lapsed", "label"] == 1  # no purchase in the horizon: churned
    assert with_activity.loc["lapsed", "days_since_last_event"] == 59  # from the last purchase
    assert with_activity.loc["lapsed", "events_lifetime"] == 2
    assert with_activity.loc["lapsed", "n_events_30d"] == 0
    assert with_activity.loc["lapsed", "n_email_sent_30d"] == 3  # per-type features stay
    assert with_activity.loc["buyer", "label"] == 0
    every_event = _snapshot(())  # the default: the emails look like activity
    assert every_event.loc["lapsed", "label"] == 0
    assert every_event.loc["lapsed", "days_since_last_event"] == 1
    assert every_event.loc["lapsed", "events_lifetime"] == 6


def test_activity_types_change_only_the_activity_features():
    plain, act = _snapshot(()), _snapshot(("purchase",))
    changed = {c for c in plain.columns if c not in ("as_of", "label")
               and not np.allclose(plain[c], act[c], equal_nan=True)}
    assert changed and changed <= set(ACTIVITY_FEATURES)
    per_type = {c for c in plain.columns if c.startswith(("n_email", "n_purchase", "amount_"))}
    assert per_type and per_type.isdisjoint(changed)


def test_activity_types_of_every_event_change_nothing():
    """Naming every type the log holds gives the default's table (another SQL text, same rows)."""
    plain, every = _snapshot(()), _snapshot(TYPES)
    pd.testing.assert_frame_equal(plain, every)


@pytest.mark.parametrize("kind", ["explicit", "inactivity"])
def test_label_sql_without_activity_types_is_the_old_text(kind):
    assert label_sql(kind, H, ()) == label_sql(kind, H)
    assert ("IN (" in label_sql(kind, H, ("purchase",))) == (kind == "inactivity")


def test_label_observations_read_the_specs_activity_types():
    customers, events = _lapsed_shop()
    for activity, expected in (((), 0), (("purchase",), 1)):
        rel = Relations(customers, events, spec_for(TYPES, activity_types=activity))
        table = label_observations(rel, [AS_OF], "inactivity", H).set_index("customer_id")
        assert table.loc["lapsed", "label"] == expected


def test_a_quote_in_an_activity_type_is_escaped():
    customers = customers_frame([{"customer_id": "c", "signup_at": AS_OF - 100 * DAY}])
    events = events_frame([("c", AS_OF - 2 * DAY, "it's"), ("c", AS_OF + DAY, "it's"),
                           ("c", AS_OF - DAY, "mail")])
    spec = spec_for(("mail",), activity_types=("it's",))
    for evaluator in ("sql", "numpy"):
        row = feature_table(customers, events, spec, [AS_OF], evaluator=evaluator).iloc[0]
        assert row["days_since_last_event"] == 2 and row["events_lifetime"] == 1
    labels = label_observations(Relations(customers, events, spec), [AS_OF], "inactivity", H)
    assert labels["label"].tolist() == [0]


def test_btyd_is_fitted_on_activity_events_only():
    """with_btyd fits BG/NBD on the activity events: emails to everyone add no repeat days."""
    rng = np.random.default_rng(0)
    ids = [f"c{i}" for i in range(40)]
    customers = customers_frame({"customer_id": c, "signup_at": AS_OF - 300 * DAY} for c in ids)
    rows = [(c, AS_OF - int(d) * DAY, "purchase", 10.0) for c in ids
            for d in rng.choice(np.arange(1, 280), size=int(rng.integers(1, 6)), replace=False)]
    rows += [(c, AS_OF - d * DAY - pd.Timedelta(hours=1), "email_sent") for c in ids
             for d in range(1, 280, 7)]
    tables = Tables(customers, events_frame(rows), AttributeKinds(), ("amount",))
    plain = with_btyd(tables, spec_for(TYPES), H, AS_OF)
    act = with_btyd(tables, spec_for(TYPES, activity_types=("purchase",)), H, AS_OF)
    assert act.btyd_params != plain.btyd_params
    table = feature_table(customers, tables.events, act, [AS_OF]).set_index("customer_id")
    purchases = events_frame(rows).query("event_type == 'purchase'")
    days = purchases.groupby("customer_id")["timestamp"].apply(lambda t: t.dt.floor("D").nunique())
    assert (table["btyd_frequency"] == days.reindex(table.index) - 1).all()


# ---------------------------------------------------------------------------------------------
# The two evaluators and the point-in-time property with activity types set
# ---------------------------------------------------------------------------------------------

MICRO = pd.Timedelta(microseconds=1)
DAY_US = 86_400_000_000
SPEC_TYPES = ("login", "payment", "ticket")
EDGE_AGES = [1, DAY_US - 1, DAY_US, 7 * DAY_US, 7 * DAY_US + 1, 30 * DAY_US, 30 * DAY_US + 1,
             90 * DAY_US, 90 * DAY_US + 1, 400 * DAY_US]
ages = st.one_of(st.sampled_from(EDGE_AGES), st.integers(1, 200 * DAY_US))
amounts = st.one_of(st.none(), st.floats(-1e4, 1e4, allow_nan=False, allow_infinity=False))
# "rare" is an activity type outside the spec's event types (its counts are not features)
all_types = (*SPEC_TYPES, "rare", "unseen")
event = st.tuples(st.integers(0, 3), ages, st.sampled_from(all_types), amounts)
activity_sets = st.sampled_from([("payment",), ("login", "payment"), ("rare",),
                                 ("payment", "rare"), ("login", "payment", "rare", "ticket")])


def _frame(rows, sign: int = -1) -> pd.DataFrame:
    return pd.DataFrame({
        "customer_id": [f"c{c}" for c, *_ in rows],
        "timestamp": pd.Series([AS_OF + sign * MICRO * age for _, age, *_ in rows],
                               dtype="datetime64[us]"),
        "event_type": pd.Series([t for _, _, t, _ in rows], dtype=object),
        "amount": pd.Series([a for *_, a in rows], dtype="float64"),
    })


def _spec(activity: tuple[str, ...], btyd: bool) -> FeatureSpec:
    return FeatureSpec(event_types=SPEC_TYPES, value_columns=("amount",),
                       activity_types=activity, btyd_horizon_days=30.0 if btyd else None,
                       btyd_params={"r": 0.8, "alpha": 12.0, "a": 0.6, "b": 2.5} if btyd else None)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tenure=st.lists(st.integers(0, 800 * DAY_US), min_size=4, max_size=4),
       events=st.lists(event, max_size=40), activity=activity_sets, btyd=st.booleans())
def test_numpy_and_sql_agree_with_activity_types(tenure, events, activity, btyd):
    spec = _spec(activity, btyd)
    customers = customers_frame({"customer_id": f"c{i}", "signup_at": AS_OF - MICRO * t}
                                for i, t in enumerate(tenure))
    frame = _frame(events)
    pairs = pd.DataFrame({"customer_id": [f"c{i}" for i in range(4)] + ["c0", "ghost"],
                          "as_of": [AS_OF] * 4 + [AS_OF - 20 * DAY, AS_OF]})
    sql = feature_table(customers, frame, spec, pairs, evaluator="sql")
    fast = feature_table(customers, frame, spec, pairs, evaluator="numpy")
    assert list(sql.columns) == list(fast.columns)
    for col in spec.feature_names:
        x, y = sql[col].to_numpy(dtype="float64"), fast[col].to_numpy(dtype="float64")
        same = np.isclose(x, y, rtol=1e-9, atol=1e-9) | (np.isnan(x) & np.isnan(y))
        assert same.all(), (col, x[~same][:3], y[~same][:3])
    # the activity totals are the totals of the activity events alone
    kept = frame[frame["event_type"].isin(activity)]
    alone = feature_table(customers, kept, replace(spec, activity_types=()), pairs,
                          evaluator="numpy")
    for col in ACTIVITY_FEATURES:
        if col in spec.feature_names and not col.startswith("btyd_p"):
            x, y = fast[col].to_numpy(dtype="float64"), alone[col].to_numpy(dtype="float64")
            assert (np.isclose(x, y, rtol=1e-9, atol=1e-9) | (np.isnan(x) & np.isnan(y))).all(), col


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(before=st.lists(event, max_size=25),
       after=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 120 * DAY_US),
                                st.sampled_from(all_types), amounts), max_size=25),
       activity=activity_sets)
def test_events_at_or_after_as_of_change_nothing_with_activity_types(before, after, activity):
    spec = _spec(activity, btyd=False)
    customers = customers_frame({"customer_id": f"c{i}", "signup_at": AS_OF - 300 * DAY}
                                for i in range(4))
    past = _frame(before)
    everything = pd.concat([past, _frame(after, sign=1)], ignore_index=True)
    for evaluator in ("sql", "numpy"):
        a = feature_table(customers, past, spec, [AS_OF], evaluator=evaluator)
        b = feature_table(customers, everything, spec, [AS_OF], evaluator=evaluator)
        pd.testing.assert_frame_equal(a, b)


# ---------------------------------------------------------------------------------------------
# The spec: recorded with the model, checked against the events
# ---------------------------------------------------------------------------------------------


def test_spec_round_trips_through_json_with_activity_types():
    spec = spec_for(TYPES, activity_types=("purchase",))
    loaded = FeatureSpec.from_json(spec.to_json())
    assert loaded == spec and loaded.activity_types == ("purchase",)
    assert loaded.entries[0].name == spec.entries[0].name
    assert feature_sql(loaded) == feature_sql(spec)


def test_an_old_spec_without_activity_types_loads_as_every_event():
    raw = asdict(spec_for(TYPES))
    del raw["activity_types"]
    loaded = FeatureSpec.from_json(json.dumps(raw))
    assert loaded.activity_types == ()
    assert feature_sql(loaded) == feature_sql(spec_for(TYPES))


def test_infer_spec_records_sorted_activity_types():
    customers, events = _lapsed_shop()
    tables = Tables(customers, events, AttributeKinds(), ("amount",))
    assert infer_spec(tables).activity_types == ()
    spec = infer_spec(tables, activity_types=["purchase", " purchase", "email_sent"])
    assert spec.activity_types == ("email_sent", "purchase")


@pytest.mark.parametrize(("types", "message"), [
    (["purchase", "pageview"], "--activity: event type 'pageview' is not in the events file"),
    ([""], "--activity: an event type must not be empty"),
])
def test_infer_spec_refuses_unknown_activity_types(types, message):
    customers, events = _lapsed_shop()
    tables = Tables(customers, events, AttributeKinds(), ("amount",))
    with pytest.raises(ValueError, match=message):
        infer_spec(tables, activity_types=types)


def test_agg_event_types_are_a_nonempty_set_without_event_type():
    with pytest.raises(ValueError, match="event_types"):
        Agg("count", event_types=())
    with pytest.raises(ValueError, match="event_types"):
        Agg("count", "login", event_types=("login",))
    assert Agg("days", hi=7, event_types=("a",)).key != Agg("days", hi=7).key


def test_the_training_config_holds_activity_types(tmp_path):
    from training.config import config_changes, flat_params, load_config

    assert load_config().activity_types == ()
    path = tmp_path / "shop.toml"
    path.write_text('activity_types = ["purchase", "login"]\n')
    config = load_config(path)
    assert config.activity_types == ("purchase", "login")
    # logged as a JSON list, so a campaign or the monitor can read it back from MLflow
    assert json.loads(flat_params(config)["activity_types"]) == ["purchase", "login"]
    assert config_changes(config) == {"activity_types": '["purchase", "login"]'}
    path.write_text('activity_types = "purchase"\n')
    with pytest.raises(ValueError, match="activity_types"):
        load_config(path)


# ---------------------------------------------------------------------------------------------
# Outcomes judged later read the model's activity types
# ---------------------------------------------------------------------------------------------


def test_monitor_outcomes_use_the_activity_types():
    from monitoring.accuracy import join_outcomes

    customers, events = _lapsed_shop()
    log = pd.DataFrame({"customer_id": ["lapsed", "buyer"], "as_of": [AS_OF, AS_OF],
                        "probability": [0.5, 0.5], "model_version": ["1", "1"],
                        "created_at": [AS_OF, AS_OF]})
    spec = spec_for(TYPES)
    for activity, expected in (((), 0), (("purchase",), 1)):
        joined, _ = join_outcomes(log, customers, events, spec, "inactivity", H, activity)
        assert dict(zip(joined["customer_id"], joined["label"], strict=True)) == {
            "lapsed": expected, "buyer": 0}


def test_campaign_outcomes_use_the_activity_types():
    from campaigns.outcomes import label_members

    customers, events = _lapsed_shop()
    tables = Tables(customers, events, AttributeKinds(), ("amount",))
    ids = ["lapsed", "buyer"]
    assert label_members(tables, ids, AS_OF, "inactivity", H).to_dict() == {
        "lapsed": 0, "buyer": 0}
    assert label_members(tables, ids, AS_OF, "inactivity", H, ["purchase"]).to_dict() == {
        "lapsed": 1, "buyer": 0}


def test_scanned_event_files_give_the_same_activity_labels_and_features(tmp_path):
    """Events read where they lie (DuckDB over Parquet) take the same activity types."""
    from features.engines import make_engine
    from features.sources import open_tables

    customers, events = _lapsed_shop()
    customers.to_parquet(tmp_path / "customers.parquet")
    events.to_parquet(tmp_path / "events.parquet")
    scanned = open_tables(tmp_path / "customers.parquet", tmp_path / "events.parquet",
                          make_engine("duckdb"))
    spec = infer_spec(scanned, before=AS_OF, activity_types=["purchase"])
    snaps = build_snapshots(scanned, spec, "inactivity", H, H, times=[AS_OF])
    in_memory = _snapshot(("purchase",))
    got = snaps.set_index("customer_id").loc[in_memory.index]
    for col in ("label", "days_since_last_event", "events_lifetime", "n_email_sent_30d"):
        assert got[col].tolist() == in_memory[col].tolist(), col
    with pytest.raises(ValueError, match="--activity: event type 'nope'"):
        infer_spec(scanned, activity_types=["nope"])

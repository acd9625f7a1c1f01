"""Eligibility and labels (explicit churn dates and inactivity), and observation times."""

from __future__ import annotations

import pandas as pd
import pytest

from features.contract import AttributeKinds, Tables
from features.engine import build_snapshots, feature_table
from features.observations import label_observations, label_sql, observation_times
from features.relations import Relations
from tests.unit.builders import AS_OF, DAY, SECOND, customers_frame, events_frame, spec_for

T = AS_OF
H = 30  # horizon in days
LONG_AGO = T - 100 * DAY


def _labels(customers, events, kind, times=(T,), horizon=H) -> dict[tuple[str, pd.Timestamp], int]:
    rel = Relations(customers, events, spec_for())
    table = label_observations(rel, list(times), kind, horizon)
    assert list(table.columns) == ["customer_id", "as_of", "label"]
    assert table["label"].dtype == "int8"
    return {(c, pd.Timestamp(t)): int(v) for c, t, v in table.itertuples(index=False)}


def _label_of(customers, events, kind, cid="c"):
    """The customer's label at T, or None when the customer is not eligible."""
    return _labels(customers, events, kind).get((cid, T))


# --------------------------------------------------------------------------------------------
# explicit: churned_at in (t, t + horizon]
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("signup", "churned", "expected"),
    [
        pytest.param(LONG_AGO, None, 0, id="never-churns"),
        pytest.param(LONG_AGO, T, None, id="churned-exactly-at-t-not-eligible"),
        pytest.param(LONG_AGO, T - DAY, None, id="churned-before-t-not-eligible"),
        pytest.param(LONG_AGO, T + SECOND, 1, id="churns-1s-after-t"),
        pytest.param(LONG_AGO, T + H * DAY, 1, id="churns-exactly-at-horizon"),
        pytest.param(LONG_AGO, T + H * DAY + SECOND, 0, id="churns-1s-after-horizon"),
        pytest.param(T, T + DAY, 1, id="signup-at-t-eligible"),
        pytest.param(T + SECOND, T + DAY, None, id="signup-after-t-excluded"),
    ],
)
def test_explicit_label(signup, churned, expected):
    customers = customers_frame([{"customer_id": "c", "signup_at": signup, "churned_at": churned}])
    assert _label_of(customers, events_frame([]), "explicit") == expected


def test_explicit_label_ignores_events():
    customers = customers_frame([{"customer_id": "c", "signup_at": LONG_AGO}])
    events = events_frame([("c", T - 200 * DAY, "login")])  # long lapsed, still eligible
    assert _label_of(customers, events, "explicit") == 0


# --------------------------------------------------------------------------------------------
# inactivity: no event in (t, t + horizon]; everyone active at t is labelled, lapsed or not
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("signup", "offsets", "expected"),
    [
        pytest.param(LONG_AGO, [-5 * DAY, 10 * DAY], 0, id="active-after"),
        pytest.param(LONG_AGO, [-5 * DAY], 1, id="silent-after"),
        pytest.param(LONG_AGO, [-5 * DAY, H * DAY], 0, id="event-exactly-at-horizon"),
        pytest.param(LONG_AGO, [-5 * DAY, H * DAY + SECOND], 1, id="event-1s-after-horizon"),
        pytest.param(LONG_AGO, [-5 * DAY, SECOND], 0, id="event-1s-after-t"),
        pytest.param(LONG_AGO, [-5 * DAY, pd.Timedelta(0)], 1, id="event-at-t-is-not-after"),
        pytest.param(LONG_AGO, [-(H * DAY) + SECOND], 1, id="active-just-inside-horizon-before"),
        pytest.param(LONG_AGO, [-40 * DAY], 1, id="lapsed-stays-lapsed"),
        pytest.param(LONG_AGO, [-40 * DAY, 5 * DAY], 0, id="lapsed-returns"),
        pytest.param(LONG_AGO, [], 1, id="never-active-old-signup"),
        pytest.param(T - 10 * DAY, [], 1, id="new-signup-silent"),
        pytest.param(T - 10 * DAY, [3 * DAY], 0, id="new-signup-active"),
        pytest.param(T, [DAY], 0, id="signup-at-t"),
        pytest.param(T + DAY, [2 * DAY], None, id="signup-after-t-excluded"),
    ],
)
def test_inactivity_label(signup, offsets, expected):
    customers = customers_frame([{"customer_id": "c", "signup_at": signup},
                                 {"customer_id": "other", "signup_at": LONG_AGO}])
    events = events_frame([("c", T + o, "login") for o in offsets]
                          + [("other", T + DAY, "login"), ("other", T - DAY, "login")])
    labels = _labels(customers, events, "inactivity")
    assert labels.get(("c", T)) == expected
    assert labels[("other", T)] == 0


def test_inactivity_excludes_customers_churned_by_t():
    customers = customers_frame([{"customer_id": "c", "signup_at": LONG_AGO, "churned_at": T}])
    events = events_frame([("c", T - DAY, "login")])
    assert _label_of(customers, events, "inactivity") is None


@pytest.mark.parametrize("horizon", [7, 14.5, 60])
def test_label_horizon_is_a_parameter(horizon):
    churn = T + horizon * DAY
    customers = customers_frame([
        {"customer_id": "in", "signup_at": LONG_AGO, "churned_at": churn},
        {"customer_id": "out", "signup_at": LONG_AGO, "churned_at": churn + SECOND},
    ])
    labels = _labels(customers, events_frame([]), "explicit", horizon=horizon)
    assert labels == {("in", T): 1, ("out", T): 0}


def test_label_observations_at_several_times_sorted():
    t1, t2 = T - 60 * DAY, T
    customers = customers_frame([
        {"customer_id": "b", "signup_at": LONG_AGO, "churned_at": t1 + 10 * DAY},
        {"customer_id": "a", "signup_at": LONG_AGO},
        {"customer_id": "c", "signup_at": t1 + DAY, "churned_at": t2 + DAY},
    ])
    rel = Relations(customers, events_frame([]), spec_for())
    table = label_observations(rel, [t2, t1], "explicit", H)
    assert list(table.itertuples(index=False, name=None)) == [
        ("a", t1, 0), ("b", t1, 1), ("a", t2, 0), ("c", t2, 1)]


def test_unknown_label_kind():
    with pytest.raises(ValueError, match="label must be one of explicit, inactivity"):
        label_sql("sometimes", 30)


# --------------------------------------------------------------------------------------------
# build_snapshots
# --------------------------------------------------------------------------------------------


def _tables(customers, events) -> Tables:
    return Tables(customers, events, AttributeKinds(), ("amount",))


def test_build_snapshots_joins_labels_to_point_in_time_features():
    t1, t2 = T - 30 * DAY, T
    customers = customers_frame([
        {"customer_id": "a", "signup_at": LONG_AGO, "churned_at": t2 + 5 * DAY},
        {"customer_id": "b", "signup_at": LONG_AGO, "churned_at": t1},
        {"customer_id": "c", "signup_at": t1 + DAY},
    ])
    events = events_frame([
        ("a", t1 - DAY, "login"), ("a", t2 - DAY, "payment", 10.0), ("a", t2 + DAY, "login"),
        ("b", t1 - 2 * DAY, "login"), ("c", t2 - 3 * DAY, "login"),
    ])
    spec = spec_for()
    snaps = build_snapshots(_tables(customers, events), spec, "explicit", H, 30, times=[t1, t2])

    assert list(snaps.columns) == ["customer_id", "as_of", *spec.feature_names, "label"]
    assert list(zip(snaps["customer_id"], snaps["as_of"], snaps["label"])) == [
        ("a", t1, 0), ("a", t2, 1), ("c", t2, 0)]
    expected = feature_table(customers, events, spec, snaps[["customer_id", "as_of"]])
    pd.testing.assert_frame_equal(snaps.drop(columns="label"), expected)
    assert snaps["label"].dtype == "int8"


def test_build_snapshots_inactivity():
    customers = customers_frame([
        {"customer_id": "stays", "signup_at": LONG_AGO},
        {"customer_id": "leaves", "signup_at": LONG_AGO},
        {"customer_id": "lapsed", "signup_at": LONG_AGO},
    ])
    events = events_frame([
        ("stays", T - DAY, "login"), ("stays", T + DAY, "login"),
        ("leaves", T - DAY, "login"),
        ("lapsed", T - 60 * DAY, "login"),
    ])
    snaps = build_snapshots(_tables(customers, events), spec_for(), "inactivity", H, 30, times=[T])
    # the lapsed customer is labelled too: training sees the population that scoring scores
    assert dict(zip(snaps["customer_id"], snaps["label"])) == {"leaves": 1, "stays": 0,
                                                                "lapsed": 1}
    assert snaps.set_index("customer_id").loc["leaves", "n_events_7d"] == 1


def test_build_snapshots_chooses_times_itself():
    customers = customers_frame([{"customer_id": "c", "signup_at": "2023-12-01"}])
    events = events_frame([("c", pd.Timestamp("2024-01-01") + k * 5 * DAY, "login")
                           for k in range(40)])  # 2024-01-01 .. 2024-06-14
    tables = _tables(customers, events)
    snaps = build_snapshots(tables, spec_for(), "inactivity", H, 20)
    times = observation_times(customers, events, H, 20)
    assert times  # enough data for at least one time
    assert sorted(snaps["as_of"].unique()) == times


def test_build_snapshots_without_a_usable_time_is_an_error():
    customers = customers_frame([{"customer_id": "c", "signup_at": "2024-01-01"}])
    events = events_frame([("c", "2024-01-02", "login"), ("c", "2024-02-01", "login")])
    with pytest.raises(ValueError, match="no observation time"):
        build_snapshots(_tables(customers, events), spec_for(), "explicit", H, 30)


# --------------------------------------------------------------------------------------------
# observation_times
# --------------------------------------------------------------------------------------------


def _history(last_event: str, last_churn: str | None):
    customers = customers_frame([
        {"customer_id": "a", "signup_at": "2023-12-01", "churned_at": last_churn},
        {"customer_id": "b", "signup_at": "2023-12-01"},
    ])
    events = events_frame([("a", "2024-01-01 00:00", "login"), ("b", last_event, "login")])
    return customers, events


@pytest.mark.parametrize(
    ("last_event", "last_churn", "horizon", "cadence", "expected"),
    [
        pytest.param("2024-06-15 12:00", "2024-06-20 10:00", 30, 14,
                     ["2024-04-09", "2024-04-23", "2024-05-07", "2024-05-21"], id="churn-is-end"),
        pytest.param("2024-06-20 10:00", None, 30, 14,
                     ["2024-04-09", "2024-04-23", "2024-05-07", "2024-05-21"], id="event-is-end"),
        pytest.param("2024-06-21 00:00", None, 30, 30,
                     ["2024-04-22", "2024-05-22"], id="end-at-midnight"),
        pytest.param("2024-06-21 00:00", None, 60, 7,
                     ["2024-04-01", "2024-04-08", "2024-04-15", "2024-04-22"], id="long-horizon"),
        pytest.param("2024-04-30 00:00", None, 30, 7, ["2024-03-31"], id="just-enough-history"),
        pytest.param("2024-04-29 23:59", None, 30, 7, [], id="too-little-data"),
    ],
)
def test_observation_times(last_event, last_churn, horizon, cadence, expected):
    customers, events = _history(last_event, last_churn)
    times = observation_times(customers, events, horizon, cadence, min_history_days=90)
    assert times == [pd.Timestamp(t) for t in expected]
    end = max(pd.Timestamp(last_event), pd.Timestamp(last_churn or last_event))
    first = pd.Timestamp("2024-01-01") + 90 * DAY
    for t in times:
        assert t == t.floor("D")
        assert t + horizon * DAY <= end
        assert t >= first
    if times:  # the newest time is the latest midnight whose horizon is fully observed
        assert times[-1] + DAY + horizon * DAY > end
    assert all(b - a == cadence * DAY for a, b in zip(times, times[1:]))


@pytest.mark.parametrize(("horizon", "cadence"), [(0, 30), (30, 0), (-1, 30)])
def test_observation_times_need_positive_days(horizon, cadence):
    customers, events = _history("2024-06-01", None)
    with pytest.raises(ValueError, match="must be positive"):
        observation_times(customers, events, horizon, cadence)

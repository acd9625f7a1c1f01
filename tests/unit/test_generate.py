"""Smoke tests of the synthetic history generator against the data contract and the engine."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.contract import Tables
from features.engine import feature_table
from features.spec_inference import infer_spec
from features.tables import drop_unknown_customers, validate_customers, validate_events
from simulation.generate import apply_treatment, generate


@pytest.mark.parametrize("kind", ["subscription", "retail"])
def test_generated_data_follows_the_contract(kind):
    customers, events = generate(60, seed=3, kind=kind)
    again = generate(60, seed=3, kind=kind)
    pd.testing.assert_frame_equal(customers, again[0])
    pd.testing.assert_frame_equal(events, again[1])

    customers, kinds = validate_customers(customers, "generated customers")
    events, value_cols, _ = validate_events(events, "generated events")
    events, dropped = drop_unknown_customers(events, customers)
    assert dropped == 0
    assert "date_of_birth" in kinds.datetime
    assert "country" in kinds.categorical
    assert value_cols[0] == "amount"

    spec = infer_spec(Tables(customers, events, kinds, value_cols))
    table = feature_table(customers, events, spec, [pd.Timestamp("2026-03-01")])
    assert list(table.columns) == ["customer_id", "as_of", *spec.feature_names]
    assert len(table) > 0
    assert table["tenure_days"].ge(0).all()


@pytest.mark.parametrize(("args", "message"), [((0,), "at least 1"),
                                                ((5, 0, "wholesale"), "kind must be one of")])
def test_generate_rejects_bad_arguments(args, message):
    with pytest.raises(ValueError, match=message):
        generate(*args)


AS_OF = pd.Timestamp("2026-03-01")
HORIZON = 60
FACTORS = {"complaints": 0.5, "contact_drop": 0.8}


def _in_horizon(customers: pd.DataFrame) -> pd.Series:
    churn = customers["churned_at"]
    return (churn > AS_OF) & (churn <= AS_OF + pd.Timedelta(days=HORIZON))


def test_treatment_keeps_churn_in_the_horizon_at_the_rate_of_its_factor():
    """A large hand-built cohort, every customer churning inside the horizon: the share of the
    treated who still churn is the family's factor within sampling error."""
    n = 60_000
    rng = np.random.default_rng(5)
    ids = np.arange(n)
    churn = AS_OF + pd.to_timedelta(rng.uniform(0.5, HORIZON, n), unit="D")
    customers = pd.DataFrame({"customer_id": ids,
                              "signup_at": AS_OF - pd.Timedelta(days=200),
                              "churned_at": churn.astype("datetime64[us]")})
    events = pd.DataFrame({"customer_id": ids,
                           "timestamp": (AS_OF - pd.Timedelta(days=3)).as_unit("us"),
                           "event_type": "login", "amount": np.nan})
    families = np.array(["complaints", "contact_drop", "payment"])[ids % 3]
    treated = pd.DataFrame({"customer_id": ids, "family": families})
    after, _ = apply_treatment(customers, events, treated, AS_OF, HORIZON, FACTORS, seed=1)
    kept = _in_horizon(after)
    for family, factor in [("complaints", 0.5), ("contact_drop", 0.8), ("payment", 1.0)]:
        share = kept[families == family].mean()
        se = max(np.sqrt(factor * (1 - factor) / (n / 3)), 1e-9)
        assert abs(share - factor) < 4 * se, (family, share)
    # the saved stay, and churn outside the horizon is never touched
    assert after["churned_at"][~kept].isna().all()


@pytest.fixture(scope="module")
def world():
    customers, events = generate(1500, seed=4)
    rng = np.random.default_rng(0)
    treated = customers[["customer_id"]].sample(800, random_state=1).assign(
        family=lambda t: rng.choice(["complaints", "contact_drop", "payment"], len(t)))
    return customers, events, treated


def test_treatment_changes_only_the_saved_and_continues_their_activity(world):
    customers, events, treated = world
    after_c, after_e = apply_treatment(customers, events, treated, AS_OF, HORIZON, FACTORS, seed=2)
    again = apply_treatment(customers, events, treated.sample(frac=1, random_state=3), AS_OF,
                            HORIZON, FACTORS, seed=2)
    pd.testing.assert_frame_equal(after_c, again[0])  # same seed, any row order: same world
    pd.testing.assert_frame_equal(after_e, again[1])

    untreated = ~customers["customer_id"].isin(treated["customer_id"])
    pd.testing.assert_frame_equal(after_c[untreated], customers[untreated])
    keep = ~events["customer_id"].isin(treated["customer_id"])
    pd.testing.assert_frame_equal(after_e[~after_e["customer_id"].isin(treated["customer_id"])]
                                  .reset_index(drop=True), events[keep].reset_index(drop=True))

    saved = _in_horizon(customers) & after_c["churned_at"].isna()
    assert saved.sum() > 0
    assert (after_c["churned_at"] != customers["churned_at"])[customers["churned_at"].notna()
                                                            ].sum() == saved.sum()
    end = events["timestamp"].max()
    for cid, churn in customers.loc[saved, ["customer_id", "churned_at"]].itertuples(index=False):
        before = events[events["customer_id"] == cid]
        now = after_e[after_e["customer_id"] == cid]
        pd.testing.assert_frame_equal(now[now["timestamp"] <= churn].reset_index(drop=True),
                                      before.reset_index(drop=True))
        later = now[now["timestamp"] > churn]
        assert (later["timestamp"] <= end).all()
        source = before[(before["timestamp"] < AS_OF)
                        & (before["timestamp"] >= AS_OF - pd.Timedelta(days=84))]
        assert set(later["event_type"]) <= set(source["event_type"])
        if len(source) >= 10:  # an active customer stays active to the end of the log
            assert later["timestamp"].max() > end - pd.Timedelta(days=30)
    validate_events(after_e, "treated events")


def test_treatment_with_factor_one_changes_nothing(world):
    customers, events, treated = world
    after_c, after_e = apply_treatment(customers, events, treated, AS_OF, HORIZON,
                                       {"complaints": 1.0}, seed=2)
    pd.testing.assert_frame_equal(after_c, customers)
    pd.testing.assert_frame_equal(after_e, events)


@pytest.mark.parametrize(("change", "message"), [
    ({"treated": pd.DataFrame({"customer_id": [100001]})}, "missing column 'family'"),
    ({"treated": pd.DataFrame({"customer_id": [1], "family": ["payment"]})},
     "customer_id 1 is not in customers"),
    ({"treated": pd.DataFrame({"customer_id": [100001, 100001], "family": ["payment"] * 2})},
     "appears more than once"),
    ({"factors": {"complaints": 1.5}}, "factors.complaints: must be between 0 and 1"),
    ({"horizon_days": 0}, "horizon_days must be at least 1"),
    ({"customers": "retail"}, "no churned_at column"),
])
def test_treatment_rejects_bad_arguments(world, change, message):
    customers, events, treated = world
    args = {"customers": customers, "events": events, "treated": treated, "as_of": AS_OF,
            "horizon_days": HORIZON, "factors": FACTORS} | change
    if isinstance(args["customers"], str):
        args["customers"] = customers.drop(columns="churned_at")
    with pytest.raises(ValueError, match=message):
        apply_treatment(**args)

"""The customer sample `churn train` takes when the snapshots would exceed the memory budget:
stratified by label and cohort, the same customers at every time, stable for a seed, decided
before any snapshot is built."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.contract import AttributeKinds, Tables
from features.engine import build_snapshots
from features.observations import active_at
from tests.unit.builders import DAY, customers_frame, events_frame, spec_for
from training.config import TrainConfig, flat_params, load_config
from training.sample import (
    PEAK_PER_TABLE_BYTE,
    active_counts,
    budget_rows,
    customer_strata,
    restrict,
    row_bytes,
    sample_customers,
)

START = pd.Timestamp("2024-01-01")
TIMES = [pd.Timestamp("2024-03-01") + k * 7 * DAY for k in range(5)]
H = 14


def _shop(n: int = 400, seed: int = 1) -> Tables:
    """`n` customers signed up over 90 days, about a third churning during the observed weeks,
    each with a login every four days while a customer."""
    rng = np.random.default_rng(seed)
    signup = START + pd.to_timedelta(rng.uniform(0, 90, n), unit="D").round("s")
    churns = rng.random(n) < 0.35
    after = signup.where(signup > TIMES[0], TIMES[0]) + pd.to_timedelta(rng.uniform(1, 45, n), unit="D")
    churned = pd.Series(after.round("s"))
    churned[~churns] = pd.NaT
    customers = customers_frame({"customer_id": f"C{i:04d}", "signup_at": signup[i],
                                 "churned_at": churned[i]} for i in range(n))
    end = TIMES[-1] + (H + 1) * DAY
    rows = []
    for i in range(n):
        stop = churned[i] if churns[i] else end
        t = signup[i]
        while t < stop:
            rows.append((f"C{i:04d}", t, "login"))
            t += 4 * DAY
    return Tables(customers, events_frame(rows), AttributeKinds(), ())


def _budget(tables: Tables, share: float) -> float:
    """The memory budget (MB) that holds `share` of the snapshot rows at TIMES."""
    rows = active_counts(tables.customers, TIMES).sum()
    return share * rows * PEAK_PER_TABLE_BYTE * row_bytes(SPEC) / 1e6


SPEC = spec_for(event_types=("login",), value_columns=())


@pytest.fixture(scope="module")
def shop() -> Tables:
    return _shop()


@pytest.mark.parametrize("label", ["explicit", "inactivity"])
def test_every_label_and_cohort_keeps_the_same_share(shop, label):
    strata = customer_strata(shop, SPEC, label, H, TIMES)
    sample = sample_customers(shop, SPEC, label, H, TIMES, _budget(shop, 0.4), seed=0)
    assert sample.sampled and 0.38 < sample.fraction < 0.42
    assert sample.customers == len(strata) and sample.kept == len(sample.ids)
    kept = strata.index.isin(sample.ids)
    assert {s.split()[0] for s in strata} == {"churners", "non_churners"}
    for name, members in strata.groupby(strata.to_numpy()):
        share = kept[strata.index.get_indexer(members.index)].mean()
        assert abs(share - sample.fraction) <= 1 / len(members) + 1e-9, name
        assert sample.strata[name]["customers"] == len(members)
    churner = strata.str.startswith("churners ").to_numpy()
    assert abs(churner[kept].mean() - churner.mean()) < 0.02
    params = sample.params()
    assert params["sampled"] is True and params["sample_customers_kept"] == sample.kept
    for name in ("churners", "non_churners"):
        assert abs(params[f"sample_fraction.{name}"] - sample.fraction) < 0.02


def test_sampled_snapshots_are_the_whole_snapshots_of_the_customers_kept(shop):
    sample = sample_customers(shop, SPEC, "explicit", H, TIMES, _budget(shop, 0.5), seed=0)
    full = build_snapshots(shop, SPEC, "explicit", H, 7, times=TIMES)
    snaps = build_snapshots(restrict(shop, sample.ids), SPEC, "explicit", H, 7, times=TIMES)
    kept = set(sample.ids)
    for t in TIMES:  # every kept customer active at t, and nobody else, at every time
        active = set(shop.customers.loc[active_at(shop.customers, t), "customer_id"])
        assert set(snaps.loc[snaps["as_of"] == t, "customer_id"]) == active & kept
    expected = full[full["customer_id"].isin(kept)].reset_index(drop=True)
    pd.testing.assert_frame_equal(snaps, expected)
    assert abs(len(snaps) / len(full) - 0.5) < 0.03  # the cohorts keep the rows' share too
    assert len(snaps) <= 1.03 * budget_rows(_budget(shop, 0.5), SPEC)


def test_the_sample_is_stable_for_a_seed(shop):
    def ids(share: float, seed: int) -> set[str]:
        return set(sample_customers(shop, SPEC, "explicit", H, TIMES, _budget(shop, share),
                                    seed).ids)

    assert ids(0.3, 0) == ids(0.3, 0)
    assert ids(0.3, 0) != ids(0.3, 1)
    assert len(ids(0.3, 0)) < len(ids(0.6, 0))
    # a customer's place does not depend on the others: fewer customers, same choice
    fewer = Tables(shop.customers.iloc[::-1].reset_index(drop=True), shop.events,
                   shop.attributes, ())
    again = sample_customers(fewer, SPEC, "explicit", H, TIMES, _budget(shop, 0.3), 0)
    assert set(again.ids) == ids(0.3, 0)


@pytest.mark.parametrize("memory_mb", [0.0, 1e6])
def test_within_the_budget_or_without_one_everyone_is_kept(shop, memory_mb):
    sample = sample_customers(shop, SPEC, "explicit", H, TIMES, memory_mb, seed=0)
    assert not sample.sampled and sample.ids is None and sample.fraction == 1.0
    assert (sample.describe()["rows_budget"] is None) == (memory_mb == 0)
    assert sample.kept == sample.customers == int((active_counts(shop.customers, TIMES) > 0).sum())
    assert restrict(shop, sample.ids) is shop
    assert sample.params() == {"sampled": False, "sample_customers": sample.kept,
                               "sample_customers_kept": sample.kept, "sample_fraction": 1.0}


def test_restrict_keeps_the_customers_and_their_events_alone(shop):
    ids = np.array(["C0001", "C0007"], dtype=object)
    small = restrict(shop, ids)
    assert sorted(small.customers["customer_id"]) == ["C0001", "C0007"]
    assert set(small.events["customer_id"]) == {"C0001", "C0007"}
    assert len(small.events) == shop.events["customer_id"].isin(ids).sum()


def test_scanned_events_follow_the_sampled_customers_table(tmp_path, shop):
    """Events read where they lie are filtered by the engine's events relation, which reads
    only the customers in the (sampled) customers table."""
    from features.engines import make_engine
    from features.sources import open_tables

    shop.customers.to_parquet(tmp_path / "customers.parquet")
    shop.events.to_parquet(tmp_path / "events.parquet")
    scanned = open_tables(tmp_path / "customers.parquet", tmp_path / "events.parquet",
                          make_engine("duckdb"))
    sample = sample_customers(scanned, SPEC, "inactivity", H, TIMES, _budget(shop, 0.3), 0)
    assert set(sample.ids) == set(sample_customers(shop, SPEC, "inactivity", H, TIMES,
                                                   _budget(shop, 0.3), 0).ids)
    snaps = build_snapshots(restrict(scanned, sample.ids), SPEC, "inactivity", H, 7,
                            times=TIMES[:2])
    full = build_snapshots(shop, SPEC, "inactivity", H, 7, times=TIMES[:2])
    expected = full[full["customer_id"].isin(sample.ids)].reset_index(drop=True)
    assert snaps["customer_id"].tolist() == expected["customer_id"].tolist()
    assert snaps["label"].tolist() == expected["label"].tolist()
    assert snaps["events_lifetime"].tolist() == expected["events_lifetime"].tolist()


def test_the_budget_is_a_config_setting_logged_with_the_rest():
    assert TrainConfig().sample.memory_mb == 3300 == load_config().sample.memory_mb
    assert flat_params(TrainConfig())["sample.memory_mb"] == 3300
    with pytest.raises(ValueError):
        TrainConfig.model_validate({"sample": {"memory_mb": -1}})
    assert budget_rows(0, SPEC) is None

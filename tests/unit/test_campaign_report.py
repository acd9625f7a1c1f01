"""The campaign report's arithmetic: intervals checked against published values and scipy, the
uplift recovered on synthetic campaigns, and nothing claimed where nothing was done."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest
from scipy.stats.contingency import relative_risk

from campaigns.report import campaign_report, newcombe_difference, save_rate, wilson


@pytest.mark.parametrize(("k1", "n1", "k2", "n2", "low", "high"), [
    (56, 70, 48, 80, 0.0524, 0.3339), (9, 10, 3, 10, 0.1705, 0.8090),
    (6, 7, 2, 7, 0.0582, 0.8062), (5, 56, 0, 29, -0.0381, 0.1926)])
def test_newcombe_matches_the_published_examples(k1, n1, k2, n2, low, high):
    # Newcombe (1998), Statistics in Medicine 17:873, Table II, method 10
    d = newcombe_difference(k1, n1, k2, n2)
    assert d.value == pytest.approx(k1 / n1 - k2 / n2)
    assert (d.low, d.high) == (pytest.approx(low, abs=1e-4), pytest.approx(high, abs=1e-4))


@pytest.mark.parametrize(("k", "n", "level"), [(0, 10, 0.95), (3, 40, 0.9), (40, 40, 0.99),
                                                (123, 1000, 0.95)])
def test_wilson_matches_scipy(k, n, level):
    ours = wilson(k, n, level)
    low, high = binomtest(k, n).proportion_ci(confidence_level=level, method="wilson")
    assert (ours.low, ours.high) == (pytest.approx(low), pytest.approx(high))


@pytest.mark.parametrize(("kt", "nt", "kc", "nc", "level"), [(30, 400, 25, 100, 0.95),
                                                             (90, 800, 40, 200, 0.9)])
def test_save_rate_is_one_minus_katz_relative_risk(kt, nt, kc, nc, level):
    ours = save_rate(kt, nt, kc, nc, level)
    rr = relative_risk(kt, nt, kc, nc)
    ci = rr.confidence_interval(confidence_level=level)
    assert ours.value == pytest.approx(1 - rr.relative_risk)
    assert (ours.low, ours.high) == (pytest.approx(1 - ci.high), pytest.approx(1 - ci.low))


def test_save_rate_with_zero_cells():
    assert not save_rate(0, 100, 0, 50).known  # nobody left in control: nothing to save
    s = save_rate(0, 100, 10, 50)
    assert s.value == 1.0 and s.low < 1.0 and s.high > 0.9


def test_newcombe_covers_the_true_difference():
    rng = np.random.default_rng(5)
    pc, pt, nc, nt = 0.3, 0.2, 120, 480
    hits = sum(newcombe_difference(int(rng.binomial(nc, pc)), nc, int(rng.binomial(nt, pt)), nt)
               .contains(pc - pt) for _ in range(2000))
    assert 0.93 <= hits / 2000 <= 0.97


def synthetic(n: int, control_share: float, churn: float, factor: float, seed: int,
              families: tuple[str, ...] = ("payment", "contact_drop")):
    """Members and data outcomes of a campaign whose treatment multiplies churn by `factor`."""
    rng = np.random.default_rng(seed)
    arm = np.where(rng.random(n) < control_share, "control", "treatment")
    left = rng.random(n) < np.where(arm == "treatment", churn * factor, churn)
    ids = [f"c{i}" for i in range(n)]
    members = pd.DataFrame({
        "customer_id": ids, "arm": arm, "risk_band": "high",
        "value_segment": rng.choice(["top", "middle", "bottom"], n), "probability": churn,
        "customer_value": 100.0, "action_family": rng.choice(families, n), "action": "call"})
    outcomes = pd.DataFrame({"customer_id": ids, "reached": pd.array([None] * n, "boolean"),
                             "result": np.where(left, "left", "stayed"), "reason": None,
                             "reason_text": "", "recorded_at": pd.Timestamp("2026-08-01"),
                             "source": "data"})
    return members, outcomes


def test_report_recovers_a_known_uplift():
    members, outcomes = synthetic(4000, 0.2, churn=0.4, factor=0.5, seed=1)
    report = campaign_report(members, outcomes, offer_cost=10.0)
    assert report.overall.uplift.contains(0.2) and report.overall.uplift.low > 0.1
    assert report.overall.save_rate.contains(0.5)
    assert report.suggested_save_rate == report.overall.save_rate
    treated = report.overall.treatment.members
    assert report.money.cost == 10.0 * treated
    assert report.money.customers_saved.value == pytest.approx(report.overall.uplift.value * treated)
    assert report.money.value_saved.value == pytest.approx(report.overall.uplift.value * treated * 100)
    assert [c.label for c in report.by_value_segment] == ["top", "middle", "bottom"]
    assert sum(c.treatment.members for c in report.by_action_family) == treated
    assert report.overall.net == report.money.net and report.overall.cost == report.money.cost
    for seg in report.by_value_segment:  # each segment's money from its own members
        assert seg.cost == 10.0 * seg.treatment.members
        assert seg.value_saved.value == pytest.approx(seg.uplift.value * seg.treatment.members * 100)
        assert seg.net.low == pytest.approx(seg.value_saved.low - seg.cost)
    assert report.pending == 0


def test_ineffective_campaign_shows_no_uplift():
    members, outcomes = synthetic(4000, 0.2, churn=0.4, factor=1.0, seed=2)
    report = campaign_report(members, outcomes, offer_cost=10.0)
    assert report.overall.uplift.contains(0.0) and report.overall.save_rate.contains(0.0)
    assert report.money.net.low < 0  # the offers may well have been money thrown away


def test_stratified_breakdown_recovers_only_the_effective_family():
    members, outcomes = synthetic(6000, 0.3, churn=0.4, factor=1.0, seed=3)
    pay = (members["action_family"] == "payment") & (members["arm"] == "treatment")
    rng = np.random.default_rng(9)  # the payment action halves churn among the treated
    keep = pay & (outcomes["result"] == "left") & (rng.random(len(members)) < 0.5)
    outcomes = outcomes.assign(result=outcomes["result"].where(~keep, "stayed"))
    by = {c.label: c for c in campaign_report(members, outcomes).by_action_family}
    assert by["payment"].uplift.contains(0.2) and by["payment"].uplift.low > 0
    assert by["contact_drop"].uplift.contains(0.0)


def test_imports_never_stand_in_for_the_data():
    members, outcomes = synthetic(10, 0.5, churn=0.5, factor=1.0, seed=4)
    treated = members.loc[members["arm"] == "treatment", "customer_id"].tolist()
    imports = pd.DataFrame({
        "customer_id": treated, "reached": pd.array([True] * len(treated), "boolean"),
        "result": ["left"] + ["stayed"] * (len(treated) - 1),
        "reason": ["price"] + ["other"] * (len(treated) - 1), "reason_text": "",
        "recorded_at": pd.Timestamp("2026-07-05"), "source": "import"})
    report = campaign_report(members, imports, reason_labels={"price": "Price"})
    assert report.pending == len(members) and not report.overall.uplift.known
    assert not report.suggested_save_rate.known
    assert report.contacts["reached"] == len(treated) and report.contacts["left"] == 1
    price = next(r for r in report.reasons if r["reason"] == "price")
    assert price == {"reason": "price", "label": "Price", "count": 1,
                     "share": 1 / len(treated), "left": 1}
    both = campaign_report(members, pd.concat([imports, outcomes]))
    assert both.pending == 0 and both.overall.treatment.known == len(treated)


def test_level_is_checked():
    members, outcomes = synthetic(10, 0.5, churn=0.5, factor=1.0, seed=4)
    with pytest.raises(ValueError, match="level"):
        campaign_report(members, outcomes, level=1.5)
    wide = campaign_report(members, outcomes, level=0.99).overall.uplift
    narrow = campaign_report(members, outcomes, level=0.8).overall.uplift
    assert wide.low < narrow.low and wide.high > narrow.high

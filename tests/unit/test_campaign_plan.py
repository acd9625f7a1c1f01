"""Planning a campaign: the cut, actions, value segments and a control group that is balanced on
risk and value, stratum by stratum."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from campaigns.plan import Cut, PlanError, contact_list, plan_campaign, value_segments
from campaigns.playbook import load_playbook

PLAYBOOK = load_playbook()


def scores(n: int = 3000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    p = rng.beta(1.2, 4, n)
    value = rng.lognormal(5, 1, n)
    value = value * (1 + 2 * p)  # value and risk correlated, as in real books
    return pd.DataFrame({
        "customer_id": [f"c{i:05d}" for i in range(n)], "churn_probability": p,
        "risk_band": np.where(p >= 0.3, "high", np.where(p >= 0.1, "medium", "low")),
        "as_of": pd.Timestamp("2026-05-15"), "model_version": "3",
        "reason_1_feature": rng.choice(["attr_plan", "n_login_30d", "n_payment_failed_90d"], n),
        "reason_1_text": "why", "reason_2_feature": "n_complaint_30d",
        "customer_value": value, "expected_value_at_risk": p * value})


PROFIT = Cut(budget=None, save_rate=0.25, offer_cost=10.0)


def smd(a: pd.Series, b: pd.Series) -> float:
    """Standardised mean difference, the usual balance measure (below 0.1: balanced)."""
    return abs(a.mean() - b.mean()) / np.sqrt((a.var() + b.var()) / 2)


def test_control_group_is_balanced_on_risk_and_value():
    members = plan_campaign(scores(), PLAYBOOK, PROFIT, control_share=0.2, seed=11)
    t, c = members[members["arm"] == "treatment"], members[members["arm"] == "control"]
    assert len(c) == round(0.2 * len(members))
    assert smd(t["probability"], c["probability"]) < 0.1
    assert smd(np.log(t["customer_value"]), np.log(c["customer_value"])) < 0.1
    # every stratum holds out its share, to within one customer
    for (band, seg), group in members.groupby(["risk_band", "value_segment"]):
        share = (group["arm"] == "control").sum()
        assert abs(share - 0.2 * len(group)) <= 1, (band, seg)


def test_balance_holds_over_many_seeds():
    base = scores(600, seed=1)
    diffs = []
    for seed in range(30):
        m = plan_campaign(base, PLAYBOOK, PROFIT, control_share=0.3, seed=seed)
        t, c = m[m["arm"] == "treatment"], m[m["arm"] == "control"]
        diffs.append(t["probability"].mean() - c["probability"].mean())
    # stratified draws: the arms' mean risk differs by chance only, and little
    assert abs(np.mean(diffs)) < 0.01 and np.std(diffs) < 0.02


def test_arms_depend_on_the_seed_not_the_row_order():
    s = scores(800)
    a = plan_campaign(s, PLAYBOOK, PROFIT, seed=5).set_index("customer_id")["arm"]
    b = plan_campaign(s.sample(frac=1, random_state=2), PLAYBOOK, PROFIT, seed=5)
    assert b.set_index("customer_id")["arm"].sort_index().equals(a.sort_index())
    other = plan_campaign(s, PLAYBOOK, PROFIT, seed=6).set_index("customer_id")["arm"]
    assert not other.sort_index().equals(a.sort_index())


def test_profit_cut_and_budget_cut():
    s = scores()
    members = plan_campaign(s, PLAYBOOK, PROFIT)
    assert (members["expected_profit"] > 0).all() and (members["risk_band"] != "low").all()
    payable = s[(s["churn_probability"] * 0.25 * s["customer_value"] > 10) & (s["risk_band"] != "low")]
    assert set(members["customer_id"]) == set(payable["customer_id"])
    budget = plan_campaign(s, PLAYBOOK, Cut(budget=100, save_rate=0.25, offer_cost=10.0),
                           control_share=0.2)
    assert (budget["arm"] == "treatment").sum() == 100 and len(budget) == 125
    best = payable.sort_values("expected_value_at_risk", ascending=False)["customer_id"].head(125)
    assert set(budget["customer_id"]) == set(best)


def test_actions_segments_and_contact_list():
    members = plan_campaign(scores(), PLAYBOOK, PROFIT)
    # attr_* reasons never choose the action: the first behavioural reason does
    fams = set(members["action_family"])
    assert fams <= {"contact_drop", "payment", "complaints"} and "complaints" in fams
    assert set(members["value_segment"]) == {"top", "middle", "bottom"}
    top = members[members["value_segment"] == "top"]["customer_value"]
    assert top.min() >= members[members["value_segment"] == "middle"]["customer_value"].max()
    calls = contact_list(members)
    assert set(calls["customer_id"]) == set(members.loc[members["arm"] == "treatment",
                                                        "customer_id"])
    assert "arm" not in calls and list(calls.columns[-4:]) == ["reached", "result", "reason",
                                                                "reason_text"]
    assert calls["value_segment"].iloc[0] == "top"


def test_value_segments_without_value():
    assert set(value_segments(pd.Series([np.nan, np.nan]))) == {"unknown"}
    assert list(value_segments(pd.Series([1.0, 2.0, 3.0]))) == ["bottom", "middle", "top"]


@pytest.mark.parametrize(("change", "message"), [
    (lambda s: s.drop(columns="risk_band"), "missing column 'risk_band'"),
    (lambda s: s.iloc[:0], "no rows"),
    (lambda s: pd.concat([s, s.iloc[:1]]), "appears twice"),
    (lambda s: s.assign(model_version=["1", "2"] * (len(s) // 2)), "one model version"),
    (lambda s: s.drop(columns=["customer_value", "expected_value_at_risk"]), "--budget"),
    (lambda s: s.assign(risk_band="low"), "nobody to contact"),
])
def test_bad_scores_are_named(change, message):
    with pytest.raises(PlanError, match=message):
        plan_campaign(change(scores(100)), PLAYBOOK, PROFIT)


def test_budget_without_value_ranks_by_probability():
    s = scores(300).drop(columns=["customer_value", "expected_value_at_risk"])
    m = plan_campaign(s, PLAYBOOK, Cut(budget=20, save_rate=0.25, offer_cost=10.0),
                      control_share=0.0)
    assert len(m) == 20 and set(m["value_segment"]) == {"unknown"}
    assert m["probability"].min() >= s["churn_probability"].nlargest(20).min()
    with pytest.raises(PlanError, match="--control-share"):
        plan_campaign(s, PLAYBOOK, Cut(budget=20, save_rate=0.25, offer_cost=10.0), control_share=1)

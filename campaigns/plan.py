"""Whom a campaign contacts: the cut, each target's action and value segment, and a seeded,
stratified, randomised control group.

Pure: a scores table (`churn score`'s columns) in, the members table (campaigns/store.py's
MEMBER_COLUMNS plus what the contact list shows) out.

- Candidates are the customers not in the low risk band (the playbook has no action for them).
- The cut is a budget of calls (`budget`: the treatment arm has exactly that many customers, the
  control arm is added on top of it) or expected profit: p x save_rate x value > offer cost.
  Either way targets are taken in order of expected profit (p x save_rate x value - cost; by
  probability when no value is known).
- Value segments are tertiles of customer value among the targets: `top` (the most valuable
  third: give them to the best agents), `middle`, `bottom`; `unknown` when the scores carry no
  value.
- The control arm is drawn in each stratum (risk band x value segment) separately: each
  stratum's share is `control_share`, its rounding apportioned by largest remainder so the total
  is exact. Customers are put in id order before the draw, so the same seed gives the same arms
  whatever the file's row order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from campaigns.playbook import Playbook, suggest
from scoring.predictor import expected_saving
from scoring.reasons import is_profile
from scoring.settings import Offer

REQUIRED = ("customer_id", "churn_probability", "risk_band", "as_of", "model_version")
SEGMENTS = ("top", "middle", "bottom")


class PlanError(ValueError):
    """A plan that cannot be made from these scores; the message says what to change."""


@dataclass(frozen=True)
class Cut:
    budget: int | None  # calls; None: the expected-profit cut
    save_rate: float
    offer_cost: float

    def offer(self) -> Offer:
        """The offer terms of the cut, for the predictor's offer rule."""
        return Offer(cost=self.offer_cost, save_rate=self.save_rate)

    def describe(self) -> str:
        rule = f"p x {self.save_rate:g} x value - {self.offer_cost:g}"
        if self.budget is not None:
            return f"budget of {self.budget:,} calls, the highest expected profit ({rule}) first"
        return f"expected profit ({rule}) above 0"


def check_scores(scores: pd.DataFrame) -> None:
    missing = [c for c in REQUIRED if c not in scores.columns]
    if missing:
        raise PlanError(f"scores: missing column {missing[0]!r} (use a file written by "
                        "`churn score`)")
    if scores.empty:
        raise PlanError("scores: the file has no rows")
    if scores["customer_id"].astype(str).duplicated().any():
        dup = scores["customer_id"].astype(str)[scores["customer_id"].astype(str).duplicated()]
        raise PlanError(f"scores: customer_id {dup.iloc[0]!r} appears twice")
    if scores["as_of"].nunique() != 1 or scores["model_version"].astype(str).nunique() != 1:
        raise PlanError("scores: one campaign plans from one batch (one as_of, one model "
                        "version); this file mixes several")


def expected_profit(scores: pd.DataFrame, cut: Cut) -> pd.Series:
    """The offer rule's saving (scoring.predictor.expected_saving) less the offer's cost; NaN
    where the value is unknown (the rule counts it 0: here it sorts such targets last)."""
    if "customer_value" not in scores.columns:
        return pd.Series(np.nan, index=scores.index)
    value = pd.to_numeric(scores["customer_value"], errors="coerce")
    offer = cut.offer()
    profit = expected_saving(scores["churn_probability"].to_numpy(), value.to_numpy(), offer)
    return pd.Series(np.where(value.isna(), np.nan, profit - offer.cost), index=scores.index)


def value_segments(value: pd.Series) -> pd.Series:
    """Tertiles of value (by rank, ties together): top, middle, bottom; unknown for NaN."""
    known = value.notna()
    out = pd.Series("unknown", index=value.index, dtype=object)
    if known.any():
        pct = value[known].rank(method="average", pct=True)
        out[known] = np.where(pct > 2 / 3, "top", np.where(pct > 1 / 3, "middle", "bottom"))
    return out


def action_of(rec: dict, band: str, playbook: Playbook) -> tuple[str, str, str]:
    """(family, title, action) from the behavioural reasons (change_i_*, else the behavioural
    ones among reason_i_*), as the reviewer page chooses them."""
    prefix = "change" if "change_1_feature" in rec else "reason"
    features = []
    i = 1
    while f"{prefix}_{i}_feature" in rec:
        f = rec[f"{prefix}_{i}_feature"]
        if isinstance(f, str) and f and not is_profile(f):
            features.append(f)
        i += 1
    match = suggest(playbook, band, features)
    return match.name, match.family.title, match.family.action


def control_counts(strata: pd.Series, total: int, rng: np.random.Generator) -> dict[str, int]:
    """`total` control places shared among strata in proportion to their size (largest
    remainder; ties broken at random)."""
    sizes = strata.value_counts().sort_index()
    quota = sizes / sizes.sum() * total
    counts = np.floor(quota).astype(int)
    left = total - int(counts.sum())
    if left > 0:
        frac = (quota - counts).to_numpy() + rng.random(len(sizes)) * 1e-9
        for j in np.argsort(-frac, kind="stable")[:left]:
            counts.iloc[j] += 1
    return {k: int(min(v, sizes[k])) for k, v in counts.items()}


def plan_campaign(scores: pd.DataFrame, playbook: Playbook, cut: Cut, control_share: float = 0.2,
                  seed: int = 0) -> pd.DataFrame:
    """The campaign's members: MEMBER_COLUMNS plus action_title, expected_profit and the top
    reason's text, treatment first, then by value segment and expected profit."""
    check_scores(scores)
    if not 0 <= control_share < 1:
        raise PlanError(f"--control-share: {control_share} must be at least 0 and below 1")
    if cut.budget is not None and cut.budget < 1:
        raise PlanError("--budget: give at least 1 call")
    profit = expected_profit(scores, cut)
    if cut.budget is None and profit.isna().all():
        raise PlanError("the expected-profit cut needs each customer's value: score with a value "
                        "column (churn score --value-column), or give --budget")
    frame = scores.assign(expected_profit=profit, customer_id=scores["customer_id"].astype(str))
    frame = frame[frame["risk_band"].astype(str) != "low"]
    if cut.budget is None:
        frame = frame[frame["expected_profit"] > 0]
    frame = frame.sort_values(["expected_profit", "churn_probability", "customer_id"],
                              ascending=[False, False, True], na_position="last")
    if cut.budget is not None:
        targets = math.ceil(cut.budget / (1 - control_share)) if control_share else cut.budget
        frame = frame.head(targets)
    if frame.empty:
        raise PlanError("nobody to contact: no customer outside the low risk band"
                        + ("" if cut.budget is not None else " has a positive expected profit"))
    n = len(frame)
    n_control = (n - min(cut.budget, n) if cut.budget is not None
                 else int(round(control_share * n)))
    if cut.budget is not None and n < targets:  # fewer candidates than asked: keep the share
        n_control = int(round(control_share * n))
    value = (pd.to_numeric(frame["customer_value"], errors="coerce")
             if "customer_value" in frame.columns else pd.Series(np.nan, index=frame.index))
    frame = frame.assign(customer_value=value, value_segment=value_segments(value))
    actions = [action_of(rec, str(rec["risk_band"]), playbook)
               for rec in frame.to_dict("records")]
    frame = frame.assign(action_family=[a[0] for a in actions],
                         action_title=[a[1] for a in actions], action=[a[2] for a in actions])

    rng = np.random.default_rng(seed)
    ordered = frame.sort_values("customer_id", kind="stable")
    strata = ordered["risk_band"].astype(str) + " x " + ordered["value_segment"]
    counts = control_counts(strata, n_control, rng)
    control = set()
    for stratum, k in counts.items():
        ids = ordered["customer_id"][strata == stratum].to_numpy()
        control.update(rng.permutation(ids)[:k].tolist())
    arm = np.where(frame["customer_id"].isin(control), "control", "treatment")
    seg_rank = frame["value_segment"].map({s: i for i, s in enumerate((*SEGMENTS, "unknown"))})
    out = frame.assign(arm=arm, probability=frame["churn_probability"], _arm=arm == "control",
                       _seg=seg_rank)
    out = out.sort_values(["_arm", "_seg", "expected_profit", "churn_probability"],
                          ascending=[True, True, False, False], kind="stable")
    columns = ["customer_id", "arm", "risk_band", "value_segment", "probability",
               "customer_value", "expected_profit", "action_family", "action_title", "action"]
    if "reason_1_text" in out.columns:
        columns.append("reason_1_text")
    return out[columns].reset_index(drop=True)


CONTACT_COLUMNS = ("customer_id", "value_segment", "risk_band", "probability", "customer_value",
                   "action_title", "action", "reason_1_text")
OUTCOME_FIELDS = ("reached", "result", "reason", "reason_text")


def contact_list(members: pd.DataFrame) -> pd.DataFrame:
    """What the call centre gets: the treatment arm only (the control arm must not be called,
    so it is not on the list), most valuable segment first, with empty outcome columns to fill
    in and send back to `churn campaign outcomes`."""
    treated = members[members["arm"] == "treatment"]
    columns = [c for c in CONTACT_COLUMNS if c in treated.columns]
    return treated[columns].assign(**{f: "" for f in OUTCOME_FIELDS}).reset_index(drop=True)

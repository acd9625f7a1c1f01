"""What a campaign achieved: churn in the treated arm against the randomised control arm.

Pure: members and outcomes in (the frames of campaigns/store.py), a `CampaignReport` out.

- Churn per arm comes from outcomes of source 'data' only (what the customer data says once the
  horizon has passed), never from what a customer told the call centre: the control arm is never
  called, so the two arms are comparable only through the data. Members without a data outcome
  are `pending` and left out of the rates.
- uplift = churn(control) - churn(treatment), with Newcombe's hybrid score interval (method 10
  of Newcombe 1998, built from the two arms' Wilson intervals), which keeps its coverage with
  small arms and rates near 0 where the plain Wald interval does not.
- realised save rate = uplift / churn(control) = 1 - relative risk: the share of the treated
  customers who would have left and were kept. Its interval is 1 minus the Katz log interval of
  the relative risk (0.5 added to every cell when an arm has no churner or only churners).
  This is the quantity the offer rule's `save_rate` stands for (p x save_rate x value > cost),
  counted per planned contact (intention to treat: an unreached contact counts as treated).
- cost = offer cost x treated members; customers saved = uplift x treated members; value saved =
  uplift x the treated members' value; both with the uplift's interval.
- The same comparison, with its cost and value saved, by value segment and by action family
  (the control arm keeps the action family it would have had), and the reasons customers
  stated, from the imported outcomes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import pandas as pd
from scipy.stats import norm

SEGMENT_ORDER = ("top", "middle", "bottom", "unknown")


@dataclass(frozen=True)
class Estimate:
    value: float | None
    low: float | None
    high: float | None

    @property
    def known(self) -> bool:
        return self.value is not None

    def contains(self, x: float) -> bool:
        return self.low is not None and self.high is not None and self.low <= x <= self.high


NONE = Estimate(None, None, None)


@dataclass(frozen=True)
class Arm:
    members: int
    known: int  # members with a data outcome
    churned: int
    churn: Estimate  # churned / known, Wilson interval


@dataclass(frozen=True)
class Comparison:
    label: str  # "all", a value segment or an action family
    treatment: Arm
    control: Arm
    uplift: Estimate
    save_rate: Estimate
    cost: float = 0.0  # offer cost x treated members
    value_saved: Estimate = NONE  # uplift x the treated members' value
    net: Estimate = NONE  # value saved - cost


@dataclass(frozen=True)
class Money:
    offer_cost: float
    offers: int  # treated members
    cost: float
    value_treated: float  # the treated members' value (missing counts 0)
    customers_saved: Estimate
    value_saved: Estimate
    net: Estimate  # value saved - cost


@dataclass(frozen=True)
class CampaignReport:
    level: float
    overall: Comparison
    by_value_segment: list[Comparison]
    by_action_family: list[Comparison]
    money: Money
    contacts: dict[str, int]  # imported outcomes of the treated: imported, reached, stayed, ...
    reasons: list[dict]  # reason, label, count, share, left
    suggested_save_rate: Estimate  # the realised save rate, clipped to [0, 1]
    current_save_rate: float | None
    pending: int  # members without a data outcome yet

    def to_dict(self) -> dict:
        return asdict(self)


def z_value(level: float) -> float:
    if not 0 < level < 1:
        raise ValueError(f"level: {level} must be between 0 and 1")
    return float(norm.ppf(1 - (1 - level) / 2))


def wilson(k: int, n: int, level: float = 0.95) -> Estimate:
    """The Wilson score interval of k successes in n trials."""
    if n == 0:
        return NONE
    z = z_value(level)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return Estimate(p, max(0.0, centre - half), min(1.0, centre + half))


def newcombe_difference(k1: int, n1: int, k2: int, n2: int, level: float = 0.95) -> Estimate:
    """p1 - p2 with Newcombe's hybrid score interval (1998, method 10)."""
    if n1 == 0 or n2 == 0:
        return NONE
    a, b = wilson(k1, n1, level), wilson(k2, n2, level)
    d = a.value - b.value
    low = d - math.sqrt((a.value - a.low) ** 2 + (b.high - b.value) ** 2)
    high = d + math.sqrt((a.high - a.value) ** 2 + (b.value - b.low) ** 2)
    return Estimate(d, low, high)


def save_rate(k_t: int, n_t: int, k_c: int, n_c: int, level: float = 0.95) -> Estimate:
    """1 - (k_t/n_t) / (k_c/n_c), with 1 minus the Katz log interval of the relative risk.
    Unknown when the control arm has no churner (nothing to save)."""
    if n_t == 0 or n_c == 0 or k_c == 0:
        return NONE
    point = 1 - (k_t / n_t) / (k_c / n_c)
    if k_t in (0, n_t) or k_c == n_c:  # a zero cell: the log interval needs 0.5 in every cell
        k_t, n_t, k_c, n_c = k_t + 0.5, n_t + 1, k_c + 0.5, n_c + 1
    log_rr = math.log((k_t / n_t) / (k_c / n_c))
    se = math.sqrt(1 / k_t - 1 / n_t + 1 / k_c - 1 / n_c)
    z = z_value(level)
    return Estimate(point, 1 - math.exp(log_rr + z * se), 1 - math.exp(log_rr - z * se))


def churn_status(members: pd.DataFrame, outcomes: pd.DataFrame) -> pd.Series:
    """Per member (by position): True left, False stayed, NA not known yet (from 'data')."""
    data = outcomes[outcomes["source"] == "data"] if not outcomes.empty else outcomes
    left = (dict(zip(data["customer_id"].astype(str), data["result"] == "left", strict=True))
            if not data.empty else {})
    status = members["customer_id"].astype(str).map(left)
    return status.astype("boolean")


def _arm(status: pd.Series, level: float) -> Arm:
    known = status.dropna()
    churned = int(known.sum())
    return Arm(int(len(status)), int(len(known)), churned, wilson(churned, len(known), level))


def _scale(e: Estimate, factor: float, shift: float = 0.0) -> Estimate:
    if not e.known:
        return NONE
    return Estimate(e.value * factor + shift, e.low * factor + shift, e.high * factor + shift)


def compare(label: str, arm: pd.Series, status: pd.Series, level: float,
            value: pd.Series | None = None, offer_cost: float = 0.0) -> Comparison:
    """Churn of the two arms of these members, the uplift and save rate, and with the members'
    `value`, what the uplift is worth on the treated ones against the offers' cost."""
    t, c = _arm(status[arm == "treatment"], level), _arm(status[arm == "control"], level)
    uplift = newcombe_difference(c.churned, c.known, t.churned, t.known, level)
    treated_value = (0.0 if value is None
                     else float(pd.to_numeric(value[arm == "treatment"]).fillna(0.0).sum()))
    cost = t.members * offer_cost
    saved = _scale(uplift, treated_value)
    return Comparison(label, t, c, uplift,
                      save_rate(t.churned, t.known, c.churned, c.known, level),
                      cost, saved, _scale(saved, 1.0, -cost))


def _breakdown(members: pd.DataFrame, status: pd.Series, column: str, level: float,
               offer_cost: float, order: tuple[str, ...] = ()) -> list[Comparison]:
    values = members[column].astype(str)
    present = list(dict.fromkeys(values))
    ranked = [v for v in order if v in present] + sorted(v for v in present if v not in order)
    return [compare(v, members["arm"][values == v], status[values == v], level,
                    members["customer_value"][values == v], offer_cost) for v in ranked]


def _contacts(members: pd.DataFrame, outcomes: pd.DataFrame) -> tuple[dict, pd.DataFrame]:
    treated = set(members.loc[members["arm"] == "treatment", "customer_id"].astype(str))
    imported = (outcomes[(outcomes["source"] == "import")
                         & outcomes["customer_id"].astype(str).isin(treated)]
                if not outcomes.empty else outcomes)
    counts = {"treated": len(treated), "imported": int(len(imported)),
              "reached": int(imported["reached"].fillna(False).astype(bool).sum())
              if len(imported) else 0}
    for result in ("stayed", "left", "no_answer"):
        counts[result] = int((imported["result"] == result).sum()) if len(imported) else 0
    return counts, imported


def _reasons(imported: pd.DataFrame, labels: Mapping[str, str]) -> list[dict]:
    if imported.empty:
        return []
    stated = imported[imported["reason"].notna() & (imported["reason"].astype(str) != "")]
    total = len(stated)
    rows = []
    for reason, group in stated.groupby(stated["reason"].astype(str), sort=False):
        rows.append({"reason": reason, "label": labels.get(reason, reason),
                     "count": int(len(group)), "share": len(group) / total,
                     "left": int((group["result"] == "left").sum())})
    return sorted(rows, key=lambda r: (-r["count"], r["reason"]))


def campaign_report(members: pd.DataFrame, outcomes: pd.DataFrame, level: float = 0.95,
                    offer_cost: float = 0.0, current_save_rate: float | None = None,
                    reason_labels: Mapping[str, str] | None = None) -> CampaignReport:
    """The campaign's report from its members and outcomes (campaigns/store.py's frames)."""
    z_value(level)  # checks the level
    members = members.reset_index(drop=True)
    status = churn_status(members, outcomes)
    overall = compare("all", members["arm"], status, level, members["customer_value"],
                      offer_cost)
    treated = members["arm"] == "treatment"
    value = float(pd.to_numeric(members.loc[treated, "customer_value"]).fillna(0.0).sum())
    offers = int(treated.sum())
    cost = offers * offer_cost
    saved_value = _scale(overall.uplift, value)
    money = Money(offer_cost, offers, cost, value, _scale(overall.uplift, offers), saved_value,
                  _scale(saved_value, 1.0, -cost))
    contacts, imported = _contacts(members, outcomes)
    s = overall.save_rate
    suggested = (Estimate(min(1.0, max(0.0, s.value)), min(1.0, max(0.0, s.low)),
                         min(1.0, max(0.0, s.high))) if s.known else NONE)
    return CampaignReport(
        level=level, overall=overall,
        by_value_segment=_breakdown(members, status, "value_segment", level, offer_cost,
                                    SEGMENT_ORDER),
        by_action_family=_breakdown(members, status, "action_family", level, offer_cost),
        money=money, contacts=contacts, reasons=_reasons(imported, reason_labels or {}),
        suggested_save_rate=suggested, current_save_rate=current_save_rate,
        pending=int(status.isna().sum()))

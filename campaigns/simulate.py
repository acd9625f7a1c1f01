"""For generated data (a demo or a test): the world in which a campaign's treatment arm was
called, and the call centre's file of what came of the calls (`churn campaign simulate`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from campaigns.store import Campaign
from features.contract import Tables
from features.observations import churned_within
from simulation.generate import FAMILY, apply_treatment


@dataclass
class SimulatedCampaign:
    customers: pd.DataFrame  # the treated world
    events: pd.DataFrame
    calls: pd.DataFrame  # the call centre's file, ready for `churn campaign outcomes`
    saved: int  # treated customers the contact kept
    treated: int
    reached: int


def effect_factors(items: Sequence[str], families: Sequence[str]) -> dict[str, float]:
    """`family=factor` texts as {family: factor}; ValueError naming the bad one."""
    factors = {}
    for item in items:
        family, _, factor = item.partition("=")
        family = family.strip()
        try:
            factors[family] = float(factor)
        except ValueError:
            raise ValueError(f"{item!r} is not family=factor") from None
        if family not in families:
            raise ValueError(f"{family!r} is not a family of the playbook ({', '.join(families)})")
    return factors


def simulate_campaign(tables: Tables, campaign: Campaign, members: pd.DataFrame,
                      factors: Mapping[str, float], reasons: Sequence[str], reach: float = 0.7,
                      seed: int = 0) -> SimulatedCampaign:
    """The generator's treatment effect (`factors` per action family) applied to the treatment
    arm, and the calls: reached at random (`reach`); a reached customer says whether they stay
    (as the treated world will have it) and, sometimes, why they thought of leaving (one of
    `reasons`). ValueError when the treatment cannot be applied."""
    treated = members[members["arm"] == "treatment"]
    as_of = pd.Timestamp(campaign.as_of)
    world_c, world_e = apply_treatment(
        tables.customers, tables.events,
        pd.DataFrame({"customer_id": treated["customer_id"].to_numpy(),
                      FAMILY: treated["action_family"].to_numpy()}),
        as_of, campaign.horizon_days, dict(factors), seed=seed)
    rng = np.random.default_rng(seed + 1)
    churn = world_c.set_index("customer_id")["churned_at"].reindex(treated["customer_id"])
    leaves = churned_within(churn, as_of, campaign.horizon_days).to_numpy()
    reached = rng.random(len(treated)) < reach
    keys = list(reasons)
    reason = np.where(reached & (rng.random(len(treated)) < 0.6),
                      rng.choice(keys, len(treated)), "")
    calls = pd.DataFrame({
        "customer_id": treated["customer_id"].to_numpy(),
        "reached": np.where(reached, "yes", "no"),
        "result": np.where(~reached, "no_answer", np.where(leaves, "left", "stayed")),
        "reason": reason,
        "reason_text": np.where(reason == "other", "said so on the phone", "")})
    before = tables.customers.set_index("customer_id")["churned_at"].reindex(treated["customer_id"])
    saved = int(churned_within(before, as_of, campaign.horizon_days).sum() - leaves.sum())
    return SimulatedCampaign(world_c, world_e, calls, saved, len(treated), int(reached.sum()))

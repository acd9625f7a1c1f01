"""`churn campaign plan`'s work around the pure plan (campaigns/plan.py): the horizon, label and
activity types of the model that scored the batch, members of campaigns judged over the same
days left out, the campaign recorded and its contact list written."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
from sqlalchemy.engine import Engine

from campaigns.plan import Cut, PlanError, check_scores, contact_list, plan_campaign
from campaigns.playbook import Playbook
from campaigns.store import Campaign, create_campaign, overlapping_members
from campaigns.tracking import model_run
from features.files import write_table
from scoring.settings import Settings

DEFAULT_HORIZON_DAYS = 30


@dataclass
class PlannedCampaign:
    campaign: Campaign
    members: pd.DataFrame
    calls: pd.DataFrame  # the contact list written (treatment arm only)
    label: str
    activity_types: list[str]
    notes: list[str] = field(default_factory=list)


def plan_and_record(settings: Settings, db: Engine, scores: pd.DataFrame, source: Path | str,
                    out_path: Path, playbook: Playbook, *, budget: int | None = None,
                    control_share: float = 0.2, seed: int = 0, name: str = "",
                    horizon: int | None = None, label: str | None = None,
                    allow_overlap: bool = False) -> PlannedCampaign:
    """Plan a campaign from a batch of scores (read from `source`), record it in the store and
    write its contact list to `out_path` (.csv or .parquet). Horizon and label default to the
    scoring model's training run's. Raises PlanError with a sentence for people."""
    offer = settings.offer
    cut = Cut(budget, offer.save_rate, offer.cost)
    check_scores(scores)
    version = str(scores["model_version"].iloc[0])
    as_of = pd.Timestamp(scores["as_of"].iloc[0]).to_pydatetime()
    notes = []
    trained = model_run(settings, version)
    params = trained.params if trained else {}
    if horizon is None:
        horizon = int(params.get("horizon_days", DEFAULT_HORIZON_DAYS))
        if "horizon_days" not in params:
            notes.append(f"model version {version} not found in the registry: horizon "
                         f"{DEFAULT_HORIZON_DAYS} days (give --horizon)")
    label = label or params.get("label") or "explicit"
    # the event types the model counts as activity, for the inactivity label (empty: every event)
    activity = trained.activity_types if trained else []
    left_out = 0
    if not allow_overlap:
        busy = overlapping_members(db, as_of, as_of + timedelta(days=horizon),
                                   settings.model_name)
        taken = scores["customer_id"].astype(str).isin(busy)
        if taken.any():
            first = next(iter(busy[c] for c in scores.loc[taken, "customer_id"].astype(str)))
            notes.append(f"{int(taken.sum()):,} customers are in a campaign judged over the same "
                         f"days (e.g. {first}) and are left out (--allow-overlap keeps them)")
            scores, left_out = scores[~taken], int(taken.sum())
            if scores.empty:
                raise PlanError("--scores: every customer of the batch is in a campaign judged "
                                f"over the same days (e.g. {first}); --allow-overlap keeps them")
    try:
        members = plan_campaign(scores, playbook, cut, control_share, seed)
    except PlanError as exc:
        hint = f" ({notes[-1]})" if left_out else ""
        raise PlanError(f"{exc}{hint}") from None
    called = int((members["arm"] == "treatment").sum())
    if budget is not None and called < budget:
        notes.append(f"only {len(members):,} customers are outside the low risk band: "
                     f"{called:,} calls of the budget of {budget:,} are planned")
    created = datetime.now(UTC)
    campaign = Campaign(
        campaign_id=f"{created:%Y%m%d}-{secrets.token_hex(3)}",
        name=name or f"campaign {as_of:%Y-%m-%d}",
        model_version=version, as_of=as_of, horizon_days=horizon, control_share=control_share,
        seed=seed, cut=cut.describe(),
        params={"budget": budget, "save_rate": offer.save_rate, "offer_cost": offer.cost,
                "label": label, "activity_types": activity, "scores": str(source),
                "model_name": settings.model_name,
                "contact_list": str(out_path)},
        created_at=created)
    # the list is written beside its place first, the campaign recorded, then the list moved
    # into place: no list is ever handed out for a campaign that was not recorded
    calls = contact_list(members)
    staged = out_path.with_name(f".{out_path.stem}.planned-{os.getpid()}{out_path.suffix}")
    try:
        write_table(calls, staged)
        create_campaign(db, campaign, members)
        os.replace(staged, out_path)
    finally:
        staged.unlink(missing_ok=True)
    return PlannedCampaign(campaign, members, calls, label, activity, notes)

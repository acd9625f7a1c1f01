"""The customer page's content: one customer's explanation, waterfall steps, timeline and
suggested action, computed with the served model."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import quote

import numpy as np
import pandas as pd
from markupsafe import Markup

from campaigns.playbook import FamilyMatch, Playbook, suggest
from features.engine import feature_table
from scoring.predictor import OfferDecision, customer_value, offer_decision, offer_if_valued, predict
from scoring.reasons import (
    behaviour_mask,
    feature_values,
    plain_value,
    render_reason,
    template_for,
    top_reasons,
)
from scoring.settings import Offer
from scoring.store import LoadedModel
from serving.review.charts import Step, timeline_svg, waterfall_svg
from serving.review.data import Batch, Data, PageError
from serving.review.format import day, shown, text
from serving.review.timeline import TimelineData, customer_timeline, sign_counts


@dataclass
class Explanation:
    features: pd.DataFrame  # one feature row
    contributions: np.ndarray  # per feature, log-odds; base value last
    probability: float
    band: str
    changes: list[dict]  # behavioural factors that raise the risk, largest first
    profile: list[dict]  # facts about who the customer is that raise it
    lowering: list[dict]  # behavioural factors that lower it


def explain_customer(loaded: LoadedModel, customer: pd.DataFrame, events: pd.DataFrame,
                     as_of: pd.Timestamp, top_k: int, bands: tuple[float, float]
                     ) -> Explanation | None:
    """Recompute one customer's features and explanation with the given model; None when the
    customer is not active at `as_of`."""
    model = loaded.model
    feats = feature_table(customer, events, model.spec, [as_of])
    if feats.empty:
        return None
    out = predict(loaded, feats, top_k, bands)
    values = feature_values(model, feats)
    behaviour = behaviour_mask(model.feature_names)
    changes = top_reasons(model, values, out.contributions, top_k, only=behaviour)[0]
    profile = top_reasons(model, values, out.contributions, top_k, only=~behaviour)[0]
    lowering = top_reasons(model, values, out.contributions, top_k, raising=False,
                           only=behaviour)[0]
    return Explanation(feats, out.contributions[0], float(out.frame["churn_probability"].iloc[0]),
                       str(out.frame["risk_band"].iloc[0]), changes, profile, lowering)


def waterfall_steps(loaded: LoadedModel, explanation: Explanation, max_steps: int
                    ) -> tuple[float, list[Step], float]:
    """The explanation in probability terms: (base probability, steps, final probability).

    The contributions are log-odds added to the base value; every running total goes through
    the model's own calibration, so the last step ends exactly at the calibrated probability.
    How much a factor moves the probability depends on where the total stands, so the steps are
    chosen greedily: each is the remaining factor that moves the probability most from where
    the step before ended (the rest are one step at the end)."""
    model = loaded.model
    contrib = explanation.contributions
    phi, base = contrib[:-1], float(contrib[-1])
    remaining = [int(i) for i in np.flatnonzero(phi != 0)]
    values = explanation.features[model.feature_names].to_numpy(dtype=object)[0]
    raw = base
    p_base = float(model.calibrate(np.array([base]))[0])
    prev = p_base
    steps = []
    while remaining and len(steps) < max_steps:
        moved = np.abs(model.calibrate(raw + phi[remaining]) - prev)
        j = remaining.pop(int(np.argmax(moved)))  # first of equals: the earlier feature
        raw += float(phi[j])
        p = float(model.calibrate(np.array([raw]))[0])
        value = plain_value(values[j])
        steps.append(Step(render_reason(template_for(model.reason_texts, model.feature_names[j]),
                                        value), "", prev, p, f"{phi[j]:+.3f}"))
        prev = p
    if remaining:
        rest = float(sum(phi[j] for j in remaining))
        raw += rest
        p = float(model.calibrate(np.array([raw]))[0])
        steps.append(Step(f"{len(remaining)} other factors together", "", prev, p, f"{rest:+.3f}"))
        prev = p
    return p_base, steps, prev


@dataclass
class CustomerView:
    customer_id: str
    as_of: str
    attributes: dict[str, str]
    probability: float
    band: str
    reasons: list[dict]  # what changed: behavioural reasons that raise the risk
    profile: list[dict]  # who they are: profile facts that raise it
    lowering: list[dict]
    waterfall: Markup
    steps: list[Step]
    timeline: Markup
    timeline_data: TimelineData
    family: FamilyMatch
    because: str  # the reason (a sentence) that chose the action; "" for none
    offer: OfferDecision
    offer_rule: Offer
    model_version: str
    batch: dict | None  # the customer's row in the scored batch, when there is one
    crm_url: str | None = None
    trend: list[dict] = field(default_factory=list)  # the customer in earlier batches
    horizon_days: float | None = None  # how far ahead the probability looks


def crm_link(template: str | None, customer_id: str) -> str | None:
    """The CRM template (checked to be http or https by the settings) with the URL-escaped id."""
    if template is None:
        return None
    return template.replace("{customer_id}", quote(customer_id, safe=""))


def customer_trend(batches: list[Batch], customer_id: str) -> list[dict]:
    """The customer's probability and band in each earlier batch that scored them."""
    out = []
    for b in batches:
        row = b.frame[b.frame["customer_id"] == customer_id]
        if len(row):
            r = row.iloc[0]
            out.append({"as_of": day(r["as_of"]), "probability": float(r["churn_probability"]),
                        "band": str(r["risk_band"]), "model_version": text(r["model_version"])})
    return out


def customer_view(loaded: LoadedModel, data: Data, customer_id: str, as_of: pd.Timestamp,
                  playbook: Playbook, offer: Offer, batch_row: dict | None, top_k: int,
                  bands: tuple[float, float], max_steps: int, crm_template: str | None = None,
                  batches: list[Batch] | None = None) -> CustomerView:
    """Everything the customer page shows. PageError(404) for an unknown or inactive customer."""
    customer = data.customer(customer_id)
    if customer.empty:
        raise PageError(404, "Unknown customer", f"There is no customer {customer_id!r} in the data.")
    events = data.events_of(customer_id)
    explanation = explain_customer(loaded, customer, events, as_of, top_k, bands)
    if explanation is None:
        raise PageError(404, "Customer not active",
                        f"Customer {customer_id!r} was not active at {day(as_of)}.")
    p_base, steps, p_final = waterfall_steps(loaded, explanation, max_steps)
    timeline = customer_timeline(events, as_of, playbook)
    counts = sign_counts(events, as_of, playbook).get(customer_id)
    family = suggest(playbook, explanation.band, [r["feature"] for r in explanation.changes],
                     counts, weigh=True)
    because = next((r["text"] for r in explanation.changes if r["feature"] == family.feature), "")
    valued = offer_if_valued(offer, loaded.model.spec)
    value = (float(customer_value(explanation.features, valued, loaded.model.spec)[0])
             if valued is not None else None)
    attrs = {a: shown(customer[a].iloc[0]) for a in data.tables.attributes.all
             if a in customer.columns}
    return CustomerView(
        customer_id=customer_id, as_of=day(as_of), attributes=attrs,
        probability=explanation.probability, band=explanation.band,
        reasons=explanation.changes, profile=explanation.profile, lowering=explanation.lowering,
        waterfall=waterfall_svg(p_base, steps, p_final), steps=steps,
        timeline=timeline_svg(timeline), timeline_data=timeline,
        family=family, because=because,
        offer=offer_decision(offer, explanation.probability, value),
        offer_rule=offer, model_version=loaded.label, batch=batch_row,
        crm_url=crm_link(crm_template, customer_id),
        trend=customer_trend(batches or [], customer_id),
        horizon_days=loaded.horizon_days,
    )

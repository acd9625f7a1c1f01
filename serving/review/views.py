"""The customer page's content: one customer's explanation, waterfall steps, timeline and
suggested action, computed with the served model."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from markupsafe import Markup

from features.engine import feature_table
from scoring.predictor import OfferDecision, customer_value, offer_decision, offer_if_valued, predict
from scoring.reasons import plain_value, render_reason, template_for
from scoring.settings import Offer
from scoring.store import LoadedModel
from serving.playbook import FamilyMatch, Playbook, family_for
from serving.review.charts import Step, timeline_svg, waterfall_svg
from serving.review.data import Data, PageError
from serving.review.format import day, shown, text
from serving.review.timeline import TimelineData, customer_timeline


@dataclass
class Explanation:
    features: pd.DataFrame  # one feature row
    contributions: np.ndarray  # per feature, log-odds; base value last
    probability: float
    band: str
    reasons: list[dict]
    lowering: list[dict]


def explain_customer(loaded: LoadedModel, customer: pd.DataFrame, events: pd.DataFrame,
                     as_of: pd.Timestamp, top_k: int, bands: tuple[float, float]
                     ) -> Explanation | None:
    """Recompute one customer's features and explanation with the given model; None when the
    customer is not active at `as_of`."""
    feats = feature_table(customer, events, loaded.model.spec, [as_of])
    if feats.empty:
        return None
    out = predict(loaded, feats, top_k, bands)
    return Explanation(feats, out.contributions[0], float(out.frame["churn_probability"].iloc[0]),
                       str(out.frame["risk_band"].iloc[0]), out.reasons[0], out.lowering[0])


def waterfall_steps(loaded: LoadedModel, explanation: Explanation, max_steps: int
                    ) -> tuple[float, list[Step], float]:
    """The explanation in probability terms: (base probability, steps, final probability).

    TreeSHAP contributions are log-odds. They are added to the base value one at a time,
    largest first (the rest as one step), and every running total goes through the model's
    own calibration (sigmoid, then the calibration map), so the last step ends exactly at the
    calibrated probability."""
    model = loaded.model
    contrib = explanation.contributions
    phi, base = contrib[:-1], float(contrib[-1])
    order = [int(i) for i in np.argsort(-np.abs(phi), kind="stable") if phi[i] != 0]
    steps_shown, rest = order[:max_steps], order[max_steps:]
    values = explanation.features[model.feature_names].to_numpy(dtype=object)[0]
    raw = base
    p_base = float(model.calibrate(np.array([base]))[0])
    prev = p_base
    steps = []
    for j in steps_shown:
        name = model.feature_names[j]
        raw += float(phi[j])
        p = float(model.calibrate(np.array([raw]))[0])
        value = plain_value(values[j])
        steps.append(Step(render_reason(template_for(model.reason_texts, name), value),
                          f"{name} = {text(value) or 'missing'}; {phi[j]:+.3f} log-odds", prev, p))
        prev = p
    if rest:
        raw += float(sum(phi[j] for j in rest))
        p = float(model.calibrate(np.array([raw]))[0])
        steps.append(Step(f"{len(rest)} other features", f"{sum(phi[j] for j in rest):+.3f} log-odds",
                          prev, p))
        prev = p
    return p_base, steps, prev


@dataclass
class CustomerView:
    customer_id: str
    as_of: str
    attributes: dict[str, str]
    probability: float
    band: str
    reasons: list[dict]
    lowering: list[dict]
    waterfall: Markup
    timeline: Markup
    timeline_data: TimelineData
    family: FamilyMatch
    offer: OfferDecision
    offer_rule: Offer
    model_version: str
    batch: dict | None  # the customer's row in the scored batch, when there is one


def customer_view(loaded: LoadedModel, data: Data, customer_id: str, as_of: pd.Timestamp,
                  playbook: Playbook, offer: Offer, batch_row: dict | None, top_k: int,
                  bands: tuple[float, float], max_steps: int) -> CustomerView:
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
    family = family_for(playbook, [r["feature"] for r in explanation.reasons])
    valued = offer_if_valued(offer, loaded.model.spec)
    value = (float(customer_value(explanation.features, valued, loaded.model.spec)[0])
             if valued is not None else None)
    attrs = {a: shown(customer[a].iloc[0]) for a in data.tables.attributes.all
             if a in customer.columns}
    return CustomerView(
        customer_id=customer_id, as_of=day(as_of), attributes=attrs,
        probability=explanation.probability, band=explanation.band,
        reasons=explanation.reasons, lowering=explanation.lowering,
        waterfall=waterfall_svg(p_base, steps, p_final),
        timeline=timeline_svg(timeline), timeline_data=timeline,
        family=family, offer=offer_decision(offer, explanation.probability, value),
        offer_rule=offer, model_version=loaded.label, batch=batch_row,
    )


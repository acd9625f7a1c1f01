"""Reasons: a sentence template per feature, stored in the model, and the top reasons of each
scored row rendered with it."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd

from features.definitions import FeatureSpec, feature_words
from features.engine import FeatureRows


def reason_templates(spec: FeatureSpec) -> dict[str, dict]:
    """One template per feature: its kind and the words to render it with. The words live on
    each feature's own entry (features.definitions); this is what the model stores."""
    return feature_words(spec)


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def render_reason(template: dict, value: object) -> str:
    """The sentence for one feature's value."""
    kind = template["kind"]
    if kind == "category":
        shown = "unknown" if _missing(value) else str(value)
        return f"{template['label']} is {shown}"
    if kind.startswith("contact_"):
        return _contact_reason(template, value)
    if _missing(value):
        if kind == "days_since":
            return f"No {template['label']} recorded so far"
        if kind == "trend":
            return f"{template['label']}: customer too new to compare periods"
        return f"{template.get('label', 'Value')} not available"
    v = float(value)
    if kind == "tenure":
        return f"Customer for {v:,.0f} days"
    if kind == "count":
        return f"{template['label']} in the last {template['w']} days: {v:,.0f}"
    if kind == "active_days":
        return f"Active on {v:.0f} of the last {template['w']} days"
    if kind == "days_since":
        days = round(v)  # as shown, so that 1.2 days reads "1 day ago"
        if days == 0:
            return f"Last {template['label']} today"
        return f"Last {template['label']} {days:,} {'day' if days == 1 else 'days'} ago"
    if kind == "trend":
        label, recent, earlier = template["label"], template["recent"], template["earlier"]
        span = f"in the last {recent} days compared with the {earlier} before"
        if v <= -0.999:
            return f"{label} stopped {span}"
        if v >= 0.999:
            return f"{label} appeared {span}, after none"
        if abs(v) < 0.005:
            return f"{label} steady {span}"
        ratio = (1 + v) / (1 - v)
        change = (ratio - 1) * 100
        verb = "fell" if change < 0 else "rose"
        return f"{label} {verb} {abs(change):.0f}% {span}"
    return template["text"].format(v=v)


def _contact_reason(template: dict, value: object) -> str:
    """The sentence of a contact feature (features.definitions `_contact_entries`): the
    column's name goes into the words."""
    kind, noun = template["kind"], template["noun"]
    if kind == "contact_distinct":
        n, w = (0 if _missing(value) else round(float(value))), template["w"]
        if n == 0:
            return f"No {noun} recorded in the last {w} days"
        if n == 1:
            return f"Dealt with one {noun} in the last {w} days"
        return f"Dealt with {n} different {template['nouns']} in the last {w} days"
    if kind == "contact_usual":
        if _missing(value):
            return f"No usual {noun} to compare the last {template['w']} days with"
        share = float(value)
        if share <= 0.0:
            return f"Now deals with a different {noun} than usual"
        if share >= 1.0:
            return f"Still deals with the usual {noun}"
        return (f"Only {share:.0%} of the last {template['w']} days' events were with the "
                f"usual {noun}")
    if _missing(value):
        return f"The {noun} has not changed so far"
    days = round(float(value))
    if days == 0:
        return f"The {noun} changed today"
    return f"The {noun} changed {days:,} {'day' if days == 1 else 'days'} ago"


def plain_value(value: object) -> object:
    """A feature value for people and JSON: missing (None or NaN) becomes None."""
    return None if _missing(value) else value


def template_for(reason_texts: dict[str, dict], feature: str) -> dict:
    return reason_texts.get(feature, {"kind": "plain", "text": feature + " = {v}"})


def feature_values(model, features: pd.DataFrame | FeatureRows) -> np.ndarray:
    """The rows' values of the model's features as an object matrix, for `top_reasons`."""
    if not isinstance(features, FeatureRows):
        return features[model.feature_names].to_numpy(dtype=object)
    position = {c: i for i, c in enumerate(model.feature_names)}
    values = np.empty((len(features), len(model.feature_names)), dtype=object)
    values[:, [position[c] for c in features.numeric_names]] = features.numeric.tolist()
    for c, column in features.categorical.items():
        values[:, position[c]] = column
    return values


# facts about who the customer is rather than what they did: attributes (plan, contract, country),
# how long they have been a customer, and their history as a whole (lifetime counts and rates,
# the usual gap, BG/NBD's summaries of the whole past): nothing there changed recently. Nobody
# can act on them, so the lead reasons ("what changed") and the suggested action come from the
# other, behavioural features.
PROFILE_FEATURES = frozenset({"tenure_days", "history_days", "days_to_anniversary",
                              "mean_gap_days", "btyd_frequency", "btyd_recency_days",
                              "btyd_age_days"})


def is_profile(feature: str) -> bool:
    """True for a feature about who the customer is or their whole history (attr_*, tenure,
    *_lifetime), not a change in their behaviour."""
    return (feature.startswith("attr_") or feature in PROFILE_FEATURES
            or feature.endswith("_lifetime"))


def _agreeing(model, phi: np.ndarray) -> np.ndarray | None:
    """Per row and feature, the sign of the net contribution of every feature about the same
    subject (`FeatureSpec.subjects`: one event type's counts, recency and trend, ...); None
    for a model without a spec. A feature is a reason only on its subject's side, so one
    ticket is never both why a customer may leave and what keeps them."""
    spec = getattr(model, "spec", None)
    subjects = getattr(spec, "subjects", None)
    if not subjects:
        return None
    keys = [subjects.get(f, f) for f in model.feature_names]
    index = {k: i for i, k in enumerate(dict.fromkeys(keys))}
    group = np.array([index[k] for k in keys])
    onehot = np.zeros((len(keys), len(index)))
    onehot[np.arange(len(keys)), group] = 1.0
    net = np.nan_to_num(phi) @ onehot
    return np.sign(net[:, group])


def behaviour_mask(feature_names: list[str] | tuple[str, ...]) -> np.ndarray:
    """True for each behavioural feature, for `top_reasons(only=...)`."""
    return np.array([not is_profile(f) for f in feature_names], dtype=bool)


def top_reasons(model, features: pd.DataFrame | np.ndarray, contrib: np.ndarray, k: int,
                raising: bool = True, only: np.ndarray | None = None) -> list[list[dict]]:
    """For each row, up to k features that raise the risk most (or, with `raising=False`, that
    lower it most), as feature/value/contribution/effect/text. Only features whose contribution
    has that sign are listed, so a low-risk customer is never told a factor that lowers the risk
    is why they are at risk.

    A feature whose subject (its event type, value or contact column) lowers the risk on the
    whole is not a reason it is raised, and the other way round (`_agreeing`).

    `effect` is the calibrated probability with the feature's contribution minus without it, so
    it agrees with the calibrated probability the customer gets. With `only` (a boolean per
    feature), the reasons are chosen among those features alone; `effect` still starts from the
    customer's whole score."""
    n_feat = len(model.feature_names)
    phi = contrib[:, :n_feat]
    signed = phi if raising else -phi
    if only is not None:
        signed = np.where(np.asarray(only, dtype=bool)[None, :], signed, -np.inf)
    side = _agreeing(model, phi)
    if side is not None:
        signed = np.where(side == (1.0 if raising else -1.0), signed, -np.inf)
    order = np.argsort(-signed, axis=1, kind="stable")[:, :k]
    margin = contrib.sum(axis=1)
    values = (feature_values(model, features) if isinstance(features, pd.DataFrame)
              else features)  # a `feature_values` matrix, shared by both directions
    p_full = model.calibrate(margin)
    p_without = model.calibrate(margin[:, None] - np.take_along_axis(phi, order, axis=1))
    out = []
    for i in range(len(phi)):
        row = []
        for rank, j in enumerate(order[i]):
            if signed[i, j] <= 0:
                break
            name = model.feature_names[j]
            value = plain_value(values[i, j])
            row.append({
                "feature": name,
                "value": value,
                "contribution": float(phi[i, j]),
                "effect": float(p_full[i] - p_without[i, rank]),
                "text": render_reason(template_for(model.reason_texts, name), value),
            })
        out.append(row)
    return out


_PLACEHOLDER = re.compile(r"\{v[^}]*\}")


def feature_label(name: str, template: dict) -> str:
    """What a feature measures, in words for people (no value): "'Login' events in the last 30
    days", "Days as a customer". Pages that list features (Model health) show these instead
    of column names."""
    kind = template.get("kind", "plain")
    w, label = template.get("w"), template.get("label", "")
    if kind == "category":
        return _capital(label)
    if kind == "tenure":
        return "Days as a customer"
    if kind == "count":
        return f"{label} in the last {w} days"
    if kind == "active_days":
        return f"Active days in the last {w} days"
    if kind == "days_since":
        return f"Days since the last {label}"
    if kind == "trend":
        return (f"{label}: the last {template['recent']} days against the "
                f"{template['earlier']} before")
    if kind == "contact_distinct":
        return f"Different {template['nouns']} in the last {w} days"
    if kind == "contact_usual":
        return f"Share of the last {w} days' events with the usual {template['noun']}"
    if kind == "contact_change":
        return f"Days since the {template['noun']} changed"
    text = template.get("text")
    if not text or text == name + " = {v}":
        return name.replace("_", " ").capitalize()
    text = re.sub(r":\s*\{v[^}]*\}$", "", text)  # "Total amount in the last 30 days: {v}"
    if text.startswith("{v"):  # "{v} days to the signup anniversary"
        return _capital(_PLACEHOLDER.sub("", text, count=1).strip())
    return _PLACEHOLDER.sub("N", text)


def feature_labels(reason_texts: dict[str, dict]) -> dict[str, str]:
    """`feature_label` of every feature a model has words for."""
    return {name: feature_label(name, t) for name, t in reason_texts.items()}


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]

"""Reasons: a sentence template per feature, stored in the model, and the top reasons of each
scored row rendered with it."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from features.definitions import CONTACT_RECENT, CONTACT_WINDOWS, FeatureSpec
from features.engine import FeatureRows


def _plural(event_type: str) -> str:
    return f"'{event_type.replace('_', ' ')}' events"


def _noun(column: str, plural: bool = False) -> str:
    """A contact column as words: `account_manager` as 'account manager(s)'."""
    words = column.replace("_", " ").strip().lower()
    if not plural:
        return words
    return words + ("es" if words.endswith(("s", "x", "ch", "sh")) else "s")


def reason_templates(spec: FeatureSpec) -> dict[str, dict]:
    """One template per feature: its kind and the words to render it with."""
    t: dict[str, dict] = {
        "tenure_days": {"kind": "tenure"},
        "history_days": {"kind": "plain", "text": "{v:.0f} days of history in the log"},
        "days_to_anniversary": {"kind": "plain",
                                "text": "{v:,.0f} days to the signup anniversary (renewal)"},
    }
    for w in spec.windows:
        t[f"n_events_{w}d"] = {"kind": "count", "label": "Events", "w": w}
        t[f"active_days_{w}d"] = {"kind": "active_days", "w": w}
    wmax = max(spec.windows)
    t["days_since_last_event"] = {"kind": "days_since", "label": "activity"}
    t["events_lifetime"] = {"kind": "plain", "text": "{v:.0f} events since the log began"}
    t["events_per_day_lifetime"] = {"kind": "plain",
                                    "text": "{v:.2f} events per day since the first recorded one"}
    t[f"events_per_active_day_{wmax}d"] = {
        "kind": "plain", "text": f"{{v:.1f}} events per active day in the last {wmax} days"}
    t["mean_gap_days"] = {"kind": "plain", "text": "Usually {v:.1f} days between events"}
    t["overdue_ratio"] = {"kind": "plain",
                          "text": "Time since the last event is {v:.1f}x the usual gap"}
    t["trend_events"] = {"kind": "trend", "label": "Activity"}
    for etype, s in spec.type_slugs.items():
        label = _plural(etype)
        for w in spec.windows:
            t[f"n_{s}_{w}d"] = {"kind": "count", "label": label[0].upper() + label[1:], "w": w}
        t[f"days_since_{s}"] = {"kind": "days_since", "label": f"'{etype.replace('_', ' ')}'"}
        t[f"trend_{s}"] = {"kind": "trend", "label": label[0].upper() + label[1:]}
    for col, s in spec.value_slugs.items():
        for w in spec.windows:
            t[f"{s}_sum_{w}d"] = {"kind": "plain",
                                  "text": f"Total {col} in the last {w} days: {{v:,.2f}}"}
        t[f"{s}_mean_{wmax}d"] = {
            "kind": "plain", "text": f"Average {col} per event in the last {wmax} days: {{v:,.2f}}"}
        t[f"{s}_mean_lifetime"] = {"kind": "plain",
                                   "text": f"Average {col} per event overall: {{v:,.2f}}"}
        t[f"{s}_trend"] = {"kind": "trend", "label": f"Total {col}"}
    for col, s in spec.contact_slugs.items():
        noun, nouns = _noun(col), _noun(col, plural=True)
        for w in CONTACT_WINDOWS:
            t[f"contact_{s}_distinct_{w}d"] = {"kind": "contact_distinct", "w": w,
                                               "noun": noun, "nouns": nouns}
        t[f"contact_{s}_usual_share_{CONTACT_RECENT}d"] = {
            "kind": "contact_usual", "w": CONTACT_RECENT, "noun": noun}
        t[f"contact_{s}_days_since_change"] = {"kind": "contact_change", "noun": noun}
    if spec.btyd_horizon_days is not None:  # the buy-till-you-die summaries and BG/NBD's view
        h = f"{spec.btyd_horizon_days:g}"
        t["btyd_frequency"] = {"kind": "plain",
                               "text": "Active on {v:,.0f} more days after the first active day"}
        t["btyd_recency_days"] = {"kind": "plain",
                                  "text": "{v:,.0f} days from the first to the last active day"}
        t["btyd_age_days"] = {"kind": "plain", "text": "First active {v:,.0f} days ago"}
        t["btyd_p_alive"] = {"kind": "plain", "text": "Their rhythm so far gives a {v:.0%} "
                             "chance that they are still a customer (BG/NBD)"}
        t["btyd_p_inactive"] = {"kind": "plain", "text": "Their rhythm so far gives a {v:.0%} "
                                f"chance of no activity in the next {h} days (BG/NBD)"}
        t["btyd_expected_events"] = {"kind": "plain", "text": "Their rhythm so far predicts "
                                     f"{{v:.1f}} active days in the next {h} days (BG/NBD)"}
    attr = spec.attribute_slugs
    for a in spec.attributes.numeric:
        t[attr[a]] = {"kind": "plain", "text": f"{a} is {{v:g}}"}
    for a in spec.attributes.categorical:
        t[attr[a]] = {"kind": "category", "label": a}
    for a in spec.attributes.datetime:
        t[f"{attr[a]}_days"] = {"kind": "plain", "text": f"{a} was {{v:,.0f}} days before"}
    for tmpl in t.values():
        tmpl.setdefault("recent", spec.trend_recent)
        tmpl.setdefault("earlier", spec.trend_earlier)
    return t


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


# facts about who the customer is rather than what they did: attributes (plan, contract, country)
# and how long they have been a customer. Nobody can act on them, so the lead reasons and the
# suggested action come from the other, behavioural features.
PROFILE_FEATURES = frozenset({"tenure_days", "history_days", "days_to_anniversary"})


def is_profile(feature: str) -> bool:
    """True for a feature about who the customer is (attr_*, tenure), not their behaviour."""
    return feature.startswith("attr_") or feature in PROFILE_FEATURES


def behaviour_mask(feature_names: list[str] | tuple[str, ...]) -> np.ndarray:
    """True for each behavioural feature, for `top_reasons(only=...)`."""
    return np.array([not is_profile(f) for f in feature_names], dtype=bool)


def top_reasons(model, features: pd.DataFrame | np.ndarray, contrib: np.ndarray, k: int,
                raising: bool = True, only: np.ndarray | None = None) -> list[list[dict]]:
    """For each row, up to k features that raise the risk most (or, with `raising=False`, that
    lower it most), as feature/value/contribution/effect/text. Only features whose contribution
    has that sign are listed, so a low-risk customer is never told a factor that lowers the risk
    is why they are at risk.

    `effect` is the calibrated probability with the feature's contribution minus without it, so
    it agrees with the calibrated probability the customer gets. With `only` (a boolean per
    feature), the reasons are chosen among those features alone; `effect` still starts from the
    customer's whole score."""
    n_feat = len(model.feature_names)
    phi = contrib[:, :n_feat]
    signed = phi if raising else -phi
    if only is not None:
        signed = np.where(np.asarray(only, dtype=bool)[None, :], signed, -np.inf)
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

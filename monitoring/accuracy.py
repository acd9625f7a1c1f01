"""Realised accuracy: logged predictions joined with what happened once their horizon passed.

The outcome comes from the data files with training's own label SQL (`features.observations.
label_sql`): explicit (a churn date in (as_of, as_of + horizon]) or inactivity (no activity
event in it), for the label kind, horizon and activity types the model was trained with. A
prediction is matured when its whole horizon lies within the data (as_of + horizon <= the
data's last event or churn), the rule training uses for its latest observation time. Only
customers in the population at their as_of (signed up by then, not churned) are judged, as in
training.

Metrics per group: ROC-AUC and Brier from scikit-learn, lift in the top 10%, calibration in
ten equal-width bins, and customer-clustered bootstrap intervals (training/intervals.py).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import brier_score_loss, roc_auc_score

from features.contract import CHURNED_AT, CUSTOMER_ID, SIGNUP_AT
from features.definitions import FeatureSpec
from features.observations import LABEL, active, data_end, horizon_seen, label_sql
from features.relations import AS_OF, obs_relation, relations
from training.intervals import cluster_bootstrap
from training.metrics import lift_capture

PROBABILITY = "probability"
VERSION = "model_version"
WEEK = "week"
CALIBRATION_BINS = 10


def latest_per_prediction(log: pd.DataFrame) -> pd.DataFrame:
    """One row per (model version, customer, as_of): the latest logged. A customer scored twice
    for the same time (by /predict and by `churn score`, say) counts once."""
    order = log.sort_values("created_at", kind="stable")
    return order.drop_duplicates([VERSION, CUSTOMER_ID, AS_OF], keep="last").reset_index(drop=True)


def in_population(pairs: pd.DataFrame, customers: pd.DataFrame) -> np.ndarray:
    """Whether each (customer_id, as_of) is a customer of the data active at as_of
    (`features.observations.active`; an unknown customer is not)."""
    known = customers.set_index(CUSTOMER_ID)
    churned = pairs[CUSTOMER_ID].map(known[CHURNED_AT]) if CHURNED_AT in known else None
    return np.asarray(active(pairs[CUSTOMER_ID].map(known[SIGNUP_AT]), churned,
                             pd.to_datetime(pairs[AS_OF])), dtype=bool)


def join_outcomes(log: pd.DataFrame, customers: pd.DataFrame, events, spec: FeatureSpec,
                  label: str, horizon_days: float, activity_types: tuple[str, ...] = ()
                  ) -> tuple[pd.DataFrame, dict[str, int]]:
    """The matured predictions of `log` in the population with their `label` column, and
    counts of what was left out (not yet matured, unknown or inactive customers).
    `activity_types`: the event types the inactivity label counts (empty: every event)."""
    end = data_end(customers, events)
    mature = horizon_seen(log[AS_OF], end, horizon_days)
    ripe = log[mature].reset_index(drop=True)
    keep = in_population(ripe, customers) if len(ripe) else np.zeros(0, dtype=bool)
    judged = ripe[keep].reset_index(drop=True)
    counts = {"logged": len(log), "not_matured": int((~mature).sum()),
              "not_in_population": int((~keep).sum()), "matured": len(judged)}
    if judged.empty:
        return judged.assign(**{LABEL: pd.Series(dtype="int8")}), counts
    rel = relations(customers, events, spec)
    labels = rel.query(label_sql(label, horizon_days, activity_types), obs=obs_relation(judged))
    y = labels.set_index("obs_id")["label"].reindex(np.arange(len(judged))).to_numpy()
    return judged.assign(**{LABEL: y.astype("int8")}), counts


def calibration_bins(y: np.ndarray, p: np.ndarray, bins: int = CALIBRATION_BINS) -> list[dict]:
    """Equal-width probability bins that hold rows: rows, mean predicted, observed churn rate
    (scikit-learn's `calibration_curve(strategy="uniform")` with the counts)."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.searchsorted(edges[1:-1], p, side="right")
    out = []
    for b in range(bins):
        mask = idx == b
        if mask.any():
            out.append({"low": float(edges[b]), "high": float(edges[b + 1]),
                        "rows": int(mask.sum()), "mean_predicted": float(p[mask].mean()),
                        "observed": float(y[mask].mean())})
    return out


def realised_metrics(y: np.ndarray, p: np.ndarray, customers: np.ndarray, level: float,
                     resamples: int, seed: int = 0) -> dict[str, object]:
    """ROC-AUC (needs both classes), Brier, lift and capture in the top 10%, calibration bins,
    and with `resamples` > 0 customer-bootstrap intervals (`*_low`, `*_high`)."""
    y = np.asarray(y, dtype="int64")
    p = np.asarray(p, dtype="float64")
    both = 0 < y.sum() < len(y)
    out: dict[str, object] = {
        "rows": len(y), "churners": int(y.sum()), "base_rate": float(y.mean()),
        "mean_predicted": float(p.mean()), "brier": float(brier_score_loss(y, p)),
        "roc_auc": float(roc_auc_score(y, p)) if both else None,
        "calibration": calibration_bins(y, p),
    }
    lift, capture = lift_capture(y, p)
    out["lift_top10"] = lift if both else None
    out["capture_top10"] = capture if both else None
    if both and resamples > 0:
        intervals = cluster_bootstrap(y, p, customers, level=level, resamples=resamples,
                                      seed=seed)
        for name in ("roc_auc", "brier", "lift_top10"):
            iv = intervals[name]
            out[f"{name}_low"], out[f"{name}_high"] = iv.low, iv.high
        out["level"] = level
    return out


def week_of(as_of: pd.Series) -> pd.Series:
    """The Monday that starts the week of each time."""
    t = pd.to_datetime(as_of)
    return (t - pd.to_timedelta(t.dt.weekday, unit="D")).dt.floor("D")


def accuracy_by_group(joined: pd.DataFrame, level: float, resamples: int, seed: int = 0
                      ) -> tuple[dict[str, dict], list[dict]]:
    """Realised metrics per model version (all its matured rows) and per version and week."""
    by_version: dict[str, dict] = {}
    weeks: list[dict] = []
    frame = joined.assign(**{WEEK: week_of(joined[AS_OF])})
    for version, part in frame.groupby(VERSION, sort=True):
        by_version[str(version)] = realised_metrics(
            part[LABEL].to_numpy(), part[PROBABILITY].to_numpy(), part[CUSTOMER_ID].to_numpy(),
            level, resamples, seed)
        for week, rows in part.groupby(WEEK, sort=True):
            m = realised_metrics(rows[LABEL].to_numpy(), rows[PROBABILITY].to_numpy(),
                                 rows[CUSTOMER_ID].to_numpy(), level, resamples, seed)
            weeks.append({VERSION: str(version), WEEK: pd.Timestamp(week).strftime("%Y-%m-%d"),
                          **m})
    return by_version, weeks

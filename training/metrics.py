"""Evaluation metrics for churn scores: ranking, calibration, lift and expected profit."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

from scoring.predictor import expected_saving
from scoring.settings import Offer


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Mean |observed - predicted| over equal-width probability bins, weighted by bin size."""
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        mask = idx == b
        if mask.any():
            total += mask.sum() * abs(y[mask].mean() - p[mask].mean())
    return float(total / len(y))


def lift_capture(y: np.ndarray, p: np.ndarray, top: float = 0.1) -> tuple[float, float]:
    """Churn rate in the top share by score over the base rate, and the share of churners there."""
    k = max(1, int(round(len(p) * top)))
    order = np.argsort(-p, kind="stable")[:k]
    base = y.mean()
    hits = y[order].sum()
    lift = float((hits / k) / base) if base > 0 else float("nan")
    capture = float(hits / y.sum()) if y.sum() > 0 else float("nan")
    return lift, capture


def classification_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    y = np.asarray(y, dtype=int)
    p = np.clip(np.asarray(p, dtype=float), 1e-7, 1 - 1e-7)
    both = len(np.unique(y)) == 2
    lift, capture = lift_capture(y, p)
    return {
        "roc_auc": float(roc_auc_score(y, p)) if both else float("nan"),
        "pr_auc": float(average_precision_score(y, p)) if both else float("nan"),
        "brier": float(brier_score_loss(y, p)),
        "log_loss": float(log_loss(y, p, labels=[0, 1])),
        "lift_top10": lift,
        "capture_top10": capture,
        "ece": expected_calibration_error(y, p),
        "mean_predicted": float(p.mean()),
        "base_rate": float(y.mean()),
        "rows": float(len(y)),
    }


def bootstrap_auc_ci(
    y: np.ndarray, p: np.ndarray, resamples: int = 200, seed: int = 0
) -> tuple[float, float]:
    """A 95% percentile bootstrap interval for ROC-AUC."""
    if resamples <= 0 or len(np.unique(y)) < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    stats = []
    n = len(y)
    for _ in range(resamples):
        i = rng.integers(0, n, n)
        if y[i].min() != y[i].max():
            stats.append(roc_auc_score(y[i], p[i]))
    lo, hi = np.percentile(stats, [2.5, 97.5])
    return float(lo), float(hi)


def profit_curve(
    p: np.ndarray, value: np.ndarray, offer: Offer, y: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Cumulative profit of contacting the top k customers ranked by expected profit.

    Expected profit of one contact: its expected saving (the offer rule) minus the offer's
    cost. With labels, the realised profit uses the actual churn (y) in place of p."""
    gain = expected_saving(p, value, offer) - offer.cost
    order = np.argsort(-gain, kind="stable")
    curve = {"k": np.arange(0, len(p) + 1),
             "expected": np.concatenate([[0.0], np.cumsum(gain[order])])}
    if y is not None:
        realised = expected_saving(y[order], value[order], offer) - offer.cost
        curve["realised"] = np.concatenate([[0.0], np.cumsum(realised)])
    return curve

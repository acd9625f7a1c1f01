"""Evaluation metrics for churn scores: ranking, calibration, lift and expected profit."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

from scoring.predictor import expected_saving
from scoring.settings import Offer
from training.intervals import cluster_bootstrap


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


def metrics_with_intervals(
    y: np.ndarray, p: np.ndarray, customers: np.ndarray, level: float, resamples: int | None,
    seed: int,
) -> dict[str, float]:
    """Every test metric, and for ROC-AUC, PR-AUC, Brier and lift at 10% an interval at `level`
    from a bootstrap that resamples customers (a customer seen at several observation times is
    one unit), as `{metric}_ci_low` / `{metric}_ci_high`. `resamples=0` skips the intervals."""
    metrics = classification_metrics(y, p)
    if resamples == 0 or len(np.unique(y)) < 2:
        return metrics
    intervals = cluster_bootstrap(y, p, customers, level=level, resamples=resamples, seed=seed)
    for name, iv in intervals.items():
        metrics[name] = iv.estimate  # lift: the tie-aware estimate the interval is built around
        metrics[f"{name}_ci_low"], metrics[f"{name}_ci_high"] = iv.low, iv.high
    metrics["ci_level"] = level
    metrics["ci_resamples"] = float(intervals["roc_auc"].resamples)
    return metrics


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


def best_campaign(p: np.ndarray, value: np.ndarray, offer: Offer, y: np.ndarray
                  ) -> tuple[dict[str, np.ndarray], int, dict[str, float]]:
    """The profit curve on labelled rows, the number of contacts where its expected profit
    peaks, and that campaign's metrics (campaign_best_k, _expected_profit, _realised_profit)."""
    curve = profit_curve(p, value, offer, y)
    best_k = int(np.argmax(curve["expected"]))
    return curve, best_k, {"campaign_best_k": float(best_k),
                           "campaign_expected_profit": float(curve["expected"][best_k]),
                           "campaign_realised_profit": float(curve["realised"][best_k])}

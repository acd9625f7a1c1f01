"""How good a churn curve is, measured as survival models are (scikit-survival): time-dependent
ROC-AUC and Brier score at each horizon, the integrated Brier score over the grid and Uno's
concordance up to the cap, all with inverse-probability-of-censoring weights estimated on
reference rows (the training rows, or the test rows themselves when their censoring is the
log's end, which training rows from an earlier log never reach); and the Kaplan-Meier
baseline by stratum that a curve has to beat."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from sksurv.metrics import (
    brier_score,
    concordance_index_ipcw,
    cumulative_dynamic_auc,
    integrated_brier_score,
)
from sksurv.nonparametric import kaplan_meier_estimator
from sksurv.util import Surv

from training.curve import Grid, restricted_mean


def outcomes(duration: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """The structured array scikit-survival reads."""
    return Surv.from_arrays(event=np.asarray(observed, dtype=bool),
                            time=np.asarray(duration, dtype="float64"))


def judged_times(grid: Grid, test_duration: np.ndarray) -> list[float]:
    """The grid's times the test rows can judge: within their follow-up (below the longest
    time seen), every interval end and 0 with the [0, 0] interval."""
    times = ([0.0] if grid.at_zero else []) + list(grid.ends)
    return [t for t in times if t < float(np.max(test_duration))]


def curve_metrics(train: np.ndarray, test: np.ndarray, curve: np.ndarray, grid: Grid,
                  horizons: tuple[float, ...]) -> dict[str, float]:
    """Metrics of `curve` ((rows, grid points) probability of churn by each point, as
    `HazardCurve.curve` gives) on the `test` outcomes, weighted with `train`'s censoring
    (the reference rows):
    auc_{h}d and brier_{h}d for each horizon, ibs over the grid, and concordance of the
    restricted mean (a shorter expected stay is a higher risk) up to the cap."""
    times = judged_times(grid, test["time"])
    where = {t: grid.index_of(t) for t in times}
    out: dict[str, float] = {}
    for h in horizons:
        if h not in where:
            continue
        f = curve[:, where[h]]
        auc, _ = cumulative_dynamic_auc(train, test, f, [h])
        _, brier = brier_score(train, test, 1.0 - f, [h])
        out[f"auc_{h:g}d"], out[f"brier_{h:g}d"] = float(auc[0]), float(brier[0])
    grid_times = [t for t in times if t > 0]
    if len(grid_times) >= 2:
        survival = 1.0 - curve[:, [where[t] for t in grid_times]]
        out["ibs"] = float(integrated_brier_score(train, test, survival, grid_times))
    tau = max(grid_times) if grid_times else None
    risk = -restricted_mean(curve, grid)
    out["concordance"] = float(concordance_index_ipcw(train, test, risk, tau=tau)[0])
    return out


def kaplan_meier_curve(duration: np.ndarray, observed: np.ndarray, grid: Grid) -> np.ndarray:
    """The Kaplan-Meier probability of churn by each grid point (right-continuous: the
    events at a point count by it)."""
    times, survival = kaplan_meier_estimator(np.asarray(observed, dtype=bool),
                                             np.asarray(duration, dtype="float64"))
    points = np.array(([0.0] if grid.at_zero else []) + list(grid.ends))
    at = np.searchsorted(times, points, side="right") - 1
    s = np.where(at >= 0, survival[np.clip(at, 0, None)], 1.0)
    return 1.0 - s


def stratified_kaplan_meier(train_strata: np.ndarray, duration: np.ndarray,
                            observed: np.ndarray, test_strata: np.ndarray, grid: Grid
                            ) -> np.ndarray:
    """Each test row gets the Kaplan-Meier curve of its stratum's training rows (the whole
    training set's for a stratum training never saw)."""
    overall = kaplan_meier_curve(duration, observed, grid)
    out = np.tile(overall, (len(test_strata), 1))
    for stratum in np.unique(test_strata):
        rows = train_strata == stratum
        if rows.sum() >= 20:
            out[test_strata == stratum] = kaplan_meier_curve(duration[rows], observed[rows], grid)
    return out


def tenure_strata(tenure_train: np.ndarray, tenure: np.ndarray, bins: int = 5) -> np.ndarray:
    """Tenure quantile bands learned on the training rows."""
    edges = np.unique(np.nanquantile(tenure_train, np.linspace(0, 1, bins + 1)[1:-1]))
    return np.searchsorted(edges, np.nan_to_num(tenure, nan=0.0), side="right")


def paired_bootstrap(metric: Callable[[np.ndarray], dict[str, float]], n_rows: int,
                     n: int = 200, seed: int = 0) -> list[dict[str, float]]:
    """`metric(rows)` on `n` resamples of the test rows (one row a customer)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        try:
            out.append(metric(rng.integers(0, n_rows, n_rows)))
        except ValueError:  # a resample without an event before a horizon: skip it
            continue
    return out

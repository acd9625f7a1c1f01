"""Drift of a model's inputs and scores: a recent window of feature rows against the training
reference logged with the model (reference/features.parquet).

Two numbers per feature, because each alone misleads:
- the population stability index (PSI), an effect size: the reference's deciles (a category's
  levels) as bins, missing values as a bin of their own, PSI = sum (cur - ref) ln(cur / ref)
  over the bins' shares. It does not grow with the number of rows. Rules of thumb: below 0.1
  stable, 0.1-0.25 a moderate shift, above 0.25 a major one.
- a test of "same distribution": two-sample Kolmogorov-Smirnov on the non-missing values of a
  numeric feature (with a chi-square test of its missing share beside it, Bonferroni over the
  two), chi-square on the level counts of a categorical one (scipy.stats). Its
  p-value says whether the shift could be noise; with thousands of rows a tiny, harmless shift
  is "significant", so it never flags on its own.

A feature is flagged when its PSI reaches the threshold and its p-value is below the level
(`Monitor.psi`, `Monitor.p_value`). Pure: frames in, a table out.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

BINS = 10  # quantile bins of a numeric feature
MAX_LEVELS = 20  # a categorical feature's most frequent reference levels; the rest are "other"
EPS = 1e-4  # share given to an empty bin, so PSI stays finite
MISSING = "(missing)"
OTHER = "(other)"

COLUMNS = ["feature", "kind", "test", "statistic", "p_value", "psi", "reference_missing",
           "current_missing", "reference_mean", "current_mean", "flagged", "calendar"]


def psi(reference_counts: np.ndarray, current_counts: np.ndarray) -> float:
    """Population stability index of two count vectors over the same bins."""
    ref = np.asarray(reference_counts, dtype="float64")
    cur = np.asarray(current_counts, dtype="float64")
    if ref.sum() == 0 or cur.sum() == 0:
        return float("nan")
    r = np.maximum(ref / ref.sum(), EPS)
    c = np.maximum(cur / cur.sum(), EPS)
    return float(np.sum((c - r) * np.log(c / r)))


def numeric_bins(reference: np.ndarray, current: np.ndarray, bins: int = BINS
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Counts of both samples in the reference's quantile bins (tied quantiles merge), with
    missing values counted in a last bin."""
    ref = np.asarray(reference, dtype="float64")
    cur = np.asarray(current, dtype="float64")
    known = ref[~np.isnan(ref)]
    cuts = (np.unique(np.quantile(known, np.linspace(0, 1, bins + 1))[1:-1]) if len(known)
            else np.array([]))

    def counts(x: np.ndarray) -> np.ndarray:
        missing = np.isnan(x)
        idx = np.searchsorted(cuts, x[~missing], side="right")
        return np.append(np.bincount(idx, minlength=len(cuts) + 1), missing.sum())

    return counts(ref), counts(cur)


def categorical_bins(reference: pd.Series, current: pd.Series, max_levels: int = MAX_LEVELS
                     ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Counts of both samples over the reference's most frequent levels, OTHER and MISSING."""
    def labels(s: pd.Series) -> pd.Series:
        return s.astype(object).where(s.notna(), MISSING).astype(str)

    ref, cur = labels(reference), labels(current)
    top = [v for v in ref.value_counts().index if v != MISSING][:max_levels]
    levels = [*top, OTHER, MISSING]

    def counts(s: pd.Series) -> np.ndarray:
        folded = s.where(s.isin(top) | (s == MISSING), OTHER)
        return folded.value_counts().reindex(levels, fill_value=0).to_numpy()

    return counts(ref), counts(cur), levels


def _chi_square(ref: np.ndarray, cur: np.ndarray) -> tuple[float, float]:
    table = np.vstack([ref, cur])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        return 0.0, 1.0
    stat, p, _, _ = stats.chi2_contingency(table)
    return float(stat), float(p)


def compare_feature(name: str, reference: pd.Series, current: pd.Series, categorical: bool,
                    psi_threshold: float, p_threshold: float) -> dict[str, object]:
    """One row of the drift table: the test, its statistic and p-value, PSI, the missing
    shares and means, and whether the feature is flagged."""
    row: dict[str, object] = {"feature": name, "kind": "categorical" if categorical else "numeric",
                              "reference_missing": float(reference.isna().mean()),
                              "current_missing": float(current.isna().mean()),
                              "reference_mean": None, "current_mean": None}
    if categorical:
        ref_counts, cur_counts, _ = categorical_bins(reference, current)
        stat, p = _chi_square(ref_counts, cur_counts)
        row["test"] = "chi2"
    else:
        ref = pd.to_numeric(reference, errors="coerce").to_numpy(dtype="float64")
        cur = pd.to_numeric(current, errors="coerce").to_numpy(dtype="float64")
        ref_counts, cur_counts = numeric_bins(ref, cur)
        a, b = ref[~np.isnan(ref)], cur[~np.isnan(cur)]
        if len(a) and len(b):
            result = stats.ks_2samp(a, b)
            stat, p = float(result.statistic), float(result.pvalue)
            row["test"] = "ks"
            # KS sees the values only; a change in the missing share is tested beside it
            # (Bonferroni over the two tests)
            missing = np.array([[len(ref) - len(a), len(a)], [len(cur) - len(b), len(b)]])
            if missing[:, 0].any():
                _, p_missing = _chi_square(missing[0], missing[1])
                if p_missing < p:
                    row["test"] = "chi2 (missing)"
                p = min(1.0, 2 * min(p, p_missing))
        else:  # all missing on one side: only the missing share can be compared
            stat, p = _chi_square(ref_counts, cur_counts)
            row["test"] = "chi2"
        row["reference_mean"] = float(a.mean()) if len(a) else None
        row["current_mean"] = float(b.mean()) if len(b) else None
    value = psi(ref_counts, cur_counts)
    row.update(statistic=stat, p_value=p, psi=value,
               flagged=bool(np.isfinite(value) and value >= psi_threshold and p < p_threshold))
    return row


def drift_table(reference: pd.DataFrame, current: pd.DataFrame, features: list[str],
                categorical: set[str] | frozenset[str], psi_threshold: float, p_threshold: float,
                calendar: set[str] | frozenset[str] | tuple[str, ...] = ()) -> pd.DataFrame:
    """Every feature of `features` compared (COLUMNS), most drifted (by PSI) first. A feature
    missing from either frame is a ValueError naming it.

    Features in `calendar` move with the calendar by construction (tenure, lifetime totals:
    `FeatureSpec.calendar_features`); they are measured like the others but never flagged,
    because a later window differs from the reference by age alone. `calendar` marks them."""
    absent = [f for f in features if f not in reference.columns or f not in current.columns]
    if absent:
        raise ValueError(f"feature {absent[0]!r} is in neither the reference nor the window's "
                         "feature rows")
    rows = [compare_feature(f, reference[f], current[f], f in categorical, psi_threshold,
                            p_threshold) for f in features]
    for row in rows:
        row["calendar"] = row["feature"] in calendar
        row["flagged"] = bool(row["flagged"] and not row["calendar"])
    table = pd.DataFrame(rows, columns=COLUMNS)
    return table.sort_values("psi", ascending=False, kind="stable",
                             na_position="last").reset_index(drop=True)


def histogram(reference: pd.Series, current: pd.Series, categorical: bool
              ) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Bin labels and both samples' shares per bin, as the drift test bins them (for plots)."""
    if categorical:
        ref, cur, labels = categorical_bins(reference, current)
    else:
        r = pd.to_numeric(reference, errors="coerce").to_numpy(dtype="float64")
        c = pd.to_numeric(current, errors="coerce").to_numpy(dtype="float64")
        ref, cur = numeric_bins(r, c)
        known = r[~np.isnan(r)]
        cuts = (np.unique(np.quantile(known, np.linspace(0, 1, BINS + 1))[1:-1]) if len(known)
                else np.array([]))
        edges = [f"{v:.3g}" for v in cuts]
        labels = ([f"< {edges[0]}"] if edges else ["all"]) + [
            f"≥ {e}" for e in edges] + [MISSING]
    shares = [x / x.sum() if x.sum() else x.astype(float) for x in (ref, cur)]
    return labels, shares[0], shares[1]

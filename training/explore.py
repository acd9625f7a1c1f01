"""What the notebooks compute: churn by cohort and month, churners against stayers, test-set
scores, SHAP explanations and the campaign summary.

Data in, tables and figures out. The one exception is `sample_data`, which writes generated
files into the folder its caller names. Figures are built without pyplot (except the SHAP
waterfall, which needs it), so nothing here changes global plotting state.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter
from pandas.api.typing import DataFrameGroupBy

from features import observations
from features.contract import CHURNED_AT, SIGNUP_AT
from features.observations import LABEL

if TYPE_CHECKING:
    import shap

# warning signs a customer-service team watches, as feature names of the generated data
WARNING_SIGNS: tuple[str, ...] = (
    "trend_login",
    "n_login_30d",
    "days_since_last_event",
    "overdue_ratio",
    "n_complaint_90d",
    "n_support_ticket_90d",
    "n_payment_failed_90d",
    "n_late_payment_90d",
    "n_contact_change_90d",
    "n_cancel_intent_90d",
    "n_downgrade_90d",
    "trend_events",
)
STAYED, CHURNED = "stayed", "churned"


def sample_data(
    folder: Path, customers: int, seed: int = 0, kind: str = "subscription"
) -> tuple[Path, Path]:
    """Paths of generated customers/events Parquet files in `folder`.

    They are generated on first use and reused as they are afterwards, so notebooks that share
    the folder see the same data."""
    from simulation.generate import generate

    folder = Path(folder)
    paths = (folder / "customers.parquet", folder / "events.parquet")
    if not all(p.exists() for p in paths):
        cust, events = generate(customers, seed=seed, kind=kind)
        folder.mkdir(parents=True, exist_ok=True)
        cust.to_parquet(paths[0], index=False)
        events.to_parquet(paths[1], index=False)
    return paths


def notebook_data(folder: Path, customers: int, customers_file: str | None = None,
                  events_file: str | None = None) -> tuple[Path, Path]:
    """The customers and events files a notebook works on: the two given (a log of your own),
    else generated data in `folder` (see `sample_data`)."""
    if not customers_file and not events_file:
        return sample_data(folder, customers)
    if not (customers_file and events_file):
        raise ValueError("give both the customers and the events file (CHURN_NOTEBOOK_CUSTOMERS_PATH "
                         "and CHURN_NOTEBOOK_EVENTS_PATH), or neither for generated data")
    return Path(customers_file), Path(events_file)


def _churn_dates(customers: pd.DataFrame) -> pd.Series:
    if CHURNED_AT not in customers:
        raise ValueError(f"customers have no '{CHURNED_AT}' column; churn rates need churn dates")
    return customers[CHURNED_AT]


def cohort_churn(customers: pd.DataFrame, end: pd.Timestamp, within_days: int = 90) -> pd.DataFrame:
    """Per signup month: customers, churned by `end`, and the share churned within `within_days`.

    Only the early rate compares cohorts fairly (older cohorts had longer to leave); it is
    missing for cohorts whose latest signup has not been observed for `within_days` yet."""
    if within_days <= 0:
        raise ValueError("within_days must be positive")
    end = pd.Timestamp(end)
    churned_at = _churn_dates(customers)
    signup = customers[SIGNUP_AT]
    seen = (signup <= end).to_numpy()
    ever = churned_at.notna() & (churned_at <= end)
    early = ever & (churned_at - signup <= pd.Timedelta(days=within_days))
    frame = pd.DataFrame({
        "signup_month": signup.dt.to_period("M"),
        "customers": 1,
        "churned": ever.astype(int),
        "early": early.astype(int),
    })[seen]
    table = frame.groupby("signup_month").sum()
    observed = (table.index.end_time + pd.Timedelta(days=within_days)) <= end
    return pd.DataFrame({
        "customers": table["customers"],
        "churned": table["churned"],
        "churn_rate": table["churned"] / table["customers"],
        f"churn_rate_{within_days}d": (table["early"] / table["customers"]).where(observed),
    })


def monthly_churn(customers: pd.DataFrame, end: pd.Timestamp) -> pd.DataFrame:
    """Per whole calendar month up to `end`: customers active at its start, new signups, and
    the share of the active customers who churned during the month."""
    end = pd.Timestamp(end)
    churned_at = _churn_dates(customers).to_numpy("datetime64[us]")
    signup = customers[SIGNUP_AT].to_numpy("datetime64[us]")
    columns = ["active_at_start", "signups", "churned", "churn_rate"]
    if len(signup) == 0:
        return pd.DataFrame(columns=columns, index=pd.PeriodIndex([], freq="M", name="month"))
    months = pd.period_range(pd.Timestamp(signup.min()), end, freq="M")
    months = months[(months + 1).start_time <= end]  # whole months only
    starts = months.start_time.to_numpy("datetime64[us]")[None, :]
    stops = (months + 1).start_time.to_numpy("datetime64[us]")[None, :]
    s, c = signup[:, None], churned_at[:, None]
    # the product's population and label (features.observations): active at the month's start,
    # churned in (start, next start]; NaT compares False, so customers who never churned stay
    active = observations.active(s, c, starts)
    left = active & (c > starts) & (c <= stops)
    new = (s > starts) & (s <= stops)
    table = pd.DataFrame({
        "active_at_start": active.sum(axis=0),
        "signups": new.sum(axis=0),
        "churned": left.sum(axis=0),
    }, index=pd.PeriodIndex(months, name="month"))
    table["churn_rate"] = table["churned"] / table["active_at_start"]
    return table[table["active_at_start"] > 0][columns]


def churn_rates_figure(
    cohorts: pd.DataFrame, monthly: pd.DataFrame, cohort_column: str = "churn_rate_90d"
) -> Figure:
    """Two panels: churn by signup cohort (`cohort_column` and churned so far) and by month."""
    if cohort_column not in cohorts:
        raise ValueError(f"cohorts have no column {cohort_column!r}")
    fig = Figure(figsize=(12, 4), layout="constrained")
    left, right = fig.subplots(1, 2)
    when = cohorts.index.to_timestamp()
    left.bar(when, cohorts[cohort_column].to_numpy(dtype=float), width=20,
             label=cohort_column.replace("_", " "))
    left.plot(when, cohorts["churn_rate"].to_numpy(dtype=float), c="C1", marker=".",
              label="churned so far")
    left.set(title="By signup month", xlabel="signup month", ylabel="share of the cohort")
    right.plot(monthly.index.to_timestamp(), monthly["churn_rate"].to_numpy(dtype=float),
               marker="o", c="C2")
    right.set(title="By calendar month", xlabel="month",
              ylabel="churned / active at the month's start")
    for ax in (left, right):
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
        ax.tick_params(axis="x", labelrotation=30)
    left.legend()
    return fig


def _by_label(
    snapshots: pd.DataFrame, features: Sequence[str], label: str
) -> tuple[list[str], DataFrameGroupBy]:
    if label not in snapshots:
        raise ValueError(f"snapshots have no {label!r} column")
    if set(snapshots[label].dropna().unique()) != {0, 1}:
        raise ValueError("snapshots need both churners (label 1) and stayers (label 0)")
    present = [f for f in features if f in snapshots]
    if not present:
        raise ValueError(f"none of the features {', '.join(features)} is in the snapshots")
    return present, snapshots.groupby(label)[present]


def label_comparison(
    snapshots: pd.DataFrame, features: Sequence[str] = WARNING_SIGNS, label: str = LABEL
) -> pd.DataFrame:
    """Per feature: mean and median among stayers and churners, and the ratio of the means.

    Features the snapshots lack are skipped (a retail history has no cancel intents)."""
    present, groups = _by_label(snapshots, features, label)
    means, medians = groups.mean(), groups.median()
    table = pd.DataFrame({
        f"{STAYED}_mean": means.loc[0],
        f"{CHURNED}_mean": means.loc[1],
        f"{STAYED}_median": medians.loc[0],
        f"{CHURNED}_median": medians.loc[1],
    }, index=pd.Index(present, name="feature"))
    ratio = table[f"{CHURNED}_mean"] / table[f"{STAYED}_mean"]
    return table.assign(churned_to_stayed=ratio.replace([np.inf, -np.inf], np.nan))


def label_means_figure(
    snapshots: pd.DataFrame, features: Sequence[str] = WARNING_SIGNS, label: str = LABEL,
    columns: int = 4,
) -> Figure:
    """Small multiples: each feature's mean among stayers and churners, with a 95% interval."""
    present, groups = _by_label(snapshots, features, label)
    means, sems = groups.mean(), groups.sem()
    rows = math.ceil(len(present) / columns)
    fig = Figure(figsize=(3 * columns, 2.4 * rows), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for ax, feature in zip(axes, present):
        ax.bar([0, 1], means[feature].loc[[0, 1]].to_numpy(dtype=float),
               yerr=1.96 * sems[feature].loc[[0, 1]].fillna(0).to_numpy(dtype=float),
               color=["C0", "C3"], capsize=3)
        ax.set_xticks([0, 1], [STAYED, CHURNED])
        ax.set_title(feature, fontsize=9)
    for ax in axes[len(present):]:
        ax.set_visible(False)
    fig.suptitle(f"Mean by {label} in the labelled snapshots "
                 f"({CHURNED}: left within the label horizon; bars: 95% interval)")
    return fig


def prediction_scores(predictions: pd.DataFrame) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Labels and per-model scores from a run's test_predictions table, as training.plots wants."""
    missing = {LABEL, "churn_probability"} - set(predictions.columns)
    if missing:
        raise ValueError(f"predictions lack columns: {', '.join(sorted(missing))}")
    scores = {"LightGBM": predictions["churn_probability"].to_numpy(dtype=float)}
    if "baseline_probability" in predictions:
        scores["baseline"] = predictions["baseline_probability"].to_numpy(dtype=float)
    return predictions[LABEL].to_numpy(dtype=int), scores


def shap_explanation(
    contrib: np.ndarray, x: np.ndarray, features: pd.DataFrame, names: Sequence[str]
) -> shap.Explanation:
    """A shap.Explanation from ChurnModel.contributions (base value in the last column).

    `x` is the model's matrix (categories as codes, used for colours); the shown values come
    from the feature table, with missing values spelled out."""
    import shap

    names = list(names)
    if contrib.ndim != 2 or contrib.shape != (len(features), len(names) + 1):
        raise ValueError(
            f"contributions must have one row per feature row and {len(names) + 1} columns "
            f"(features, then the base value); got shape {contrib.shape}"
        )
    if x.shape != (len(features), len(names)):
        raise ValueError(f"x must have shape {(len(features), len(names))}, not {x.shape}")
    shown = features[names].astype(object)
    shown = shown.where(shown.notna(), "missing")
    return shap.Explanation(
        values=contrib[:, :-1], base_values=contrib[:, -1], data=x,
        display_data=shown.to_numpy(), feature_names=names,
    )


def waterfall_figure(explanation: shap.Explanation, title: str, top: int = 10) -> Figure:
    """One customer's SHAP waterfall in log-odds: from the base value to the raw score, which
    calibration then maps to the probability."""
    import matplotlib.pyplot as plt
    import shap

    if len(explanation.shape) != 1:
        raise ValueError("pass one row of an Explanation, e.g. explanation[0]")
    interactive = plt.isinteractive()  # shap's waterfall switches interactive mode off
    try:
        fig = plt.figure()
        shap.plots.waterfall(explanation, max_display=top, show=False)
    finally:
        if interactive:
            plt.ion()
    plt.close(fig)  # out of pyplot's registry, else a notebook shows it twice (see plots.py)
    fig.suptitle(f"{title}\nSHAP contributions in log-odds, before calibration", fontsize=10)
    fig.tight_layout()
    return fig


def example_rows(probability: np.ndarray, top: int = 2) -> list[int]:
    """Positions to explain: the `top` highest probabilities and the one nearest the median."""
    p = np.asarray(probability, dtype=float)
    if p.size == 0:
        raise ValueError("no probabilities to choose from")
    highest = np.argsort(-p, kind="stable")[:top]
    typical = int(np.argmin(np.abs(p - np.median(p))))
    return list(dict.fromkeys([*map(int, highest), typical]))


def campaign_summary(curve: dict[str, np.ndarray]) -> dict[str, float]:
    """The best campaign size on a training.metrics.profit_curve and what it earns."""
    expected = np.asarray(curve["expected"], dtype=float)
    customers = len(expected) - 1
    best = int(np.argmax(expected))
    out = {
        "customers": float(customers),
        "best_k": float(best),
        "share_contacted": best / customers if customers else float("nan"),
        "expected_profit": float(expected[best]),
        "expected_profit_contacting_all": float(expected[-1]),
    }
    if "realised" in curve:
        out["realised_profit"] = float(np.asarray(curve["realised"])[best])
    return out

"""Evaluation plots. Each function returns a matplotlib Figure; the caller saves or logs it.

Figures are built without pyplot's registry of open figures (SHAP draws through pyplot, so its
figure is taken out of the registry before it is returned): a notebook shows a returned figure
once, where pyplot's inline backend would show every open figure a second time at the end of
the cell, and a long process does not accumulate open figures."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.metrics import precision_recall_curve, roc_curve


def roc_plot(y: np.ndarray, scores: dict[str, np.ndarray]) -> Figure:
    fig = Figure(figsize=(5, 5))
    ax = fig.subplots()
    for name, p in scores.items():
        fpr, tpr, _ = roc_curve(y, p)
        ax.plot(fpr, tpr, label=name)
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1)
    ax.set(xlabel="False positive rate", ylabel="True positive rate", title="ROC (test)")
    ax.legend()
    fig.tight_layout()
    return fig


def pr_plot(y: np.ndarray, scores: dict[str, np.ndarray]) -> Figure:
    fig = Figure(figsize=(5, 5))
    ax = fig.subplots()
    for name, p in scores.items():
        prec, rec, _ = precision_recall_curve(y, p)
        ax.plot(rec, prec, label=name)
    ax.axhline(y.mean(), ls="--", c="grey", lw=1, label="base rate")
    ax.set(xlabel="Recall", ylabel="Precision", title="Precision-recall (test)")
    ax.legend()
    fig.tight_layout()
    return fig


def calibration_plot(y: np.ndarray, scores: dict[str, np.ndarray], bins: int = 10) -> Figure:
    """Reliability curve on quantile bins, so sparse high-probability bins are not over-read."""
    fig = Figure(figsize=(5, 5))
    ax = fig.subplots()
    top = 0.0
    for name, p in scores.items():
        q = pd.qcut(p, bins, duplicates="drop", labels=False)
        frame = pd.DataFrame({"p": p, "y": y, "q": q}).groupby("q").mean()
        ax.plot(frame["p"], frame["y"], marker="o", label=name)
        top = max(top, frame["p"].max(), frame["y"].max())
    ax.plot([0, top], [0, top], ls="--", c="grey", lw=1, label="perfect")
    ax.set(xlabel="Mean predicted probability", ylabel="Observed churn rate",
           title="Calibration (test)")
    ax.legend()
    fig.tight_layout()
    return fig


def lift_plot(y: np.ndarray, scores: dict[str, np.ndarray]) -> Figure:
    """Cumulative gain: share of churners caught when contacting the top x% by score."""
    fig = Figure(figsize=(5, 5))
    ax = fig.subplots()
    for name, p in scores.items():
        order = np.argsort(-p, kind="stable")
        gain = np.concatenate([[0], np.cumsum(y[order]) / max(y.sum(), 1)])
        share = np.linspace(0, 1, len(gain))
        ax.plot(share, gain, label=name)
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1, label="random")
    ax.axvline(0.1, c="k", lw=0.5)
    ax.set(xlabel="Share of customers contacted", ylabel="Share of churners caught",
           title="Cumulative gain (test)")
    ax.legend()
    fig.tight_layout()
    return fig


def importance_plot(importance: pd.Series, title: str, top: int = 20) -> Figure:
    imp = importance.sort_values(ascending=True).tail(top)
    fig = Figure(figsize=(6, 0.3 * len(imp) + 1.2))
    ax = fig.subplots()
    ax.barh(imp.index, imp.to_numpy())
    ax.set(title=title)
    fig.tight_layout()
    return fig


def shap_beeswarm(contrib: np.ndarray, x: pd.DataFrame, names: list[str], top: int = 20,
                  title: str = "SHAP summary (test, log-odds)") -> Figure:
    import shap

    interactive = plt.isinteractive()  # shap's plots may switch interactive mode off
    try:
        fig = plt.figure()
        shap.summary_plot(contrib, x, feature_names=names, max_display=top, show=False,
                          plot_size=(8, 0.35 * top + 1.5))
    finally:
        if interactive:
            plt.ion()
    plt.close(fig)  # out of pyplot's registry; the Figure itself still draws and saves
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def profit_plot(curve: dict[str, np.ndarray], best_k: int,
                title: str = "Retention campaign profit (test)") -> Figure:
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    ax.plot(curve["k"], curve["expected"], label="expected")
    if "realised" in curve:
        ax.plot(curve["k"], curve["realised"], label="realised on test labels")
    ax.axvline(best_k, c="k", lw=0.8, ls="--", label=f"best k = {best_k}")
    ax.axhline(0, c="grey", lw=0.5)
    ax.set(xlabel="Customers contacted (ranked by expected profit)", ylabel="Profit",
           title=title)
    ax.legend()
    fig.tight_layout()
    return fig

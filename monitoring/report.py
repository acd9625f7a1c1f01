"""The HTML report of a `churn monitor` run: one self-contained file (jinja2, with matplotlib
figures inlined as PNG), readable without a server. Evidently would have drawn this, but its
newest release (0.7.23) does not import with pandas 3, so the page is our own."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from jinja2 import Environment, FileSystemLoader, select_autoescape
from matplotlib.figure import Figure

from monitoring.drift import histogram

if TYPE_CHECKING:
    from monitoring.monitor import MonitorResult

SHOWN_FEATURES = 6  # the most drifted features drawn as histograms

_env = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"),
                   autoescape=select_autoescape(default=True, default_for_string=True),
                   trim_blocks=True, lstrip_blocks=True)
_env.filters.update(
    num=lambda v, f=".3f": "–" if v is None or (isinstance(v, float) and not np.isfinite(v))
    else format(v, f),
    pct=lambda v: "–" if v is None else f"{v:.1%}",
)


def png(fig: Figure) -> str:
    """A figure as a data: URI."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def distribution_figure(name: str, reference: pd.Series, current: pd.Series, categorical: bool
                        ) -> Figure:
    """Both samples' shares in the bins the drift test used."""
    labels, ref, cur = histogram(reference, current, categorical)
    fig = Figure(figsize=(5.2, 2.8))
    ax = fig.subplots()
    x = np.arange(len(labels))
    ax.bar(x - 0.2, ref, width=0.4, label="training reference", color="#9ca3af")
    ax.bar(x + 0.2, cur, width=0.4, label="window", color="#1d4ed8")
    ax.set_xticks(x, labels, rotation=45, ha="right", fontsize=7)
    ax.set(title=name, ylabel="share")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def auc_figure(weeks: list[dict], low: float | None, high: float | None) -> Figure | None:
    """Realised ROC-AUC per week and version with intervals, over the test interval's band."""
    rows = [w for w in weeks if w.get("roc_auc") is not None]
    if not rows:
        return None
    fig = Figure(figsize=(7, 3))
    ax = fig.subplots()
    if low is not None and high is not None:
        ax.axhspan(low, high, color="#d1fae5", label="test interval")
    for version in sorted({w["model_version"] for w in rows}):
        part = [w for w in rows if w["model_version"] == version]
        x = pd.to_datetime([w["week"] for w in part])
        y = np.array([w["roc_auc"] for w in part])
        lo = np.array([w.get("roc_auc_low", w["roc_auc"]) for w in part])
        hi = np.array([w.get("roc_auc_high", w["roc_auc"]) for w in part])
        ax.errorbar(x, y, yerr=[y - lo, hi - y], marker="o", capsize=3, label=f"version {version}")
    ax.set(ylabel="realised ROC-AUC", title="Realised ROC-AUC per week of prediction")
    ax.legend(fontsize=7)
    fig.autofmt_xdate()
    fig.tight_layout()
    return fig


def calibration_figure(bins: list[dict]) -> Figure | None:
    if not bins:
        return None
    fig = Figure(figsize=(3.6, 3.6))
    ax = fig.subplots()
    p = [b["mean_predicted"] for b in bins]
    o = [b["observed"] for b in bins]
    top = max(*p, *o) * 1.05
    ax.plot([0, top], [0, top], ls="--", c="grey", lw=1, label="perfect")
    ax.plot(p, o, marker="o", label="realised")
    ax.set(xlabel="mean predicted", ylabel="observed churn rate", title="Calibration")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def render(result: MonitorResult, reference: pd.DataFrame, window: pd.DataFrame | None) -> str:
    figures: dict[str, object] = {}
    if window is not None and result.score is not None:
        figures["score"] = png(distribution_figure("churn probability", reference["churn_probability"],
                                                   window["churn_probability"], False))
        shown = result.drift.head(SHOWN_FEATURES)
        figures["features"] = [
            (r.feature, png(distribution_figure(r.feature, reference[r.feature], window[r.feature],
                                                r.kind == "categorical")))
            for r in shown.itertuples()]
    auc = auc_figure(result.weeks, result.test_metrics.get("roc_auc_ci_low"),
                     result.test_metrics.get("roc_auc_ci_high"))
    if auc is not None:
        figures["auc"] = png(auc)
    mine = result.realised
    calibration = calibration_figure(mine["calibration"]) if mine else None
    if calibration is not None:
        figures["calibration"] = png(calibration)
    drift_rows = result.drift.to_dict(orient="records")
    return _env.get_template("report.html").render(r=result, figures=figures, drift=drift_rows,
                                                   flags=result.flags(), mine=mine)

"""`churn monitor`: drift and realised accuracy of the champion (or --model-version) from the
prediction log and the data files. Registered on cli/main.py's app; exits 3 when anything is
flagged, so a scheduler can alert."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Annotated

import typer

from cli.common import (
    UsageError,
    date_format_option,
    load_tables,
    out,
    parse_time,
    print_json,
    print_note,
    print_table,
    stage_bars,
)

FLAGGED_EXIT = 3
SHOWN_FEATURES = 10


def monitor(
    customers: Annotated[Path, typer.Option("--customers", help="Customers table (CSV or Parquet).")],
    events: Annotated[Path, typer.Option("--events", help="Events table (CSV or Parquet).")],
    model_version: Annotated[str | None, typer.Option(
        "--model-version", help="Model version to judge (default: the champion).")] = None,
    as_of: Annotated[str | None, typer.Option(
        "--as-of", help="End of the drift window (default: the version's latest logged as_of).")] = None,
    window: Annotated[int | None, typer.Option(
        "--window", min=1, max=366,
        help="Days of logged predictions up to --as-of compared for drift "
        "(default: CHURN_MONITOR__WINDOW_DAYS, 7).")] = None,
    since: Annotated[str | None, typer.Option(
        "--since", help="Earliest as_of for realised accuracy (default: 13 weeks before --as-of).")] = None,
    report: Annotated[Path | None, typer.Option(
        "--report",
        help="HTML report (default: mlruns/monitoring/monitor-v<version>-<as_of>-<time>.html).")] = None,
    psi: Annotated[float | None, typer.Option(
        "--psi", min=0.001, help="PSI from which a feature drifts (default: 0.2).")] = None,
    date_format: Annotated[str | None, typer.Option(
        "--date-format", callback=date_format_option,
        help="The one format (strftime, such as %d/%m/%Y) of date columns not written in ISO 8601.")] = None,
    engine: Annotated[str | None, typer.Option(
        "--engine",
        help="duckdb or spark: what reads the event files (default: CHURN_ENGINE, duckdb).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Judge the champion on the prediction log: drift against its training reference and
    realised accuracy once horizons pass; exits 3 when flagged."""
    from monitoring.monitor import MonitorError
    from monitoring.monitor import monitor as run
    from scoring.settings import get_settings

    settings = get_settings()
    end = parse_time(as_of, "--as-of") if as_of else None
    start = parse_time(since, "--since") if since else None
    if end is not None and start is not None and start > end:
        raise UsageError(f"--since: {start} is after --as-of {end}")
    limits = settings.monitor if psi is None else settings.monitor.model_copy(update={"psi": psi})
    tables = load_tables(customers, events, date_format, engine)
    try:
        # MLflow prints "View run ... at ..." to stdout when it talks to a server; stdout is ours
        with stage_bars() as stage, contextlib.redirect_stdout(sys.stderr):
            result = run(settings, tables, model_version, end, window, start, report, limits, stage)
    except MonitorError as exc:
        raise UsageError(str(exc)) from None
    if as_json:
        print_json(summary(result))
    else:
        print_summary(result, limits)
    if result.flagged:
        # SystemExit, not typer.Exit: the app runs with standalone_mode=False, where click
        # returns an Exit's code instead of exiting with it
        sys.exit(FLAGGED_EXIT)


def summary(result) -> dict:
    """--json: the verdict, the flags, every feature's drift, realised accuracy, where it went."""
    drift = result.drift.astype(object).where(result.drift.notna(), None)
    return {"model_name": result.model_name, "model_version": result.model_version,
            "as_of": str(result.as_of), "window_days": result.window_days,
            "flagged": result.flagged, "flags": result.flags(), "drifted": result.drifted,
            "drift_rows": result.drift_rows, "drift_judged": result.drift_judged,
            "score": result.score, "auc_flagged": result.auc_flagged,
            "test_roc_auc_ci_low": result.test_metrics.get("roc_auc_ci_low"),
            "realised": result.by_version, "weeks": result.weeks, "counts": result.counts,
            "drift": drift.to_dict(orient="records"), "notes": result.notes,
            "report": str(result.report), "mlflow_run_id": result.run_id}


def print_summary(result, limits) -> None:

    out.print(f"model {result.model_name} version {result.model_version} · label "
              f"{result.label}, horizon {result.horizon_days:g} days")
    out.print(f"drift: {result.drift_rows:,} logged predictions in the {result.window_days} days "
              f"to {result.as_of:%Y-%m-%d %H:%M}; PSI ≥ {limits.psi:g} and p < {limits.p_value:g} "
              "flags")
    if result.drift_judged:
        rows = [["(score) churn_probability", result.score["test"], result.score["p_value"],
                 result.score["psi"], result.score["reference_mean"], result.score["current_mean"],
                 "DRIFT" if result.score_flagged else ""]]
        rows += [[r.feature, r.test, r.p_value, r.psi, r.reference_mean, r.current_mean,
                  "DRIFT" if r.flagged else ""]
                 for r in result.drift.head(SHOWN_FEATURES).itertuples()]
        print_table(f"Drift against the training reference (the {SHOWN_FEATURES} largest of "
                    f"{len(result.drift)} features by PSI)",
                    ["feature", "test", "p-value", "PSI", "mean (reference)", "mean (window)",
                     "flag"], rows)
    c = result.counts
    out.print(f"realised accuracy: {c['logged']:,} predictions since {result.since:%Y-%m-%d}; "
              f"{c['matured']:,} matured and judged, {c['not_matured']:,} not yet matured, "
              f"{c['not_in_population']:,} not in the population")
    if result.by_version:
        test = result.test_metrics
        rows = []
        for version, m in result.by_version.items():
            rows.append([version, "all", m["rows"], m["churners"], _num(m["roc_auc"]),
                         _interval(m), m["brier"], _num(m["lift_top10"])])
        rows += [[w["model_version"], w["week"], w["rows"], w["churners"], _num(w["roc_auc"]),
                  _interval(w), w["brier"], _num(w["lift_top10"])] for w in result.weeks]
        print_table(f"Realised accuracy per version and week of as_of (version "
                    f"{result.model_version}'s test ROC-AUC {_num(test.get('roc_auc'))}, interval "
                    f"{_num(test.get('roc_auc_ci_low'))}–{_num(test.get('roc_auc_ci_high'))})",
                    ["version", "week", "rows", "churners", "ROC-AUC", "interval", "Brier",
                     "lift@10%"], rows)
    for note in result.notes:
        print_note(note)
    out.print(f"report {result.report} · MLflow run {result.run_id} (experiment monitoring)")
    for flag in result.flags():
        out.print(f"FLAGGED: {flag}")
    if not result.flagged:
        out.print("nothing flagged")


def _num(value: float | None) -> str:
    return "–" if value is None else f"{value:.4f}"


def _interval(m: dict) -> str:
    if m.get("roc_auc_low") is None:
        return ""
    return f"{m['roc_auc_low']:.4f}–{m['roc_auc_high']:.4f}"

"""`churn train`, `promote` and `compare`: a model trained and registered, the champion gate,
and the training runs side by side (training/ does the work; these parse, call and print).
Registered on cli/main.py's app there."""

from __future__ import annotations

import contextlib
import math
import sys
from pathlib import Path
from typing import Annotated

import typer

from cli.common import (
    CadenceOpt,
    CustomersOpt,
    DateFormatOpt,
    EngineOpt,
    EventsOpt,
    HorizonOpt,
    LabelOpt,
    SparkMasterOpt,
    UsageError,
    err,
    out,
    print_json,
    print_note,
    print_table,
    stage_bars,
    table_engine,
)

ModelNameOpt = Annotated[str | None, typer.Option(
    "--model-name", help="Registered model (default: CHURN_MODEL_NAME, churn). Give each "
    "dataset its own: a champion trained on other data does not judge this data's models.")]

METRIC_ROWS = [
    ("roc_auc", "ROC-AUC"), ("pr_auc", "PR-AUC"), ("brier", "Brier"), ("log_loss", "log loss"),
    ("lift_top10", "lift @10%"), ("capture_top10", "capture @10%"), ("ece", "ECE"),
    ("mean_predicted", "mean predicted"), ("base_rate", "base rate"), ("rows", "rows"),
]


def interval_text(metrics: dict[str, float], key: str, digits: int = 4) -> str:
    """'low–high' for a metric with an interval, else empty."""
    low, high = metrics.get(f"{key}_ci_low"), metrics.get(f"{key}_ci_high")
    if low is None or high is None or not math.isfinite(low) or not math.isfinite(high):
        return ""
    return f"{low:.{digits}f}–{high:.{digits}f}"


def train(
    customers: CustomersOpt,
    events: EventsOpt,
    label: LabelOpt,
    horizon: HorizonOpt,
    cadence: CadenceOpt = None,
    experiment: Annotated[str | None, typer.Option(
        "--experiment", help="MLflow experiment (default: churn).")] = None,
    config: Annotated[Path | None, typer.Option(
        "--config", help="Training config TOML (default: training/default.toml).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    model_name: ModelNameOpt = None,
    date_format: DateFormatOpt = None,
    engine: EngineOpt = None,
    spark_master: SparkMasterOpt = None,
    activity: Annotated[list[str] | None, typer.Option(
        "--activity", help="Event types that count as activity, for the inactivity label, "
        "recency and BG/NBD (repeatable or comma-separated; default: the config's "
        "activity_types, else every event). Recorded with the model.")] = None,
) -> None:
    """Train LightGBM and a baseline on time-split snapshots; log and register in MLflow."""
    from features.observations import LABEL_KINDS
    from scoring.settings import get_settings
    from training.config import load_config
    from training.pipeline import METRIC_KEYS
    from training.pipeline import train as run
    from training.promotion import champion_on_other_data

    if label not in LABEL_KINDS:
        raise UsageError(f"--label: must be one of {', '.join(LABEL_KINDS)}, not {label!r}")
    cfg = load_config(config)
    if activity:  # the option overrides the config; unknown types are refused by infer_spec
        types = [t.strip() for value in activity for t in value.split(",")]
        if not all(types):
            raise UsageError("--activity: an event type must not be empty")
        cfg = cfg.model_copy(update={"activity_types": tuple(dict.fromkeys(types))})
    # MLflow prints "View run ... at ..." to stdout when it talks to a server; stdout is ours
    settings = with_model_name(get_settings(), model_name)
    with stage_bars() as stage, contextlib.redirect_stdout(sys.stderr):
        result = run(customers, events, label, horizon, cadence, cfg, settings,
                     experiment, stage, date_format=date_format,
                     config_name=config.stem if config else None,
                     engine=table_engine(engine, spark_master))
    other_data = champion_on_other_data(settings, result.model_version)
    if as_json:
        print_json({"run_id": result.run_id, "model_run_id": result.model_run_id,
                    "model_name": result.model_name, "model_version": result.model_version,
                    "champion_on_other_data": other_data,
                    "aliases": result.aliases, "metrics": result.metrics,
                    "chosen": result.chosen, "candidates": result.candidates,
                    "registered": "refit" if "refit" in result.dataset else "evaluation model",
                    "dataset": {k: result.dataset[k] for k in (
                        "cadence_days", "cadence_chosen", "log_days", "validation_scheme",
                        "test_scheme", "notes", "observation_times", "rows", "sample")}})
        return
    data = result.dataset
    err.print(f"cadence {data['cadence_days']} days ({data['cadence_chosen']}; {data['log_days']:.0f} "
              f"days of log); validation by {data['validation_scheme'].replace('_', ' ')}, test by "
              f"{data['test_scheme'].replace('_', ' ')}")
    for note in data["notes"]:
        print_note(note)
    chosen = data["chosen"]
    lgbm = result.metrics[METRIC_KEYS.get(result.chosen, result.chosen)]
    level = f"{lgbm['ci_level']:.0%} interval" if "ci_level" in lgbm else "interval"
    first = [METRIC_KEYS.get(result.chosen, result.chosen)]
    rest = [k for k in ("lightgbm", "baseline", "bgnbd") if k in result.metrics and k not in first]
    shown = [(name, CANDIDATE_TITLES.get(name, name)) for name in (first + rest)[:3]]
    test_at = ", ".join(data["observation_times"]["test"]) or "held-out customers"
    print_table(
        f"Test metrics ({data['rows']['test']:,} rows at {test_at}; intervals resample customers)",
        ["metric", *[c for _, title in shown for c in (title, level)]],
        [[label, *[c for name, _ in shown for c in (result.metrics[name][key],
                                                      interval_text(result.metrics[name], key))]]
         for key, label in METRIC_ROWS],
    )
    if "campaign_best_k" in lgbm:
        print_campaign(lgbm)
    baseline_won = result.chosen in ("logistic", "bgnbd")
    out.print(f"{'a baseline won: ' if baseline_won else ''}registered {chosen['words']}: "
              f"{chosen['why']}"
              + ("; refitted on every labelled time" if "refit" in data else ""))
    out.print(f"run {result.run_id} · registered {result.model_name} version "
              f"{result.model_version} ({', '.join(result.aliases)})")
    if other_data:
        print_note(f"`churn promote` will not compare it: {other_data}",
                  soft_wrap=True)


def with_model_name(settings, model_name: str | None):
    """The settings with --model-name as the registered model (and the champion to load)."""
    if model_name is None:
        return settings
    if not model_name.strip() or "/" in model_name or "@" in model_name:
        raise UsageError(f"--model-name: {model_name!r} is not a model name (no '/' or '@')")
    return settings.model_copy(update={"model_name": model_name,
                                       "model_uri": f"models:/{model_name}@champion"})


# the candidates' column titles in `churn train`'s table (their metrics keys)
CANDIDATE_TITLES = {"lightgbm": "LightGBM", "baseline": "logistic", "bgnbd": "BG/NBD",
                    "lightgbm_bgnbd": "LGBM+BG/NBD", "blend": "blend"}


def print_campaign(metrics: dict[str, float]) -> None:
    """The best campaign on the test rows: what the model expected and what the labels paid."""
    k = int(metrics["campaign_best_k"])
    print_table(
        f"Best campaign on the test rows: contact the top {k:,} by expected profit",
        ["profit", "amount", "from"],
        [["expected", f"{metrics['campaign_expected_profit']:,.0f}",
          "the model's churn probabilities"],
         ["realised", f"{metrics['campaign_realised_profit']:,.0f}",
          "who really churned (test labels)"]],
    )


def promote(
    version: Annotated[str | None, typer.Option(
        "--version", help="Model version to promote (default: the challenger, else the latest).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Promote even if it does not win.")] = False,
    level: Annotated[float | None, typer.Option(
        "--level", min=0.5, max=0.999,
        help="Confidence level of the intervals (default: CHURN_PROMOTION_LEVEL, 0.95).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    model_name: ModelNameOpt = None,
) -> None:
    """Move the champion alias to a version that beats the champion on the same held-out rows,
    beyond the noise of a paired, customer-clustered bootstrap."""
    from scoring.settings import get_settings
    from training.promotion import promote as run

    result = run(with_model_name(get_settings(), model_name), version, force, level)
    if as_json:
        print_json(result.summary())
        return
    if result.scores:
        c, h = result.scores["candidate"], result.scores["champion"]
        d = result.differences
        print_table(
            f"Version {result.candidate} vs champion {result.champion} on {result.rows:,} rows "
            f"({result.customers:,} customers) at {', '.join(result.times)}",
            ["metric", f"candidate v{result.candidate}", f"champion v{result.champion}",
             "difference", f"{result.level:.0%} interval (paired)"],
            [[title, c[key], h[key], f"{d[key].estimate:+.4f}",
              f"{d[key].low:+.4f} to {d[key].high:+.4f}"]
             for key, title in (("roc_auc", "ROC-AUC"), ("brier", "Brier"))],
        )
    verdict = "promoted to champion" if result.promoted else "not promoted"
    out.print(f"version {result.candidate}: {verdict}: {result.reason}", soft_wrap=True)


def compare(
    experiment: Annotated[str | None, typer.Option(
        "--experiment", help="MLflow experiment (default: churn).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON rows.")] = False,
) -> None:
    """Print the training runs side by side, newest first."""
    from scoring.settings import get_settings
    from training.promotion import compare as run

    table = run(get_settings(), experiment)
    if as_json:
        runs = table.astype(object).where(table.notna(), None).to_dict(orient="records")
        print_json({"runs": runs})
        return
    if table.empty:
        out.print("no training runs yet")
        return
    print_compare(table)


# compare's table fits TABLE_WIDTH; --json has every field (run ids, times, the config's
# changed keys, the baseline)
TABLE_WIDTH = 100


def print_compare(table) -> None:
    """compare's table: names fold inside their columns, numbers stay whole."""
    print_table(f"Training runs, newest first: metrics on each run's test rows, ROC-AUC with "
                f"its {interval_level(table)} below (★ champion)",
                COMPARE_COLUMNS, compare_rows(table), width=TABLE_WIDTH,
                whole=("version", "ROC-AUC", "PR-AUC", "Brier", "lift@10%"))


COMPARE_COLUMNS = ["version", "data", "label", "config", "ROC-AUC", "PR-AUC", "Brier",
                   "lift@10%"]


def interval_level(table) -> str:
    """'95% interval' when every run's bootstrap has that level, else 'interval'."""
    levels = set(table["ci_level"].dropna()) if "ci_level" in table else set()
    return f"{levels.pop():.0%} interval" if len(levels) == 1 else "interval"


def compare_rows(table) -> list[list[object]]:
    """compare's rows in COMPARE_COLUMNS order: the version (★ the champion), the label with
    its horizon, the ROC-AUC with its bootstrap interval below it (none for a run without)."""
    rows = []
    for r in table.itertuples():
        horizon = f" {r.horizon_days:.0f}d" if r.horizon_days == r.horizon_days else ""
        interval = interval_text({"roc_auc_ci_low": r.roc_auc_ci_low,
                                  "roc_auc_ci_high": r.roc_auc_ci_high}, "roc_auc", digits=3)
        rows.append([f"{r.version} ★" if r.champion else r.version, r.data,
                     f"{r.label}{horizon}", r.config,
                     f"{r.roc_auc:.4f}" + (f"\n{interval}" if interval else ""), r.pr_auc,
                     r.brier, r.lift_top10])
    return rows

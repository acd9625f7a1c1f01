"""The `churn` command line, the composition root: it reads the settings once, wires the
features, training, scoring and serving packages together, and nothing imports it. Commands
parse arguments, call library code and print results."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from cli.campaign import app as campaign_app
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
    fail,
    load_tables,
    out,
    parse_time,
    print_json,
    print_table,
    progress_bar,
    stage_bars,
    table_engine,
    write_parquet,
)
from cli.monitor import monitor as monitor_command
from cli.returning import returning

app = typer.Typer(
    name="churn",
    help="Churn prediction from interaction history.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
@app.command()
def generate(
    customers: Annotated[int, typer.Option("--customers", min=1, help="How many customers.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the two Parquet files.")],
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
    kind: Annotated[str, typer.Option(
        "--kind", help="subscription (with churn dates) or retail (none).")] = "subscription",
    history_days: Annotated[int | None, typer.Option(
        "--history-days", min=1, help="Keep only the log's last DAYS days (a short history).")] = None,
) -> None:
    """Generate a realistic interaction history (customers.parquet, events.parquet)."""
    from simulation.generate import KINDS
    from simulation.generate import generate as run

    if kind not in KINDS:
        raise UsageError(f"--kind: must be one of {', '.join(KINDS)}, not {kind!r}")
    with progress_bar("simulating weeks") as progress:
        cust, events = run(customers, seed=seed, kind=kind, progress=progress,
                           history_days=history_days)
    write_parquet(cust, out_dir / "customers.parquet")
    write_parquet(events, out_dir / "events.parquet")
    out.print(f"wrote {len(cust):,} customers and {len(events):,} events to {out_dir}")


@app.command()
def features(
    customers: CustomersOpt,
    events: EventsOpt,
    as_of: Annotated[list[str], typer.Option("--as-of", help="Observation time; repeatable.")],
    out_path: Annotated[Path, typer.Option("--out", help="Output Parquet file.")],
    date_format: DateFormatOpt = None,
    engine: EngineOpt = None,
    spark_master: SparkMasterOpt = None,
) -> None:
    """Write point-in-time features for every customer signed up by each --as-of."""
    from features.engine import feature_table
    from features.spec_inference import infer_spec

    times = [parse_time(v, "--as-of") for v in as_of]
    tables = load_tables(customers, events, date_format, engine, spark_master)
    spec = infer_spec(tables, before=max(times))  # the columns depend on the past alone
    with progress_bar("building features") as progress:
        table = feature_table(tables.customers, tables.events, spec, times, progress)
    write_parquet(table, out_path)
    out.print(f"wrote {len(table):,} rows x {len(spec.feature_names)} features to {out_path}")


@app.command()
def snapshots(
    customers: CustomersOpt,
    events: EventsOpt,
    label: LabelOpt,
    horizon: HorizonOpt,
    out_path: Annotated[Path, typer.Option("--out", help="Output Parquet file.")],
    cadence: CadenceOpt = None,
    date_format: DateFormatOpt = None,
    engine: EngineOpt = None,
    spark_master: SparkMasterOpt = None,
) -> None:
    """Write labelled training snapshots at a regular cadence."""
    from features.engine import build_snapshots
    from features.observations import LABEL_KINDS, plan_observations
    from features.spec_inference import infer_spec

    if label not in LABEL_KINDS:
        raise UsageError(f"--label: must be one of {', '.join(LABEL_KINDS)}, not {label!r}")
    tables = load_tables(customers, events, date_format, engine, spark_master)
    plan = plan_observations(tables.customers, tables.events, horizon, cadence)
    times = plan.times
    spec = infer_spec(tables, before=max(times))  # the columns depend on the past alone
    with progress_bar("building snapshots") as progress:
        table = build_snapshots(tables, spec, label, horizon, plan.cadence_days, times=times,
                                progress=progress)
    write_parquet(table, out_path)
    times = table["as_of"].nunique()
    out.print(
        f"wrote {len(table):,} rows at {times} observation times "
        f"(churn rate {table['label'].mean():.1%}) to {out_path}"
    )


METRIC_ROWS = [
    ("roc_auc", "ROC-AUC"), ("pr_auc", "PR-AUC"), ("brier", "Brier"), ("log_loss", "log loss"),
    ("lift_top10", "lift @10%"), ("capture_top10", "capture @10%"), ("ece", "ECE"),
    ("mean_predicted", "mean predicted"), ("base_rate", "base rate"), ("rows", "rows"),
]


def interval_text(metrics: dict[str, float], key: str) -> str:
    """'low–high' for a metric with an interval, else empty."""
    low, high = metrics.get(f"{key}_ci_low"), metrics.get(f"{key}_ci_high")
    return f"{low:.4f}–{high:.4f}" if low is not None and high is not None else ""


@app.command()
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

    if label not in LABEL_KINDS:
        raise UsageError(f"--label: must be one of {', '.join(LABEL_KINDS)}, not {label!r}")
    cfg = load_config(config)
    if activity:  # the option overrides the config; unknown types are refused by infer_spec
        types = [t.strip() for value in activity for t in value.split(",")]
        if not all(types):
            raise UsageError("--activity: an event type must not be empty")
        cfg = cfg.model_copy(update={"activity_types": tuple(dict.fromkeys(types))})
    # MLflow prints "View run ... at ..." to stdout when it talks to a server; stdout is ours
    with stage_bars() as stage, contextlib.redirect_stdout(sys.stderr):
        result = run(customers, events, label, horizon, cadence, cfg, get_settings(),
                     experiment, stage, date_format=date_format,
                     config_name=config.stem if config else None,
                     engine=table_engine(engine, spark_master))
    if as_json:
        print_json({"run_id": result.run_id, "model_run_id": result.model_run_id,
                    "model_version": result.model_version,
                    "aliases": result.aliases, "metrics": result.metrics,
                    "chosen": result.chosen, "candidates": result.candidates,
                    "registered": "refit" if "refit" in result.dataset else "evaluation model",
                    "dataset": {k: result.dataset[k] for k in (
                        "cadence_days", "cadence_chosen", "log_days", "validation_scheme",
                        "test_scheme", "notes", "observation_times", "rows")}})
        return
    data = result.dataset
    err.print(f"cadence {data['cadence_days']} days ({data['cadence_chosen']}; {data['log_days']:.0f} "
              f"days of log); validation by {data['validation_scheme'].replace('_', ' ')}, test by "
              f"{data['test_scheme'].replace('_', ' ')}")
    for note in data["notes"]:
        err.print(f"[yellow]note:[/] {note}")
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


@app.command()
def promote(
    version: Annotated[str | None, typer.Option(
        "--version", help="Model version to promote (default: the challenger, else the latest).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Promote even if it does not win.")] = False,
    level: Annotated[float | None, typer.Option(
        "--level", min=0.5, max=0.999,
        help="Confidence level of the intervals (default: CHURN_PROMOTION_LEVEL, 0.95).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Move the champion alias to a version that beats the champion on the same held-out rows,
    beyond the noise of a paired, customer-clustered bootstrap."""
    from scoring.settings import get_settings
    from training.promotion import promote as run

    result = run(get_settings(), version, force, level)
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
    out.print(f"version {result.candidate}: {verdict}: {result.reason}")


@app.command()
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
    print_table("Training runs, newest first: LightGBM on each run's test rows (★ champion)",
                COMPARE_COLUMNS, compare_rows(table), width=TABLE_WIDTH)


# compare's table fits TABLE_WIDTH; --json has every field (run ids, times, intervals, the
# config's changed keys, the baseline)
TABLE_WIDTH = 100
COMPARE_COLUMNS = ["version", "data", "label", "config", "ROC-AUC", "PR-AUC", "Brier",
                   "lift@10%"]


def compare_rows(table) -> list[list[object]]:
    """compare's rows in COMPARE_COLUMNS order: the version (★ the champion), the label with
    its horizon."""
    rows = []
    for r in table.itertuples():
        horizon = f" {r.horizon_days:.0f}d" if r.horizon_days == r.horizon_days else ""
        rows.append([f"{r.version} ★" if r.champion else r.version, r.data,
                     f"{r.label}{horizon}", r.config, r.roc_auc, r.pr_auc, r.brier,
                     r.lift_top10])
    return rows


@app.command()
def score(
    customers: CustomersOpt,
    events: EventsOpt,
    as_of: Annotated[str, typer.Option("--as-of", help="Score customers active at this time.")],
    out_path: Annotated[Path, typer.Option("--out", help="Output Parquet file.")],
    model: Annotated[str | None, typer.Option(
        "--model", help="MLflow model URI (default: the settings' model_uri, the champion).")] = None,
    value_column: Annotated[str | None, typer.Option(
        "--value-column", help="Feature or numeric attribute with each customer's value "
        "(default: the offer settings'); adds expected_value_at_risk and a contact flag.")] = None,
    value_multiplier: Annotated[float | None, typer.Option(
        "--value-multiplier", help="Periods of that value a saved customer is worth.")] = None,
    offer_cost: Annotated[float | None, typer.Option("--offer-cost", help="Cost of one offer.")] = None,
    save_rate: Annotated[float | None, typer.Option(
        "--save-rate", min=0.0, max=1.0, help="Share of contacted churners saved.")] = None,
    date_format: DateFormatOpt = None,
    engine: EngineOpt = None,
    spark_master: SparkMasterOpt = None,
    log_source: Annotated[str, typer.Option(
        "--log-source", hidden=True, help="Source of the rows in the prediction log: score, "
        "or batch for a /batch job.")] = "score",
) -> None:
    """Score every customer active at --as-of with the champion (or --model).

    The offer options override the offer settings (CHURN_OFFER__*). Targeting columns are added
    when the model has the value column; naming a --value-column it lacks is an error. Every
    score is also recorded in the prediction log (CHURN_PREDICTION_LOG=false: not)."""
    from scoring.predictor import offer_if_valued, score_batch
    from scoring.settings import get_settings
    from scoring.store import configure, load_model

    when = parse_time(as_of, "--as-of")
    if log_source not in ("score", "batch"):
        raise UsageError(f"--log-source: must be score or batch, not {log_source!r}")
    settings = get_settings()
    flags = {"value_column": value_column, "value_multiplier": value_multiplier,
             "cost": offer_cost, "save_rate": save_rate}
    offer = settings.offer.model_copy(update={k: v for k, v in flags.items() if v is not None})
    model = model or settings.model_uri
    configure(settings)
    tables = load_tables(customers, events, date_format, engine, spark_master)
    try:
        loaded = load_model(model)
    except Exception as exc:
        raise UsageError(f"--model: cannot load {model!r}: {' '.join(str(exc).split())[:300]}") from None
    targeting = offer_if_valued(offer, loaded.model.spec)
    if targeting is None and value_column:
        raise UsageError(f"--value-column: {value_column!r} is neither a feature nor a numeric "
                         "attribute of the model")
    if (engine or settings.engine) == "spark":
        from scoring.spark_batch import score_on_spark

        with progress_bar("scoring on Spark") as progress:
            rows = score_on_spark(loaded, tables, when, settings.top_reasons, settings.risk_bands,
                                  targeting, out_path)
            progress(1, 1)
        if not rows:
            raise UsageError(f"--as-of: no customer is active at {when}")
        out.print(f"scored {rows:,} customers at {when} with model version {loaded.version} "
                  f"on Spark -> {out_path} (a Parquet folder)")
        log_scores(settings, spark_score_frames(out_path, tables.events.engine), rows,
                   log_source, out_path, loaded.name)
        return
    with progress_bar("scoring") as progress:
        scores = score_batch(loaded, tables.customers, tables.events, when, settings.top_reasons,
                             settings.risk_bands, targeting)
        progress(1, 1)
    if scores.empty:
        raise UsageError(f"--as-of: no customer is active at {when}")
    write_parquet(scores, out_path)
    bands = scores["risk_band"].value_counts()
    out.print(
        f"scored {len(scores):,} customers at {when} with model version {loaded.version} "
        f"({', '.join(f'{b}: {bands.get(b, 0):,}' for b in ('high', 'medium', 'low'))}) "
        f"-> {out_path}"
    )
    top = scores.sort_values("churn_probability", ascending=False).head(5)
    print_table("Highest risk", ["customer_id", "probability", "band", "top reason"],
                [[r.customer_id, r.churn_probability, r.risk_band, r.reason_1_text]
                 for r in top.itertuples()])
    log_scores(settings, [scores], len(scores), log_source, out_path, loaded.name)


def log_scores(settings, frames, total: int, source: str, out_path: Path,
               model_name: str | None) -> None:
    """Record the scores in the prediction log once the scores file is written, in chunks
    (each one transaction) with a progress bar. A failure is one warning line: the scores file
    stays, and the chunks stored before the failure stay stored."""
    if not settings.prediction_log:
        return
    from sqlalchemy.engine import make_url

    from scoring.predlog import chunked, score_rows, write_all
    from scoring.records import database_url, engine_for

    where = make_url(database_url(settings)).render_as_string(hide_password=True)
    stored = 0

    def progress_of(bar):
        def update(done: int) -> None:
            nonlocal stored
            stored = done
            bar(done, total)
        return update

    try:
        with progress_bar("prediction log") as bar:
            write_all(engine_for(settings), chunked(lambda f: score_rows(f, source, model_name), frames),
                      progress_of(bar))
    except Exception as exc:
        text = " ".join(str(getattr(exc, "orig", None) or exc).split())[:300]
        err.print(f"warning: the prediction log stored {stored:,} of {total:,} predictions, then "
                  f"failed ({type(exc).__name__}: {text}); the scores are in {out_path}",
                  markup=False, highlight=False, soft_wrap=True)
        return
    out.print(f"logged {total:,} predictions (source {source}) in {where}", markup=False,
              highlight=False)


SCORE_LOG_COLUMNS = ("customer_id", "churn_probability", "risk_band", "as_of", "model_version")


def spark_score_frames(out_path: Path, engine):
    """The scores Spark wrote, read back in chunks with the columns the prediction log needs:
    a local folder by pyarrow, a cluster's URI by Spark."""
    import pyarrow.dataset as ds

    from scoring.predlog import CHUNK_ROWS

    def wanted(names: list[str]) -> list[str]:
        return [c for c in names if c in SCORE_LOG_COLUMNS
                or (c.startswith("reason_") and c.endswith("_feature"))]

    if "://" not in str(out_path):
        data = ds.dataset(str(out_path), format="parquet")
        for batch in data.to_batches(columns=wanted(data.schema.names), batch_size=CHUNK_ROWS):
            yield batch.to_pandas()
        return
    import pandas as pd

    frame = engine.spark.read.parquet(str(out_path))
    cols = wanted(frame.columns)
    rows: list = []
    for row in frame.select(*cols).toLocalIterator():
        rows.append(tuple(row))
        if len(rows) == CHUNK_ROWS:
            yield pd.DataFrame(rows, columns=cols)
            rows = []
    if rows:
        yield pd.DataFrame(rows, columns=cols)


LOOPBACK = ("127.0.0.1", "localhost", "::1")


@app.command()
def serve(
    host: Annotated[str, typer.Option("--host", help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port.")] = 3000,
    model: Annotated[str | None, typer.Option(
        "--model", help="MLflow model URI (default: the settings' model_uri, the champion).")] = None,
) -> None:
    """Serve real-time and batch predictions over HTTP (BentoML).

    Bound to loopback (the default), it answers only to loopback host names. Set CHURN_API_KEYS
    (and CHURN_REVIEW_KEYS) before binding another interface."""
    from scoring.settings import get_settings
    from scoring.store import configure, load_model

    settings = get_settings()
    model = model or settings.model_uri
    uri = configure(settings)
    try:
        loaded = load_model(model)
    except Exception as exc:
        raise UsageError(f"--model: cannot load {model!r} from {uri}: "
                         f"{' '.join(str(exc).split())[:300]}") from None
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "CHURN_MODEL_URI": model, "MLFLOW_TRACKING_URI": uri,
           "BENTOML_DO_NOT_TRACK": "true",
           "BENTOML_HOME": os.environ.get("BENTOML_HOME", str(settings.mlruns / "bentoml"))}
    # glibc gives each thread that allocates its own heap arena (up to 8 per core), and freed
    # memory scattered over them is rarely returned: RSS crept up under concurrent load
    # (benchmarks/soak.py). Two arenas hold it; the service also trims the heap periodically.
    env.setdefault("MALLOC_ARENA_MAX", "2")
    if host in LOOPBACK and "CHURN_ALLOWED_HOSTS" not in os.environ:
        # bound to loopback, only loopback names reach it: a DNS-rebinding page cannot
        env["CHURN_ALLOWED_HOSTS"] = ",".join(LOOPBACK)
    err.print(f"serving {loaded.name or model} version {loaded.version} on http://{host}:{port}")
    bentoml = str(Path(sys.executable).with_name("bentoml"))
    sys.stderr.flush()
    # become the server, so its PID is ours and signals reach it directly
    os.execve(bentoml, [bentoml, "serve", "serving.service:ChurnService", "--host", host,
                        "--port", str(port), "--working-dir", str(root)], env)


# commands that live in their own modules
app.command(name="monitor")(monitor_command)
app.add_typer(campaign_app, name="campaign")
campaign_app.command(name="returning")(returning)


def main() -> None:
    """Entry point: run the app, turning any error into one line and a non-zero exit."""
    level = os.environ.get("CHURN_LOG_LEVEL", "WARNING")
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if "CHURN_LOG_LEVEL" not in os.environ:  # MLflow narrates every step at INFO
        for name in ("mlflow", "alembic", "lightgbm", "pyspark", "py4j", "SQLQueryContextLogger"):
            logging.getLogger(name).setLevel(logging.ERROR)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "ERROR" if "CHURN_LOG_LEVEL" not in os.environ
                          else level)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MPLBACKEND", "Agg")  # plots are files, never windows
    from features.contract import DataError

    try:
        app(standalone_mode=False)
    except (typer.Exit, SystemExit) as exc:
        code = getattr(exc, "exit_code", None) or getattr(exc, "code", 0) or 0
        sys.exit(code)
    except typer.Abort:
        fail("aborted", 130)
    except Exception as exc:  # the CLI never shows a traceback
        if hasattr(exc, "format_message"):  # a usage error from typer's parser
            text = exc.format_message()
            param = getattr(exc, "param", None)
            if type(exc).__name__ == "MissingParameter" and param is not None:
                text = f"missing option {' / '.join(param.opts)}"
            fail(f"error: {text}", 2)
        if os.environ.get("CHURN_DEBUG"):
            raise
        kind = "data error" if isinstance(exc, DataError) else "error"
        text = str(exc) or type(exc).__name__
        if type(exc).__module__.startswith(("pyspark", "py4j")):  # its first line, not the plan
            text = text.strip().splitlines()[0]
        text = " ".join(text.split())
        fail(f"{kind}: {text}",
             2 if isinstance(exc, DataError | UsageError | ValueError) else 1)


if __name__ == "__main__":
    main()

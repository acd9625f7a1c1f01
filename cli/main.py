"""The `churn` command line, the composition root: it reads the settings once, wires the
features, training, scoring and serving packages together, and nothing imports it. Commands
parse arguments, call library code and print results."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from cli.campaign import app as campaign_app
from cli.campaign_report import report as campaign_report
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
    print_note,
    print_table,
    progress_bar,
    stage_bars,
    write_parquet,
)
from cli.monitor import monitor as monitor_command
from cli.returning import returning
from cli.training import compare, promote, train
from cli.ui import ui as ui_command

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
    from features.spec_inference import describe_columns, infer_spec

    times = [parse_time(v, "--as-of") for v in as_of]
    tables = load_tables(customers, events, date_format, engine, spark_master)
    spec = infer_spec(tables, before=max(times))  # the columns depend on the past alone
    print_note(describe_columns(tables, spec))
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
    from features.spec_inference import describe_columns, infer_spec

    if label not in LABEL_KINDS:
        raise UsageError(f"--label: must be one of {', '.join(LABEL_KINDS)}, not {label!r}")
    tables = load_tables(customers, events, date_format, engine, spark_master)
    plan = plan_observations(tables.customers, tables.events, horizon, cadence)
    times = plan.times
    spec = infer_spec(tables, before=max(times))  # the columns depend on the past alone
    print_note(describe_columns(tables, spec))
    with progress_bar("building snapshots") as progress:
        table = build_snapshots(tables, spec, label, horizon, plan.cadence_days, times=times,
                                progress=progress)
    write_parquet(table, out_path)
    times = table["as_of"].nunique()
    out.print(
        f"wrote {len(table):,} rows at {times} observation times "
        f"(churn rate {table['label'].mean():.1%}) to {out_path}"
    )


app.command(name="train")(train)
app.command(name="promote")(promote)
app.command(name="compare")(compare)


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
    from scoring.batch import LOG_SOURCES, BatchInputError, score_files
    from scoring.settings import get_settings

    when = parse_time(as_of, "--as-of")
    if log_source not in LOG_SOURCES:
        raise UsageError(f"--log-source: must be score or batch, not {log_source!r}")
    settings = get_settings()
    tables = load_tables(customers, events, date_format, engine, spark_master)

    def written(done) -> None:
        print_note(done.columns)
        if done.scores is None:
            out.print(f"scored {done.rows:,} customers at {when} with model version "
                      f"{done.version} on Spark -> {out_path} (a Parquet folder)")
            return
        scores = done.scores
        bands = scores["risk_band"].value_counts()
        out.print(
            f"scored {len(scores):,} customers at {when} with model version {done.version} "
            f"({', '.join(f'{b}: {bands.get(b, 0):,}' for b in ('high', 'medium', 'low'))}) "
            f"-> {out_path}"
        )
        top = scores.sort_values("churn_probability", ascending=False).head(5)
        print_table("Highest risk", ["customer_id", "probability", "band", "top reason"],
                    [[r.customer_id, r.churn_probability, r.risk_band, r.reason_1_text]
                     for r in top.itertuples()])

    try:
        with stage_bars() as stage:
            _, logged = score_files(
                settings, tables, when, out_path, model=model, value_column=value_column,
                value_multiplier=value_multiplier, offer_cost=offer_cost, save_rate=save_rate,
                engine=engine, log_source=log_source, stage=stage, on_written=written)
    except BatchInputError as exc:
        raise UsageError(f"--{exc.option.replace('_', '-')}: {exc.problem}") from None
    if logged is None:
        return
    if logged.error:
        err.print(f"warning: the prediction log stored {logged.stored:,} of {logged.total:,} "
                  f"predictions, then failed ({logged.error}); the scores are in {out_path}",
                  markup=False, highlight=False, soft_wrap=True)
        return
    out.print(f"logged {logged.total:,} predictions (source {log_source}) in {logged.where}",
              markup=False, highlight=False)


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
    from scoring.store import (
        configure,
        follow_move_once,
        load_model,
        registry_problem,
        store_uri,
    )

    settings = get_settings()
    model = model or settings.model_uri
    uri = store_uri(settings)
    try:  # read only, as the service opens it: a missing registry is reported, not created
        configure(settings, read_only=True)
        follow_move_once(settings)  # a copied store: its artifact locations, once, here
        loaded = load_model(model)
    except Exception as exc:
        raise UsageError(f"--model: cannot load {model!r} from {uri}: "
                         f"{registry_problem(uri, exc)}") from None
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
    sys.stderr.flush()
    # become the server, so its PID is ours and signals reach it directly: BentoML's CLI, with
    # dead workers replaced within a second rather than ten (serving.launcher)
    os.execve(sys.executable, [sys.executable, "-m", "serving.launcher", "serve",
                               "serving.service:ChurnService", "--host", host, "--port", str(port),
                               "--working-dir", str(root)], env)


# commands that live in their own modules
app.command(name="monitor")(monitor_command)
app.command(name="ui")(ui_command)
app.add_typer(campaign_app, name="campaign")
campaign_app.command(name="report")(campaign_report)
campaign_app.command(name="returning")(returning)


def main() -> None:
    """Entry point: run the app, turning any error into one line and a non-zero exit."""
    from scoring.batch import configure_process, one_line

    configure_process()
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
        fail(*one_line(exc, bad_input=(UsageError,)))

if __name__ == "__main__":
    main()

"""Batch scoring of two files into a scores file: the one function `churn score` and the
`/batch` jobs call. It owns the choice of engine (DuckDB in memory, or Spark writing a Parquet
folder) and the prediction log of the rows it scored."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd

from scoring.settings import Settings

log = logging.getLogger(__name__)

Stage = Callable[[str], Callable[[int, int], None]]  # stage(label) -> progress(done, total)
SCORE_LOG_COLUMNS = ("customer_id", "churn_probability", "risk_band", "as_of", "model_version")
LOG_SOURCES = ("score", "batch")


class BatchInputError(ValueError):
    """Bad input for a batch, naming the option (`as_of`, `model`, `value_column`) it came
    from; the CLI shows it as its flag, a /batch job as its form field."""

    def __init__(self, option: str, problem: str):
        super().__init__(f"{option}: {problem}")
        self.option, self.problem = option, problem


@dataclass
class BatchScores:
    """What a batch wrote: `scores` is the table (DuckDB) or None (Spark wrote a folder)."""

    rows: int
    as_of: datetime
    version: str
    model_name: str | None
    engine: str
    out_path: Path
    scores: pd.DataFrame | None
    columns: str = ""  # how the model uses the files' columns (describe_columns)


@dataclass
class LogOutcome:
    """How the prediction log went: `error` is one line when it failed (the scores file stays;
    none of the run's records are stored, `stored` is 0). `run` is the scoring run's id, from
    which every record's id is derived."""

    stored: int
    total: int
    where: str
    error: str | None = None
    run: str | None = None


def _quiet(label: str) -> Callable[[int, int], None]:
    return lambda done, total: None


def table_engine(settings: Settings, engine: str | None = None, spark_master: str | None = None):
    """The engine that reads event files: `engine`, else the settings' (DuckDB, with its memory
    limit and spill folder, by default)."""
    from features.engines import make_engine

    return make_engine(engine or settings.engine, memory_limit=settings.duckdb_memory_limit,
                       temp_directory=settings.duckdb_temp_dir and str(settings.duckdb_temp_dir),
                       spark_master=spark_master or settings.spark_master,
                       spark_driver_memory=settings.spark_driver_memory)


def open_batch_tables(settings: Settings, customers: Path, events: Path,
                      date_format: str | None = None, engine: str | None = None,
                      spark_master: str | None = None):
    """The customers file read and checked, and the events scanned where they lie."""
    from features.sources import open_tables

    return open_tables(customers, events, table_engine(settings, engine, spark_master),
                       date_format=date_format)


def score_files(
    settings: Settings,
    tables,
    as_of: datetime,
    out_path: Path,
    *,
    model: str | None = None,
    value_column: str | None = None,
    value_multiplier: float | None = None,
    offer_cost: float | None = None,
    save_rate: float | None = None,
    top_reasons: int | None = None,
    engine: str | None = None,
    log_source: str = "score",
    stage: Stage = _quiet,
    on_written: Callable[[BatchScores], None] | None = None,
    read_only: bool = False,
) -> tuple[BatchScores, LogOutcome | None]:
    """Score every customer active at `as_of` in `tables` (`open_batch_tables`) with `model`
    (default: the settings' model URI, the champion), write the scores to `out_path`
    atomically, call `on_written` (the file is there), then record the rows in the prediction
    log (None: the log is off). The offer arguments override the offer settings; targeting
    columns are added when the model has the value column. Raises BatchInputError for bad
    arguments and for a time at which nobody is active. `read_only`: open the registry read
    only (the service's batch jobs), never creating it."""
    from features.files import write_parquet
    from features.spec_inference import describe_columns
    from scoring.predictor import offer_if_valued, score_batch
    from scoring.store import configure, load_model

    if log_source not in LOG_SOURCES:
        raise BatchInputError("log_source", f"must be score or batch, not {log_source!r}")
    flags = {"value_column": value_column, "value_multiplier": value_multiplier,
             "cost": offer_cost, "save_rate": save_rate}
    offer = settings.offer.model_copy(update={k: v for k, v in flags.items() if v is not None})
    top_k = top_reasons or settings.top_reasons
    model = model or settings.model_uri
    configure(settings, read_only=read_only)
    try:
        loaded = load_model(model)
    except Exception as exc:
        raise BatchInputError("model", f"cannot load {model!r}: "
                              f"{' '.join(str(exc).split())[:300]}") from None
    targeting = offer_if_valued(offer, loaded.model.spec)
    if targeting is None and value_column:
        raise BatchInputError("value_column", f"{value_column!r} is neither a feature nor a "
                              "numeric attribute of the model")
    name = engine or settings.engine
    if name == "spark":
        from scoring.spark_batch import score_on_spark

        progress = stage("scoring on Spark")
        rows = score_on_spark(loaded, tables, as_of, top_k, settings.risk_bands, targeting,
                              out_path)
        progress(1, 1)
        scores = None
    else:
        progress = stage("scoring")
        scores = score_batch(loaded, tables.customers, tables.events, as_of, top_k,
                             settings.risk_bands, targeting)
        progress(1, 1)
        rows = len(scores)
        if rows:
            write_parquet(scores, out_path)
    if not rows:
        raise BatchInputError("as_of", f"no customer is active at {as_of}")
    result = BatchScores(rows, as_of, loaded.version, loaded.name, name, out_path, scores,
                         describe_columns(tables, loaded.model.spec))
    if on_written is not None:
        on_written(result)
    if not settings.prediction_log:
        return result, None
    # Spark's scores are read back from its folder, lazily, a chunk at a time
    frames = (lambda: [scores]) if scores is not None else (
        lambda: spark_score_frames(out_path, tables.events.engine))
    run = scoring_run_id(loaded.name, loaded.version, as_of, log_source, tables)
    return result, log_scores(settings, frames, rows, log_source, loaded.name, stage, run)


def input_identity(tables) -> str:
    """What tells these inputs from others without reading the events: the customers table's
    content hash and each event file's path, size and modification time."""
    from features.files import expand

    customers = getattr(tables, "customers", None)
    parts = [str(int(pd.util.hash_pandas_object(customers, index=False).sum()))
             if isinstance(customers, pd.DataFrame) else ""]
    path = getattr(getattr(tables, "events", None), "path", None)
    if path is not None:
        try:
            files = expand(path)[0]
        except Exception:  # a cluster's URI: its name is what there is
            files = []
        parts.append(str(path))
        for f in files:
            try:
                st = Path(f).stat()
                parts.append(f"{Path(f).resolve()}:{st.st_size}:{st.st_mtime_ns}")
            except (OSError, TypeError):
                parts.append(str(f))
    return "|".join(parts)


def scoring_run_id(model_name: str | None, version: str | None, as_of: datetime, source: str,
                   tables) -> str:
    """The scoring run's id: the same model version, time, source and inputs give the same id,
    so a re-run (after a kill, say) stores each customer once (scoring.predlog.run_id)."""
    from scoring.predlog import run_id

    return run_id(model_name, version, pd.Timestamp(as_of).isoformat(), source,
                  input_identity(tables))


def log_scores(settings: Settings, frames: Callable[[], Iterable[pd.DataFrame]], total: int,
               source: str, model_name: str | None, stage: Stage = _quiet,
               run: str | None = None) -> LogOutcome:
    """Record the scores (`frames()`, re-read on a retry) in the prediction log, all in one
    transaction, each record's id derived from `run`. A failure is returned, not raised:
    nothing of the run is stored then."""
    from sqlalchemy.engine import make_url

    from scoring.predlog import chunked, score_rows, write_run
    from scoring.records import database_url, engine_for

    where = make_url(database_url(settings)).render_as_string(hide_password=True)
    outcome = LogOutcome(0, total, where, run=run)
    bar = stage("prediction log")

    def update(done: int) -> None:
        outcome.stored = done
        bar(done, total)

    try:
        write_run(engine_for(settings),
                  lambda: chunked(lambda f: score_rows(f, source, model_name, run,
                                                         settings.test_traffic), frames()),
                  update)
    except Exception as exc:
        text = " ".join(str(getattr(exc, "orig", None) or exc).split())[:300]
        outcome.error = f"{type(exc).__name__}: {text}"
        outcome.stored = 0  # one transaction: nothing of the run was stored
    return outcome


def spark_score_frames(out_path: Path, engine) -> Iterator[pd.DataFrame]:
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


# -- a process that scores: `churn` and a /batch job ------------------------------------------

QUIET_LOGGERS = ("mlflow", "alembic", "lightgbm", "pyspark", "py4j", "SQLQueryContextLogger")


def configure_process() -> None:
    """Logging and the libraries' environment, once, at a process's entry point: warnings only
    (CHURN_LOG_LEVEL overrides; MLflow narrates every step at INFO), no progress bars or
    telemetry from MLflow, plots to files."""
    level = os.environ.get("CHURN_LOG_LEVEL", "WARNING")
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if "CHURN_LOG_LEVEL" not in os.environ:
        for name in QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "ERROR" if "CHURN_LOG_LEVEL" not in os.environ
                          else level)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MPLBACKEND", "Agg")  # plots are files, never windows


ENGINE_MODULES = ("duckdb", "_duckdb", "pyspark", "py4j")


def one_line(exc: BaseException, bad_input: tuple[type[BaseException], ...] = ()
             ) -> tuple[str, int]:
    """A failure as one line and an exit code: 2 for bad input (a DataError, a ValueError, one
    of `bad_input`, or an error a query engine raised while reading the input files), 1 for a
    failure of ours. An engine's error shows its first line (not its query plan or hints); the
    file readers name the file and column before it gets here (features.sources)."""
    from features.contract import DataError

    engine = type(exc).__module__.startswith(ENGINE_MODULES)
    kind = "data error" if isinstance(exc, DataError) or engine else "error"
    text = (str(exc) or type(exc).__name__).strip()
    if engine:
        text = text.splitlines()[0] if text else type(exc).__name__
    text = " ".join(text.split())
    bad = engine or isinstance(exc, (DataError, ValueError, *bad_input))
    return f"{kind}: {text}", 2 if bad else 1

"""`churn score` on Spark: the same feature SQL, the registered model and the same predictor.

1. The feature query runs in Spark (`spark.sql`, the SQL text `churn score` runs in DuckDB).
2. Each partition of its rows is finished into feature rows by `features.engine`'s own code (the
   buy-till-you-die columns included), in `mapInPandas`.
3. The probability comes from the registered model through `mlflow.pyfunc.spark_udf`.
4. The reasons and the rest of the scores table come from `score_features`, the predictor that
   `churn score` calls (LightGBM's `pred_contrib`, exact TreeSHAP), in `mapInPandas`.
5. The Parquet folder is written beside the target and renamed onto it once complete, so a
   failed job leaves nothing half-written where the scores are read.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import pandas as pd

from features.contract import CUSTOMER_ID, Tables
from features.definitions import feature_sql
from features.engine import AS_OF, _finish, active_at, epoch_seconds, obs_relation
from features.sources import EngineRelations
from scoring.predictor import score_features
from scoring.settings import Offer
from scoring.store import LoadedModel


def _spark_type(dtype) -> str:
    if pd.api.types.is_bool_dtype(dtype):
        return "boolean"
    if pd.api.types.is_integer_dtype(dtype):
        return "bigint"
    if pd.api.types.is_float_dtype(dtype):
        return "double"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "timestamp_ntz"  # naive UTC, as churn score writes it
    return "string"


def _schema(frame: pd.DataFrame) -> str:
    return ", ".join(f"`{c}` {_spark_type(t)}" for c, t in frame.dtypes.items())


def _empty_row(spec, as_of: pd.Timestamp) -> pd.DataFrame:
    """One row shaped as the feature query's output, every feature missing."""
    from features.definitions import BTYD_MODEL_FEATURES

    cats = set(spec.categorical_features)
    row = {"obs_id": [0], CUSTOMER_ID: ["x"], AS_OF: epoch_seconds(pd.Series([as_of]))}
    for name in spec.feature_names:
        if name not in BTYD_MODEL_FEATURES:  # added by _finish
            row[name] = [None] if name in cats else [float("nan")]
    return pd.DataFrame(row)


def _feature_frame(rows: pd.DataFrame, spec) -> pd.DataFrame:
    """Raw rows of the feature query as the feature table `churn score` builds (`_finish`)."""
    rows = rows.sort_values("obs_id", kind="stable")
    cols = {c: rows[c].to_numpy() for c in rows.columns}
    frame = _finish(cols, spec, fit_btyd=False).to_frame()
    frame[AS_OF] = frame[AS_OF].astype("datetime64[us]")
    return frame


def score_on_spark(loaded: LoadedModel, tables: Tables, as_of: pd.Timestamp, top_k: int,
                   bands: tuple[float, float], offer: Offer | None, out_path: Path | str) -> int:
    """Score every customer active at `as_of` on Spark and write the scores (the columns of
    `churn score`) as a Parquet folder at `out_path`. Returns the number of rows."""
    import mlflow.pyfunc
    from pyspark.sql import functions as F

    spec = loaded.model.spec
    engine = tables.events.engine
    spark = engine.spark
    customers = tables.customers
    who = customers.loc[active_at(customers, as_of), CUSTOMER_ID]
    if who.empty:
        return 0
    obs = obs_relation(pd.DataFrame({CUSTOMER_ID: who.to_numpy(), AS_OF: as_of}))
    rel = EngineRelations(customers, tables.events, spec)
    # the schemas of the two pandas stages, from the same code run on the driver on one row of
    # the feature query's shape (all missing: running the query for one customer would scan
    # every event)
    sample_feats = _feature_frame(_empty_row(spec, as_of), spec)
    sample_scores = score_features(loaded, sample_feats, top_k, bands, offer)
    # registered last and kept: a Spark Connect plan names the view until it runs
    raw = rel.frame(feature_sql(spec), obs=obs)

    def finish(batches):
        for rows in batches:
            yield _feature_frame(rows, spec)

    feats = raw.mapInPandas(finish, schema=_schema(sample_feats))
    udf = mlflow.pyfunc.spark_udf(spark, loaded.uri, env_manager="local", result_type="double")
    names = list(spec.feature_names)
    feats = feats.withColumn("churn_probability_udf", udf(*[F.col(f"`{n}`") for n in names]))

    def scores(batches):
        for part in batches:
            if part.empty:
                continue
            proba = part.pop("churn_probability_udf").to_numpy(dtype="float64")
            out = score_features(loaded, part, top_k, bands, offer)
            yield out.assign(churn_probability=proba)

    result = feats.mapInPandas(scores, schema=_schema(sample_scores))
    return write_parquet_folder(result, out_path)


def write_parquet_folder(frame, target: Path | str) -> int:
    """Write a Spark DataFrame as a Parquet folder at `target`, all or nothing: into a folder
    beside it, renamed onto it once the job has succeeded. A failed job leaves `target` as it
    was and removes its partial output. Returns the number of rows.

    A URI on a cluster's file system (s3a://, hdfs://, abfss://) is written by Spark's own commit
    protocol instead: the files appear at job commit, a failed job is aborted and its temporary
    files removed, and an existing target is an error rather than replaced."""
    if "://" in str(target):
        frame.write.mode("errorifexists").parquet(str(target))
        return frame.sparkSession.read.parquet(str(target)).count()
    target = Path(target).resolve()  # a Spark Connect server resolves paths in its own folder
    tmp = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        frame.write.parquet(str(tmp))
        rows = frame.sparkSession.read.parquet(str(tmp)).count()
        _swap(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return rows


def _swap(new: Path, target: Path) -> None:
    """Put the complete folder `new` at `target`, replacing what was there."""
    if not target.exists():
        os.replace(new, target)
        return
    old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
    os.replace(target, old)
    try:
        os.replace(new, target)
    except OSError:
        os.replace(old, target)
        raise
    if old.is_dir():
        shutil.rmtree(old, ignore_errors=True)
    else:
        old.unlink(missing_ok=True)


"""`churn score` on Spark: the same feature SQL, the registered model and the same predictor.

1. The feature query runs in Spark (`spark.sql`, the SQL text `churn score` runs in DuckDB).
2. Each partition of its rows is finished into feature rows by `features.engine`'s own code (the
   buy-till-you-die columns included), in `mapInPandas`: `features.engine.spark_feature_table`.
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

from features.contract import Tables
from features.engine import spark_feature_table
from features.engines import spark_schema
from scoring.predictor import score_features
from scoring.settings import Offer
from scoring.store import LoadedModel


def score_on_spark(loaded: LoadedModel, tables: Tables, as_of: pd.Timestamp, top_k: int,
                   bands: tuple[float, float], offer: Offer | None, out_path: Path | str) -> int:
    """Score every customer active at `as_of` on Spark and write the scores (the columns of
    `churn score`) as a Parquet folder at `out_path`. Returns the number of rows."""
    import mlflow.pyfunc
    from pyspark.sql import functions as F

    spec = loaded.model.spec
    spark = tables.events.engine.spark
    computed = spark_feature_table(tables.customers, tables.events, spec, as_of)
    if computed is None:
        return 0
    feats, sample_feats = computed
    sample_scores = score_features(loaded, sample_feats, top_k, bands, offer)
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

    result = feats.mapInPandas(scores, schema=spark_schema(sample_scores))
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


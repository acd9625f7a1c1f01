"""--engine spark: the same features, labels, errors and scores as DuckDB, in one local[2]
session shared by the tests (Java 17 from Debian's packages, pyspark from the lock file)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from features.contract import DataError
from features.engines import SparkEngine
from features.sources import open_tables
from scoring.predictor import score_batch
from scoring.spark_batch import score_on_spark, write_parquet_folder
from scoring.store import load_model
from tests.helpers import CHURN
from tests.unit.test_contract import EVENT_ERRORS
from tests.unit.test_parquet_times import check_same_features, write_forms
from tests.unit.test_sources import (
    assert_same_table,
    check_engine_parity,
    check_same_error,
    logs,  # noqa: F401  (the fixture)
)

AS_OF = pd.Timestamp("2026-06-30")


@pytest.fixture(scope="module")
def spark_engine() -> SparkEngine:
    return SparkEngine("local[2]", "2g")


@pytest.mark.parametrize(("kind", "label"), [("subscription", "explicit"),
                                             ("retail", "inactivity"), ("stores", "explicit")])
def test_spark_equals_the_in_memory_path(spark_engine, logs, kind, label):  # noqa: F811
    check_engine_parity(spark_engine, logs[kind], label)


@pytest.mark.parametrize(("data", "column", "parts"), EVENT_ERRORS)
def test_spark_refuses_what_the_contract_refuses(spark_engine, tmp_path, data, column, parts):
    error = check_same_error(spark_engine, tmp_path, data, column, "csv")
    assert parts[0] in str(error)


def test_spark_reads_a_day_first_column_with_the_date_format(spark_engine, tmp_path):
    c = tmp_path / "c.csv"
    c.write_text("customer_id,signup_at\n1,2023-12-01\n2,2023-12-02\n")
    e = tmp_path / "e.csv"
    e.write_text("customer_id,timestamp,event_type\n1,02/01/2024,login\n2,13/02/2024,login\n")
    with pytest.raises(DataError, match="--date-format"):
        open_tables(c, e, spark_engine)
    tables = open_tables(c, e, spark_engine, date_format="%d/%m/%Y")
    _, first, last = tables.events.stats()
    assert pd.to_datetime([first, last], unit="s").tolist() == [pd.Timestamp("2024-01-02"),
                                                                pd.Timestamp("2024-02-13")]


def test_spark_scores_equal_churn_scores_reasons_included(spark_engine, trained, tmp_path):
    """The champion applied by spark_udf, reasons from the predictor in mapInPandas: the table
    `churn score` writes, to 1e-9."""
    loaded = load_model("models:/churn@champion")
    from scoring.settings import Settings

    settings = Settings()
    offer = settings.offer
    duck = score_batch(loaded, *_in_memory(trained), AS_OF, 3, settings.risk_bands, offer)
    tables = open_tables(trained.customers, trained.events, spark_engine)
    rows = score_on_spark(loaded, tables, AS_OF, 3, settings.risk_bands, offer,
                          tmp_path / "scores.parquet")
    spark = pd.read_parquet(tmp_path / "scores.parquet")
    assert rows == len(duck) == len(spark) > 1000
    assert list(spark.columns) == list(duck.columns)
    assert spark["reason_1_text"].notna().all()
    key = "customer_id"
    assert_same_table(spark.sort_values(key), duck.sort_values(key))


def _in_memory(trained):
    from features.tables import load_tables

    tables = load_tables(trained.customers, trained.events)
    return tables.customers, tables.events


def test_a_failed_spark_job_leaves_the_target_as_it_was(spark_engine, tmp_path):
    target = tmp_path / "scores.parquet"
    write_parquet_folder(spark_engine.spark.sql("SELECT 1 AS x"), target)
    before = sorted(p.name for p in target.iterdir())
    failing = spark_engine.spark.sql("SELECT 1 / (id - 5) AS x FROM range(10)")  # ANSI: raises
    with pytest.raises(Exception, match="DIVIDE_BY_ZERO"):
        write_parquet_folder(failing, target)
    assert sorted(p.name for p in target.iterdir()) == before
    assert pd.read_parquet(target)["x"].tolist() == [1]
    assert [p.name for p in tmp_path.iterdir()] == ["scores.parquet"]  # no partial folder left


def test_churn_score_on_spark_from_the_cli(trained, logs):  # noqa: F811
    """`churn score --engine spark --spark-master local[2]` (its own JVM) writes the table
    `churn score` does, here for a small log of the same shape as the model's."""
    c, e = logs["subscription"] / "customers.parquet", logs["subscription"] / "events.parquet"
    out = trained.home / "scores-spark.parquet"
    proc = trained.churn("score", "--customers", str(c), "--events", str(e), "--as-of",
                         str(AS_OF.date()), "--out", str(out), "--engine", "spark",
                         "--spark-master", "local[2]")
    assert "on Spark" in proc.stdout and out.is_dir()
    from features.tables import load_tables
    from scoring.settings import Settings

    mem = load_tables(c, e)
    settings = Settings()
    duck = score_batch(load_model("models:/churn@champion"), mem.customers, mem.events, AS_OF, 3,
                       settings.risk_bands, settings.offer)
    assert len(duck) > 50
    assert_same_table(pd.read_parquet(out).sort_values("customer_id"), duck.sort_values("customer_id"))


@pytest.fixture(scope="module")
def connect_server(tmp_path_factory):
    """A real Spark Connect server (scripts/spark-connect.sh, local[2] behind it) on a free
    loopback port: the way a cluster is reached."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "CHURN_SPARK_CONNECT_DIR": str(tmp_path_factory.mktemp("connect"))}
    script = str(Path(__file__).resolve().parents[2] / "scripts" / "spark-connect.sh")
    subprocess.run([script, "start", "local[2]", str(port)], env=env, check=True, timeout=180)
    yield f"sc://127.0.0.1:{port}"
    subprocess.run([script, "stop"], env=env, check=False, timeout=60)


def test_the_same_command_runs_through_spark_connect(trained, logs, connect_server):  # noqa: F811
    """`SPARK_REMOTE=sc://... churn features --engine spark`: the command a cluster runs, here
    against a local Connect server, writes DuckDB's feature table."""
    c, e = logs["retail"] / "customers.parquet", logs["retail"] / "events.parquet"
    out = {}
    for engine in ("duckdb", "spark"):
        out[engine] = trained.home / f"features-{engine}.parquet"
        env = {**trained.env, "SPARK_REMOTE": connect_server} if engine == "spark" else trained.env
        proc = subprocess.run([CHURN, "features", "--customers", str(c), "--events", str(e),
                               "--as-of", "2026-05-01", "--out", str(out[engine]), "--engine", engine],
                              cwd=trained.home, env=env, capture_output=True, text=True, timeout=600,
                              check=False)
        assert proc.returncode == 0, proc.stderr[-2000:]
    duck = pd.read_parquet(out["duckdb"])
    assert len(duck) > 100
    assert_same_table(pd.read_parquet(out["spark"]), duck)


def test_churn_score_in_slices_equals_all_at_once(trained, monkeypatch):
    """score_batch scores its feature rows in slices (the reasons of a million customers at once
    would cost gigabytes); slicing changes nothing in the table."""
    from scoring import predictor
    from scoring.settings import Settings

    loaded, settings = load_model("models:/churn@champion"), Settings()
    args = (*_in_memory(trained), AS_OF, 3, settings.risk_bands, settings.offer)
    whole = predictor.score_batch(loaded, *args)
    monkeypatch.setattr(predictor, "SCORE_SLICE", 700)
    sliced = predictor.score_batch(loaded, *args)
    assert len(whole) > 2 * 700
    pd.testing.assert_frame_equal(sliced, whole)


def test_spark_reads_every_parquet_time_type_as_duckdb_does(spark_engine, tmp_path):
    """Every Arrow timestamp unit (nanoseconds too, which Spark refuses by default), naive or
    with a zone, and date32: the same features as the in-memory reference. Seven of the 13
    forms (each costs Spark about 7 s): every nanosecond form and one of each other unit."""
    check_same_features(spark_engine, write_forms(tmp_path),
                        ("ns-naive", "ns-UTC", "ns-Europe/Berlin", "ms-Europe/Berlin", "us-UTC",
                         "s-naive", "date32"))

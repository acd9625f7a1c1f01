"""The query engines that scan event files where they lie: DuckDB (embedded, the default) or
Spark, behind one small interface (scan, view, register, query). Every difference in their SQL
is one method of `Dialect`. `features.sources` reads the events through them."""

from __future__ import annotations

import os
import re
import sys
import tempfile
import warnings
from dataclasses import dataclass

import pandas as pd
import pyarrow as pa

from features.contract import DataError
from features.sql import sql_text

ENGINES = ("duckdb", "spark")

# ---------------------------------------------------------------------------------------------
# Where the two engines differ
# ---------------------------------------------------------------------------------------------

# strftime directives and their Java DateTimeFormatter twins (Spark parses with the latter)
_JAVA_PATTERN = {"%Y": "yyyy", "%y": "yy", "%m": "MM", "%d": "dd", "%H": "HH", "%M": "mm",
                 "%S": "ss", "%f": "SSSSSS", "%b": "MMM", "%B": "MMMM", "%p": "a", "%I": "hh",
                 "%z": "XX", "%j": "DDD", "%%": "%"}


def java_pattern(date_format: str) -> str:
    """A strftime format as a Java date pattern; ValueError for a directive Spark lacks."""
    out, i = [], 0
    while i < len(date_format):
        if date_format[i] == "%":
            key = date_format[i:i + 2]
            if key not in _JAVA_PATTERN:
                raise ValueError(f"--date-format: {key} is not supported with --engine spark "
                                 f"(supported: {' '.join(sorted(_JAVA_PATTERN))})")
            out.append(_JAVA_PATTERN[key])
            i += 2
        else:
            ch = date_format[i]
            out.append(f"'{ch}'" if ch.isalpha() else ("''" if ch == "'" else ch))
            i += 1
    return "".join(out)


@dataclass(frozen=True)
class Dialect:
    """The SQL that differs between DuckDB and Spark: quoting, time parsing, epoch seconds."""

    name: str

    def quote(self, column: str) -> str:
        q = '"' if self.name == "duckdb" else "`"
        return q + column.replace(q, q + q) + q

    def epoch(self, ts: str) -> str:
        """A TIMESTAMP (naive, taken as UTC), TIMESTAMPTZ or DATE as DOUBLE epoch seconds."""
        if self.name == "duckdb":
            return f"(epoch_us(CAST({ts} AS TIMESTAMP)) / 1e6)"
        return f"(unix_micros(CAST({ts} AS TIMESTAMP)) / 1e6)"

    def utc_timestamp(self, ref: str, sql_type: str) -> str | None:
        """A time or date column as it is read from a file, as a naive UTC TIMESTAMP in
        microseconds (`features.files.utc_times` in SQL); None when it is one already.

        DuckDB reads Parquet as TIMESTAMP_S/_MS/_NS, TIMESTAMP WITH TIME ZONE, TIMESTAMPTZ_NS or
        DATE, and cannot cast TIMESTAMPTZ_NS to TIMESTAMP directly; through TIMESTAMPTZ (the
        session is in UTC) every one becomes the same instant. Spark reads naive Parquet times as
        TIMESTAMP_NTZ, taken as UTC by the cast."""
        t = sql_type.lower()
        if t == "timestamp":
            return None
        if t == "date":
            return f"CAST({ref} AS TIMESTAMP)"
        if t.startswith("timestamp"):
            if self.name == "duckdb":
                return f"CAST(CAST({ref} AS TIMESTAMPTZ) AS TIMESTAMP)"
            return f"CAST({ref} AS TIMESTAMP)"
        return None

    def parse(self, text: str, date_format: str | None) -> str:
        """Text as a timestamp, NULL where it does not fit: ISO 8601, or the one format."""
        if date_format is None:
            return (f"TRY_CAST({text} AS TIMESTAMPTZ)" if self.name == "duckdb"
                    else f"try_to_timestamp({text})")
        if self.name == "duckdb":
            return f"try_strptime({text}, {sql_text(date_format)})"
        return f"try_to_timestamp({text}, {sql_text(java_pattern(date_format))})"


def column_kind(sql_type: str) -> str:
    """An engine's column type as one of string, integer, float, bool, timestamp, date, other."""
    t = sql_type.lower()
    if t in ("varchar", "string") or t.startswith(("varchar", "char")):
        return "string"
    if t.startswith(("timestamp",)):
        return "timestamp"
    if t == "date":
        return "date"
    if t in ("boolean", "bool"):
        return "bool"
    if t in ("tinyint", "smallint", "int", "integer", "bigint", "hugeint", "utinyint", "usmallint",
             "uinteger", "ubigint", "uhugeint", "long", "short", "byte"):
        return "integer"
    if t in ("float", "double", "real") or t.startswith("decimal"):
        return "float"
    return "other"



class DuckEngine:
    """An in-process DuckDB connection with its memory bounded: past `memory_limit` it spills
    to `temp_directory` instead of growing."""

    dialect = Dialect("duckdb")

    def __init__(self, memory_limit: str = "4GB", temp_directory: str | None = None,
                 threads: int | None = None):
        import duckdb

        self.con = duckdb.connect(":memory:")
        self.con.execute("SET TimeZone = 'UTC'")
        self.con.execute(f"SET memory_limit = {sql_text(memory_limit)}")
        temp = temp_directory or os.path.join(tempfile.gettempdir(), "churn-duckdb")
        self.con.execute(f"SET temp_directory = {sql_text(temp)}")
        self.con.execute("SET preserve_insertion_order = false")
        if threads:
            self.con.execute(f"SET threads = {int(threads)}")
        self._n = 0

    def relation(self, sql: str) -> str:
        """A query as a temporary view with a fresh name, the name returned."""
        self._n += 1
        name = f"churn_rel_{self._n}"
        self.view(name, sql)
        return name

    def scan(self, files: list[str], kind: str, sep: str = ",") -> str:
        remote = [f for f in files if "://" in f]
        if remote:
            raise DataError(remote[0], None, "a path on a cluster's file system needs --engine spark")
        listed = "[" + ", ".join(sql_text(f) for f in files) + "]"
        if kind == "parquet":
            return f"read_parquet({listed}, union_by_name = true)"
        # every column as text: types are decided by the checks below, over every row, as pandas
        # decides them, never from a sample (a sniffer would also guess date formats)
        return (f"read_csv({listed}, header = true, all_varchar = true, union_by_name = true, "
                f"delim = {sql_text(sep)})")

    def view(self, name: str, sql: str) -> None:
        self.con.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS {sql}")

    def schema(self, sql: str) -> list[tuple[str, str]]:
        return [(r[0], r[1]) for r in self.con.execute(f"DESCRIBE SELECT * FROM {sql}").fetchall()]

    def register(self, name: str, table: pa.Table) -> None:
        self.con.register(name, table)

    def unregister(self, name: str) -> None:
        self.con.unregister(name)

    def query(self, sql: str) -> pd.DataFrame:
        return self.con.execute(sql).fetch_df()

    def close(self) -> None:
        self.con.close()


_SPARK = None


def spark_session(master: str | None = None, driver_memory: str = "4g"):
    """The one Spark session of this process: Spark Connect when SPARK_REMOTE is set, else
    `master` (default local[*]). Times are UTC; ANSI mode stays on, as Spark 4 ships it."""
    global _SPARK
    if _SPARK is not None:
        return _SPARK
    warnings.filterwarnings("ignore", message=".*PySpark does not yet fully support pandas.*")
    # Python workers run this interpreter, which has this package (on a cluster, install the
    # package on the executors' Python)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYTHONWARNINGS", "ignore::FutureWarning")
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName("churn-service")
    if not os.environ.get("SPARK_REMOTE"):
        master = master or "local[*]"
        builder = (builder.master(master)
                   .config("spark.driver.memory", driver_memory)
                   .config("spark.ui.enabled", "false")
                   .config("spark.ui.showConsoleProgress", "false"))
        local = re.fullmatch(r"local\[(\d+|\*)(,\d+)?\]|local", master)
        if local:  # two shuffle partitions per core (measured best at 10M events on local[2])
            cores = os.cpu_count() or 2
            if local.group(1) and local.group(1) != "*":
                cores = int(local.group(1))
            elif master == "local":
                cores = 1
            builder = builder.config("spark.sql.shuffle.partitions", str(2 * cores))
    builder = (builder.config("spark.sql.session.timeZone", "UTC")
               .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
               .config("spark.sql.execution.arrow.pyspark.enabled", "true"))
    _SPARK = builder.getOrCreate()
    if not os.environ.get("SPARK_REMOTE"):
        _SPARK.sparkContext.setLogLevel("ERROR")
    return _SPARK


class SparkEngine:
    """The same relations and SQL text on Spark, through `spark.sql`."""

    dialect = Dialect("spark")

    def __init__(self, master: str | None = None, driver_memory: str = "4g"):
        self.spark = spark_session(master, driver_memory)
        self._n = 0

    def scan(self, files: list[str], kind: str, sep: str = ",") -> str:
        reader = self.spark.read
        if kind == "parquet":
            nanos = parquet_nanosecond_columns(files)
            if nanos:  # Spark refuses TIMESTAMP(NANOS) unless read as the integer it is
                self.spark.conf.set("spark.sql.legacy.parquet.nanosAsLong", "true")
            frame = reader.option("mergeSchema", "true").parquet(*files)
            if nanos:
                from pyspark.sql import functions as F

                frame = frame.withColumns({
                    c: F.expr(f"timestamp_micros((`{c}` - pmod(`{c}`, 1000)) DIV 1000)")
                    for c in nanos if c in frame.columns})
        else:  # every column as text, as in DuckEngine
            frame = reader.csv(files, header=True, sep=sep, inferSchema=False)
        self._n += 1
        name = f"churn_scan_{self._n}"
        frame.createOrReplaceTempView(name)
        return name

    def relation(self, sql: str) -> str:
        """A query as a temporary view with a fresh name, the name returned."""
        self._n += 1
        name = f"churn_rel_{self._n}"
        self.view(name, sql)
        return name

    def view(self, name: str, sql: str) -> None:
        self.spark.sql(sql).createOrReplaceTempView(name)

    def schema(self, sql: str) -> list[tuple[str, str]]:
        return list(self.spark.sql(f"SELECT * FROM {sql}").dtypes)

    def register(self, name: str, table: pa.Table) -> None:
        self.spark.createDataFrame(table).createOrReplaceTempView(name)

    def unregister(self, name: str) -> None:
        self.spark.catalog.dropTempView(name)

    def query(self, sql: str) -> pd.DataFrame:
        return self.spark.sql(sql).toArrow().to_pandas()

    def frame(self, sql: str):
        return self.spark.sql(sql)

    def close(self) -> None:
        pass  # the session is shared by the process


def make_engine(name: str, *, memory_limit: str = "4GB", temp_directory: str | None = None,
                spark_master: str | None = None, spark_driver_memory: str = "4g"):
    if name == "duckdb":
        return DuckEngine(memory_limit, temp_directory)
    if name == "spark":
        return SparkEngine(spark_master, spark_driver_memory)
    raise ValueError(f"--engine: must be one of {', '.join(ENGINES)}, not {name!r}")


def parquet_nanosecond_columns(files: list[str]) -> set[str]:
    """Columns stored as nanosecond timestamps in the local Parquet files (read from their
    footers). A file on a cluster's file system is not opened here."""
    import pyarrow.parquet as pq

    found: set[str] = set()
    for f in files:
        if "://" in f:
            continue
        try:
            schema = pq.read_schema(f)
        except Exception:  # noqa: BLE001 - the engine's read reports an unreadable file
            continue
        found |= {fld.name for fld in schema
                  if pa.types.is_timestamp(fld.type) and fld.type.unit == "ns"}
    return found


def utc_relation(engine, raw: str) -> str:
    """The scanned relation with every time and date column as a naive UTC TIMESTAMP in
    microseconds (`Dialect.utc_timestamp`), so the checks and the feature SQL see one type
    whatever unit and zone the file was written with; `raw` itself when nothing changes."""
    exprs, changed = [], False
    for name, sql_type in engine.schema(raw):
        ref = engine.dialect.quote(name)
        expr = engine.dialect.utc_timestamp(ref, sql_type)
        exprs.append(ref if expr is None else f"{expr} AS {ref}")
        changed |= expr is not None
    return engine.relation(f"SELECT {', '.join(exprs)} FROM {raw}") if changed else raw



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


def spark_schema(frame: pd.DataFrame) -> str:
    """A pandas frame's columns as a Spark DDL schema (for `mapInPandas`)."""
    return ", ".join(f"`{c}` {_spark_type(t)}" for c, t in frame.dtypes.items())
